//! `GET /_tfmirror/runs/<id>/closure`: what one `exec` run was served, by
//! the cache keys that hold it, so that `bundle create` can write it down;
//! and `POST /_tfmirror/bundle`, which writes such a set as a bundle.

use serde::{Deserialize, Serialize};

/// How many items one run's closure may hold: a run touching more is
/// refused a closure (with [`ClosureTooLarge`]) rather than growing the
/// server's memory without end.
pub const MAX_CLOSURE_ITEMS: usize = 100_000;

/// One thing a run was served, by its key in the cache.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "key", rename_all = "kebab-case")]
pub enum ClosureItem {
    /// An immutable artifact file, by its key below the cache root
    /// (`providers/...`, `provider-checksums/...`, `modules/archives/...`,
    /// `git-archives/...`).
    Artifact(String),
    /// A metadata document, by its index key (`providers/download/...`).
    Document(String),
    /// A git mirror, by its directory below the cache root (`git/...git`).
    GitMirror(String),
}

/// The answer: every item once, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    pub items: Vec<ClosureItem>,
}

/// The message of the 413 a run over the cap gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the run touched more than {MAX_CLOSURE_ITEMS} artifacts and documents; its closure was not kept")]
pub struct ClosureTooLarge;

/// The header on a bundle answer with the sum of its entries' sizes: the
/// bundle's size is not known before it is written, and this is close to
/// it (most of it is provider zips, which do not compress).
pub const BUNDLE_CONTENT_HEADER: &str = "x-tfmirror-bundle-content";

/// `POST /_tfmirror/bundle`: write these items as a bundle; the answer's
/// body is the bundle file (`application/zstd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRequest {
    pub items: Vec<ClosureItem>,
    /// The manifest's `platforms`.
    pub platforms: Vec<String>,
    /// The manifest's `created` (RFC 3339): the client's, so that
    /// `SOURCE_DATE_EPOCH` in its environment counts.
    pub created: String,
}

/// The answer to `POST /_tfmirror/bundle/import` (whose body is the
/// bundle file): what was stored. A refused bundle gets an error status
/// naming the entry instead, and nothing is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportAnswer {
    /// Entries stored by this import.
    pub imported: usize,
    /// Their bytes, as the bundle's manifest gives them.
    pub imported_bytes: u64,
    /// Entries the cache already held with the same content (or, for a
    /// document, a copy at least as recent; for a git mirror, every
    /// commit the bundle's refs name).
    pub already_cached: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_have_a_readable_wire_form() {
        let closure = Closure {
            items: vec![
                ClosureItem::Artifact("providers/h/n/t/z.zip".into()),
                ClosureItem::Document("providers/download/h".into()),
                ClosureItem::GitMirror("git/h/o/r.git".into()),
            ],
        };
        let json = serde_json::to_string(&closure).unwrap();
        assert_eq!(
            json,
            r#"{"items":[{"type":"artifact","key":"providers/h/n/t/z.zip"},{"type":"document","key":"providers/download/h"},{"type":"git-mirror","key":"git/h/o/r.git"}]}"#
        );
        assert_eq!(serde_json::from_str::<Closure>(&json).unwrap(), closure);
    }
}
