//! Upstream URLs as the audit log may keep them: without credentials.
//!
//! A URL can carry a secret in three places: its userinfo
//! (`https://user:token@host/`), its query (pre-signed download URLs such
//! as `X-Amz-Signature=...`, `?token=...`) and its fragment. The userinfo
//! and fragment are dropped. Of the query, only the parameters on
//! [`SAFE_QUERY_KEYS`] keep their values, those that Terraform and
//! go-getter read and that never hold a secret; every other value becomes
//! [`REDACTED`], so the line still shows that the URL had one.

use url::Url;

/// Query parameters whose values are kept: go-getter's `archive`, `ref`
/// and `depth`, and the `subdir` of some registries' download URLs.
pub const SAFE_QUERY_KEYS: [&str; 4] = ["archive", "ref", "depth", "subdir"];

/// What a redacted value is replaced by.
pub const REDACTED: &str = "REDACTED";

/// `url` without userinfo, fragment, or the values of query parameters
/// not known to be safe. Text that is not a URL (an scp-style git address
/// such as `git@host:path`) keeps only what follows its last `@` before the
/// first `/`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return without_userinfo(url);
    };
    if parsed.cannot_be_a_base() {
        return without_userinfo(url);
    }
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_fragment(None);
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if SAFE_QUERY_KEYS.contains(&key.as_ref()) {
                    value.into_owned()
                } else {
                    REDACTED.to_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        if pairs.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    parsed.into()
}

/// `text` (an error message) with every `http://` or `https://` URL in it
/// redacted.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')'))
            .unwrap_or(tail.len());
        // A message often puts a colon right after the URL.
        let url_end = tail[..end].trim_end_matches([':', ',', ';']).len();
        out.push_str(&redact_url(&tail[..url_end]));
        rest = &tail[url_end..];
    }
    out.push_str(rest);
    out
}

fn without_userinfo(text: &str) -> String {
    let authority_end = text.find('/').unwrap_or(text.len());
    match text[..authority_end].rfind('@') {
        Some(at) => text[at + 1..].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_signatures_are_removed() {
        assert_eq!(
            redact_url("https://user:tok@host/x?X-Amz-Signature=abc&archive=zip#frag"),
            "https://host/x?X-Amz-Signature=REDACTED&archive=zip"
        );
        assert_eq!(
            redact_url("https://host/x?token=s3cret"),
            "https://host/x?token=REDACTED"
        );
        assert_eq!(
            redact_url("https://host/x.git?ref=v1.2.0"),
            "https://host/x.git?ref=v1.2.0"
        );
        assert_eq!(redact_url("https://host/x?"), "https://host/x");
        assert_eq!(
            redact_url("git@github.com:org/repo.git"),
            "github.com:org/repo.git"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn urls_in_a_message_are_redacted() {
        assert_eq!(
            redact_text("https://u:p@h/a?sig=1: upstream answered 403 (see https://h/b)"),
            "https://h/a?sig=REDACTED: upstream answered 403 (see https://h/b)"
        );
        assert_eq!(redact_text("no url here"), "no url here");
    }
}
