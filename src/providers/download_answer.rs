//! The registry's answer to "where do I download this package?".
//!
//! Stored as the upstream gave it (with relative URLs made absolute, since
//! the request URL they were relative to is not stored), and rewritten to
//! tfmirror's address each time it is served: the port changes between runs.

use serde_json::Value;
use url::Url;

use super::route::{Artifact, Package};
use crate::store::Segment;

/// The fields tfmirror relies on, checked; the whole document is kept so
/// fields it does not know pass through untouched.
#[derive(Debug, Clone)]
pub struct DownloadAnswer {
    document: serde_json::Map<String, Value>,
    pub filename: Segment,
    pub shasum: String,
    pub download_url: Url,
    pub shasums_url: Url,
    pub shasums_signature_url: Url,
    /// Set when the answer was fetched with a credential: tfmirror's URLs
    /// for the package's files carry it, since Terraform fetches them
    /// without one.
    pub grant: Option<String>,
}

const URL_FIELDS: [(&str, Artifact); 3] = [
    ("download_url", Artifact::Zip),
    ("shasums_url", Artifact::Checksums),
    ("shasums_signature_url", Artifact::Signature),
];

impl DownloadAnswer {
    /// Checks an upstream answer and makes its URLs absolute against
    /// `request_url`. Returns the document to store.
    pub fn from_upstream(
        body: &str,
        request_url: &Url,
        package: &Package,
    ) -> Result<String, BadDownloadAnswer> {
        let mut document = parse_object(body)?;
        for (field, _) in URL_FIELDS {
            let raw = string_field(&document, field)?;
            let absolute = request_url
                .join(raw)
                .map_err(|error| BadDownloadAnswer::NotAUrl {
                    field,
                    raw: raw.to_owned(),
                    error,
                })?;
            document.insert(field.to_owned(), Value::String(absolute.into()));
        }
        let answer = DownloadAnswer::from_document(document.clone())?;
        for (field, expected) in [("os", &package.os), ("arch", &package.arch)] {
            let found = string_field(&answer.document, field)?;
            if found != expected.as_str() {
                return Err(BadDownloadAnswer::OtherPlatform {
                    field,
                    found: found.to_owned(),
                    expected: expected.to_string(),
                });
            }
        }
        Ok(Value::Object(document).to_string())
    }

    /// Reads a stored answer.
    pub fn from_stored(body: &str) -> Result<DownloadAnswer, BadDownloadAnswer> {
        DownloadAnswer::from_document(parse_object(body)?)
    }

    fn from_document(
        document: serde_json::Map<String, Value>,
    ) -> Result<DownloadAnswer, BadDownloadAnswer> {
        let url = |field| {
            let raw = string_field(&document, field)?;
            let url = Url::parse(raw).map_err(|error| BadDownloadAnswer::Unparsable {
                field,
                raw: raw.to_owned(),
                error,
            })?;
            match url.scheme() {
                "http" | "https" => Ok(url),
                other => Err(BadDownloadAnswer::Scheme {
                    field,
                    scheme: other.to_owned(),
                }),
            }
        };
        let filename = string_field(&document, "filename")?;
        let filename = Segment::new(filename).map_err(BadDownloadAnswer::Filename)?;
        let shasum = string_field(&document, "shasum")?.to_ascii_lowercase();
        if shasum.len() != 64 || !shasum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadDownloadAnswer::Shasum(shasum));
        }
        Ok(DownloadAnswer {
            download_url: url("download_url")?,
            shasums_url: url("shasums_url")?,
            shasums_signature_url: url("shasums_signature_url")?,
            filename,
            shasum,
            document,
            grant: None,
        })
    }

    /// The ASCII-armored keys the registry says sign this provider.
    pub fn signing_keys(&self) -> Vec<&str> {
        self.document
            .get("signing_keys")
            .and_then(|keys| keys.get("gpg_public_keys"))
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|key| key.get("ascii_armor").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The answer as the client gets it: every download URL points at
    /// tfmirror (`base` is its URL), everything else exactly as upstream.
    pub fn rewritten(&self, base: &str, package: &Package) -> String {
        let mut document = self.document.clone();
        for (field, artifact) in URL_FIELDS {
            let url = artifact_url(base, package, artifact, self.grant.as_deref());
            document.insert(field.to_owned(), Value::String(url));
        }
        serde_json::to_string_pretty(&Value::Object(document)).expect("JSON values serialize")
    }
}

