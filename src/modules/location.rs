//! The registry's answer to "where do I download this module version?".
//!
//! Upstreams answer `204` with an `X-Terraform-Get` header, or (OpenTofu's
//! registry and some private ones) `200` with `{"location": ...}`. tfmirror
//! stores the location, made absolute, and always answers Terraform with
//! the 204 form, which both Terraform and OpenTofu read.

use url::Url;

use crate::upstream::ApiAnswer;

/// The stored form: `{"source": "<absolute go-getter address>"}`.
pub fn from_upstream(answer: &ApiAnswer, request_url: &Url) -> Result<String, BadLocation> {
    let raw = match &answer.terraform_get {
        Some(header) => header.clone(),
        None => serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("location")?.as_str().map(str::to_owned))
            .ok_or(BadLocation::Missing)?,
    };
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(BadLocation::Empty);
    }
    // Terraform resolves these three forms against the request URL; any
    // other value is a go-getter address in its own right.
    let source = if raw.starts_with('/') || raw.starts_with("./") || raw.starts_with("../") {
        request_url
            .join(raw)
            .map_err(|error| BadLocation::Relative {
                raw: raw.to_owned(),
                error,
            })?
            .to_string()
    } else {
        raw.to_owned()
    };
    Ok(serde_json::json!({ "source": source }).to_string())
}

pub fn from_stored(body: &str) -> Result<String, BadLocation> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("source")?.as_str().map(str::to_owned))
        .ok_or(BadLocation::Unreadable)
}

/// Why a module's download location, from the upstream or the store, is
/// not used.
#[derive(Debug, thiserror::Error)]
pub enum BadLocation {
    #[error("the answer has neither an X-Terraform-Get header nor a JSON location")]
    Missing,
    #[error("the download location is empty")]
    Empty,
    #[error("location {raw:?}: {error}")]
    Relative { raw: String, error: url::ParseError },
    #[error("the stored download location is unreadable")]
    Unreadable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(header: Option<&str>, body: &str) -> ApiAnswer {
        ApiAnswer {
            body: body.to_owned(),
            terraform_get: header.map(str::to_owned),
        }
    }

    fn stored(a: ApiAnswer) -> String {
        let url = Url::parse("http://up/v1/modules/ns/n/s/1.0.0/download").unwrap();
        from_stored(&from_upstream(&a, &url).unwrap()).unwrap()
    }

    #[test]
    fn reads_both_forms_and_resolves_relative_locations() {
        assert_eq!(
            stored(answer(Some("/a/m.tar.gz//sub"), "")),
            "http://up/a/m.tar.gz//sub"
        );
        assert_eq!(
            stored(answer(None, r#"{"location":"./m.zip"}"#)),
            "http://up/v1/modules/ns/n/s/1.0.0/m.zip"
        );
        assert_eq!(
            stored(answer(Some("git::https://example.com/r.git?ref=v1"), "")),
            "git::https://example.com/r.git?ref=v1"
        );
        let url = Url::parse("http://up/").unwrap();
        assert!(from_upstream(&answer(None, "{}"), &url).is_err());
        assert!(from_upstream(&answer(Some(" "), ""), &url).is_err());
    }
}
