//! [`ObjectKey`]: the one place that says where a cache thing lives in the
//! bucket.
//!
//! ```text
//! <prefix>/v1/<cache-relative path>              artifacts, as on disk
//! <prefix>/v1/documents/<escaped index key>      metadata documents
//! <prefix>/v1/git/<host>/<path>.git.bundle      a git mirror as a bundle
//! ```
//!
//! Keys are immutable by name (an artifact's path names its content, a
//! version or a commit), so two runners writing the same verified bytes
//! under one key is harmless. The layout version is part of every key: a
//! later layout writes beside this one rather than over it. An
//! [`ObjectKey`] holds the part below the tier's prefix; the tier adds the
//! prefix.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::store::{RelPath, Segment, SegmentError};

/// The layout version, the first component below the prefix.
pub const LAYOUT: &str = "v1";

const DOCUMENTS: &str = "documents";

/// S3's limit on a key, in bytes, less room for a prefix.
const MAX_KEY_LEN: usize = 900;

/// Everything but ASCII letters, digits and `-_.` is escaped in a document
/// key, `/` included, so a document is one component whatever its key.
const DOCUMENT_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// A key in the bucket, below the tier's prefix; every component is a
/// valid [`Segment`] or an escaped document key, so none is empty, `.` or
/// `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{path:?} is not a relative path of the cache: {source}")]
    Segment { path: String, source: SegmentError },
    #[error("document key {0:?} is too long for an object key")]
    TooLong(String),
}

impl ObjectKey {
    /// An artifact (a provider zip, a checksum file, a module archive, a
    /// git archive) under the same relative path as in the cache.
    pub fn artifact(path: &RelPath) -> ObjectKey {
        ObjectKey(format!("{LAYOUT}/{}", path.key()))
    }

    /// An artifact named by its `/`-separated path below the cache root, as
    /// the server's artifact listing gives it; each part is checked.
    pub fn artifact_at(cache_key: &str) -> Result<ObjectKey, KeyError> {
        Ok(ObjectKey::artifact(&segments(cache_key)?))
    }

    /// A metadata document by its index key (a URL or a path), escaped
    /// into one component, reversibly, so two keys never share an object.
    pub fn document(index_key: &str) -> Result<ObjectKey, KeyError> {
        let mut escaped = utf8_percent_encode(index_key, DOCUMENT_ESCAPES).to_string();
        // Only a leading dot could make the component `.` or `..`.
        if let Some(rest) = escaped.strip_prefix('.') {
            escaped = format!("%2E{rest}");
        }
        if escaped.is_empty() || escaped.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(index_key.to_owned()));
        }
        Ok(ObjectKey(format!("{LAYOUT}/{DOCUMENTS}/{escaped}")))
    }

    /// A git mirror, given by its directory below the cache root
    /// (`git/<host>/<path>.git`), as a `git bundle`: beside where the
    /// mirror would be, with `.bundle` appended.
    pub fn git_bundle(mirror_dir: &RelPath) -> ObjectKey {
        ObjectKey(format!("{LAYOUT}/{}.bundle", mirror_dir.key()))
    }

    /// The key below the tier's prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn segments(path: &str) -> Result<RelPath, KeyError> {
    let parts = path
        .split('/')
        .map(Segment::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| KeyError::Segment {
            path: path.to_owned(),
            source,
        })?;
    Ok(RelPath::new(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Bucket;
    use percent_encoding::percent_decode_str;

    #[test]
    fn artifacts_keep_their_cache_path_under_the_layout_version() {
        let zip = Bucket::Providers.join(
            [
                "registry.terraform.io",
                "hashicorp",
                "null",
                "p_3.2.0_linux_amd64.zip",
            ]
            .map(|s| Segment::new(s).unwrap()),
        );
        let key = ObjectKey::artifact(&zip);
        assert_eq!(
            key.as_str(),
            "v1/providers/registry.terraform.io/hashicorp/null/p_3.2.0_linux_amd64.zip"
        );
        assert_eq!(ObjectKey::artifact_at(&zip.key()).unwrap(), key);
        assert_eq!(
            ObjectKey::artifact_at("modules/archives/k.tar.gz")
                .unwrap()
                .as_str(),
            "v1/modules/archives/k.tar.gz"
        );
    }

    #[test]
    fn no_key_climbs_out_or_has_an_empty_part() {
        for bad in [
            "providers/../x",
            "providers//x",
            "/providers/x",
            "providers/x/",
            "a/\0",
        ] {
            assert!(ObjectKey::artifact_at(bad).is_err(), "{bad:?}");
        }
        for key in ["..", ".", "../x", "a/../b", ""] {
            match ObjectKey::document(key) {
                Ok(object) => {
                    let parts: Vec<&str> = object.as_str().split('/').collect();
                    assert_eq!(parts.len(), 3, "{object}");
                    assert!(parts
                        .iter()
                        .all(|p| !p.is_empty() && *p != "." && *p != ".."));
                }
                Err(e) => assert_eq!(key, "", "{e}"),
            }
        }
    }

    #[test]
    fn document_keys_are_one_component_and_reversible() {
        let index_key =
            "versions https://registry.terraform.io/v1/providers/hashicorp/null?x=1&y=ü";
        let key = ObjectKey::document(index_key).unwrap();
        let escaped = key.as_str().strip_prefix("v1/documents/").unwrap();
        assert!(!escaped.contains('/'), "{escaped}");
        assert!(escaped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.%".contains(&b)));
        let decoded = |key: &ObjectKey| {
            let escaped = key.as_str().strip_prefix("v1/documents/").unwrap();
            percent_decode_str(escaped)
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        assert_eq!(decoded(&key), index_key);
        let dots = ObjectKey::document("..").unwrap();
        assert_ne!(dots.as_str(), "v1/documents/..");
        assert_eq!(decoded(&dots), "..");
        assert!(ObjectKey::document(&"x".repeat(1000)).is_err());
    }

    #[test]
    fn git_bundles_sit_where_their_mirror_would() {
        let mirror = segments("git/github.com/org/infra.git").unwrap();
        let key = ObjectKey::git_bundle(&mirror);
        assert_eq!(key.as_str(), "v1/git/github.com/org/infra.git.bundle");
    }
}