/// tfmirror's URL for one file of a package, ending in the package's
/// grant when it is private.
pub fn artifact_url(
    base: &str,
    package: &Package,
    artifact: Artifact,
    grant: Option<&str>,
) -> String {
    let address = &package.address;
    let parts = [
        "v1",
        "providers",
        address.host.as_str(),
        address.namespace.as_str(),
        address.kind.as_str(),
        package.version.as_str(),
        artifact.path_word(),
        package.os.as_str(),
        package.arch.as_str(),
    ];
    crate::request::own_url(base, parts.into_iter().chain(grant))
}

/// Why a download answer, from the upstream or the store, is not used.
#[derive(Debug, thiserror::Error)]
pub enum BadDownloadAnswer {
    #[error("the answer is not a JSON object")]
    NotAnObject,
    #[error("the answer is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the answer has no {0}")]
    Missing(&'static str),
    #[error("{field} {raw:?} is not a URL: {error}")]
    NotAUrl {
        field: &'static str,
        raw: String,
        error: url::ParseError,
    },
    #[error("{field} {raw:?}: {error}")]
    Unparsable {
        field: &'static str,
        raw: String,
        error: url::ParseError,
    },
    #[error("{field} has scheme {scheme:?}; only http and https are fetched")]
    Scheme { field: &'static str, scheme: String },
    #[error("filename: {0}")]
    Filename(crate::store::SegmentError),
    #[error("shasum {0:?} is not a sha256 in hex")]
    Shasum(String),
    #[error("{field} is {found:?}, but {expected:?} was asked for")]
    OtherPlatform {
        field: &'static str,
        found: String,
        expected: String,
    },
}

fn parse_object(body: &str) -> Result<serde_json::Map<String, Value>, BadDownloadAnswer> {
    match serde_json::from_str(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BadDownloadAnswer::NotAnObject),
        Err(e) => Err(BadDownloadAnswer::NotJson(e)),
    }
}

fn string_field<'a>(
    document: &'a serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, BadDownloadAnswer> {
    document
        .get(field)
        .and_then(Value::as_str)
        .ok_or(BadDownloadAnswer::Missing(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::route::ProviderRoute;
    use crate::request::test_segments;

    /// The package of a download route, as a request names it.
    fn package() -> Package {
        let path = "registry.terraform.io/hashicorp/null/3.2.1/download/linux/amd64";
        match ProviderRoute::parse(&test_segments(path)) {
            Ok(ProviderRoute::Download(package)) => package,
            _ => panic!("{path} is a download route"),
        }
    }

    fn answer(os: &str) -> String {
        serde_json::json!({
            "os": os,
            "arch": "amd64",
            "filename": "terraform-provider-null_3.2.1_linux_amd64.zip",
            "download_url": "null.zip",
            "shasums_url": "SHA256SUMS",
            "shasums_signature_url": "SHA256SUMS.sig",
            "shasum": "0".repeat(64),
        })
        .to_string()
    }

    #[test]
    fn an_answer_for_another_platform_names_both_plainly() {
        let url = Url::parse("https://registry.example/v1/providers/x").unwrap();
        assert!(DownloadAnswer::from_upstream(&answer("linux"), &url, &package()).is_ok());
        let refused = DownloadAnswer::from_upstream(&answer("darwin"), &url, &package());
        assert_eq!(
            refused.unwrap_err().to_string(),
            r#"os is "darwin", but "linux" was asked for"#
        );
    }

    #[test]
    fn artifact_urls_are_below_tfmirror_with_the_grant_last() {
        let base = "http://127.0.0.1:5000/0af3";
        assert_eq!(
            artifact_url(base, &package(), Artifact::Zip, None),
            "http://127.0.0.1:5000/0af3/v1/providers/registry.terraform.io/hashicorp/null/3.2.1/package/linux/amd64"
        );
        assert_eq!(
            artifact_url(base, &package(), Artifact::Signature, Some("c0ffee")),
            "http://127.0.0.1:5000/0af3/v1/providers/registry.terraform.io/hashicorp/null/3.2.1/shasums.sig/linux/amd64/c0ffee"
        );
    }
}
