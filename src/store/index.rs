//! The sled index: registry metadata and artifact usage.
//!
//! The index is a convenience, never the only copy of anything that costs a
//! download: artifacts are files, and usage can be rebuilt from them. So an
//! index that is missing or will not open is moved aside and started afresh
//! rather than failing the user's `terraform init`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Written once into a new index; its absence means the usage records must
/// be rebuilt from the artifact files.
const FORMAT_KEY: &[u8] = b"tfmirror-index-format";
const FORMAT: &[u8] = b"1";

/// A document's body: UTF-8 text in shared bytes, so that every request
/// for a cached document serves the same copy rather than one of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    pub fn as_str(&self) -> &str {
        // Only ever made from a `String` or a `&str`.
        std::str::from_utf8(&self.0).expect("a document body is UTF-8")
    }

    /// The shared bytes, for a response body: no copy.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(Bytes::from(text))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<Text> for Bytes {
    fn from(text: Text) -> Bytes {
        text.0
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

/// A registry answer as it came from upstream, and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Document {
    pub fetched_at_ms: u64,
    pub body: Text,
    /// The hash of the credential the upstream request carried, for a
    /// document that may be private (see `documents::Reader`); `None` for
    /// one fetched without a credential, which anyone may read. Records
    /// written before this field existed read as public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_sha256: Option<String>,
}

impl Document {
    /// A public document made now.
    pub fn now(body: impl Into<Text>) -> Document {
        Document::public(now_ms(), body)
    }

    /// A document anyone may read: fetched without a credential, or made by
    /// tfmirror itself.
    pub fn public(fetched_at_ms: u64, body: impl Into<Text>) -> Document {
        Document {
            fetched_at_ms,
            body: body.into(),
            credential_sha256: None,
        }
    }
}

/// How an artifact has been used, for reports and garbage collection.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub sha256: Option<String>,
    pub stored_at_ms: u64,
    pub last_used_ms: u64,
    pub hits: u64,
}

#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    documents: sled::Tree,
    usage: sled::Tree,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("index entry {key:?} is unreadable: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
}

pub struct Opened {
    pub index: Index,
    /// The index was created just now (missing, or moved aside): usage
    /// records must be rebuilt from the files.
    pub needs_rebuild: bool,
    /// Where a broken index was moved, if it was.
    pub moved_aside: Option<PathBuf>,
}

impl Index {
    /// Opens the index at `dir`, moving a broken one aside to `<dir>.broken`.
    pub fn open(dir: &Path) -> Result<Opened, IndexError> {
        let mut moved_aside = None;
        let db = match open_db(dir) {
            Ok(db) => db,
            Err(reason) => {
                let aside = dir.with_extension("broken");
                let _ = std::fs::remove_dir_all(&aside);
                if let Err(e) = std::fs::rename(dir, &aside) {
                    tracing::warn!("cannot move broken index {}: {e}", dir.display());
                    std::fs::remove_dir_all(dir).ok();
                }
                tracing::warn!(
                    "index at {} will not open ({reason}); moved it to {} and rebuilding from the cached files",
                    dir.display(),
                    aside.display()
                );
                moved_aside = Some(aside);
                sled::open(dir)?
            }
        };
        let needs_rebuild = db.get(FORMAT_KEY)?.as_deref() != Some(FORMAT);
        let index = Index {
            documents: db.open_tree("documents")?,
            usage: db.open_tree("usage")?,
            db,
        };
        Ok(Opened {
            index,
            needs_rebuild,
            moved_aside,
        })
    }

    /// Opens the index at `dir` as it is, for a process that only reads
    /// (see `store::Unowned`): `None` when there is none, or when it will
    /// not open, which is left for the next server to deal with.
    pub fn open_existing(dir: &Path) -> Option<Index> {
        if !dir.is_dir() {
            return None;
        }
        let db = match open_db(dir) {
            Ok(db) => db,
            Err(reason) => {
                tracing::debug!("index at {} will not open: {reason}", dir.display());
                return None;
            }
        };
        Some(Index {
            documents: db.open_tree("documents").ok()?,
            usage: db.open_tree("usage").ok()?,
            db,
        })
    }

    /// Records that the usage records are complete; until then a restart
    /// rebuilds them.
    pub fn mark_rebuilt(&self) -> Result<(), IndexError> {
        self.db.insert(FORMAT_KEY, FORMAT)?;
        Ok(())
    }

    pub fn document(&self, key: &str) -> Result<Option<Document>, IndexError> {
        get_json(&self.documents, key)
    }

    pub fn put_document(&self, key: &str, doc: &Document) -> Result<(), IndexError> {
        put_json(&self.documents, key, doc)
    }

    pub fn usage(&self, key: &str) -> Result<Option<Usage>, IndexError> {
        get_json(&self.usage, key)
    }

    /// Records a newly stored artifact.
    pub fn record_stored(
        &self,
        key: &str,
        size: u64,
        sha256: Option<String>,
    ) -> Result<(), IndexError> {
        let now = now_ms();
        let usage = Usage {
            size,
            sha256,
            stored_at_ms: now,
            last_used_ms: now,
            hits: 0,
        };
        put_json(&self.usage, key, &usage)
    }

    /// Records one use of an artifact served from disk.
    pub fn record_hit(&self, key: &str, size: u64) -> Result<(), IndexError> {
        let mut usage = self.usage(key)?.unwrap_or(Usage {
            size,
            stored_at_ms: now_ms(),
            ..Usage::default()
        });
        usage.hits += 1;
        usage.last_used_ms = now_ms();
        put_json(&self.usage, key, &usage)
    }

    /// Forgets an artifact that was removed.
    pub fn remove_usage(&self, key: &str) -> Result<(), IndexError> {
        self.usage.remove(key)?;
        Ok(())
    }

    /// Removes metadata documents fetched before `before_ms`, but not those
    /// `keep` names; returns how many went.
    pub fn prune_documents(
        &self,
        before_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, IndexError> {
        let stale = self.stale_documents(before_ms, keep)?;
        for key in &stale {
            self.documents.remove(key)?;
        }
        Ok(stale
            .iter()
            .map(|key| String::from_utf8_lossy(key).into_owned())
            .collect())
    }

    /// How many documents [`Index::prune_documents`] would remove.
    pub fn count_documents(
        &self,
        before_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize, IndexError> {
        Ok(self.stale_documents(before_ms, keep)?.len())
    }

    fn stale_documents(
        &self,
        before_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<sled::IVec>, IndexError> {
        let mut stale = Vec::new();
        for entry in self.documents.iter() {
            let (key, bytes) = entry?;
            let old = serde_json::from_slice::<Document>(&bytes)
                .map_or(true, |doc| doc.fetched_at_ms < before_ms);
            if old && !keep(&String::from_utf8_lossy(&key)) {
                stale.push(key);
            }
        }
        Ok(stale)
    }

    /// Every readable document, with its key.
    pub fn all_documents(&self) -> Vec<(String, Document)> {
        self.documents
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(key, bytes)| {
                let doc = serde_json::from_slice(&bytes).ok()?;
                Some((String::from_utf8_lossy(&key).into_owned(), doc))
            })
            .collect()
    }

    /// How many metadata documents the index holds.
    pub fn document_count(&self) -> usize {
        self.documents.len()
    }

    pub fn flush(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        Ok(())
    }
}

/// sled reports a damaged database as an error, but some damage makes it
/// panic instead; either way the caller moves the directory aside.
fn open_db(dir: &Path) -> Result<sled::Db, BrokenIndex> {
    let dir = dir.to_owned();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(move || sled::open(dir));
    std::panic::set_hook(previous_hook);
    match result {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(BrokenIndex::Sled(e)),
        Err(_) => Err(BrokenIndex::Panicked),
    }
}

/// Why the index could not be opened as it is.
#[derive(Debug, thiserror::Error)]
enum BrokenIndex {
    #[error("{0}")]
    Sled(sled::Error),
    #[error("the database code panicked while reading it")]
    Panicked,
}

fn get_json<T: for<'de> Deserialize<'de>>(
    tree: &sled::Tree,
    key: &str,
) -> Result<Option<T>, IndexError> {
    match tree.get(key)? {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| IndexError::Decode {
                    key: key.to_owned(),
                    source,
                })
        }
    }
}

fn put_json<T: Serialize>(tree: &sled::Tree, key: &str, value: &T) -> Result<(), IndexError> {
    let bytes = serde_json::to_vec(value).expect("index records serialize");
    tree.insert(key, bytes)?;
    Ok(())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_index_needs_a_rebuild_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        let opened = Index::open(&path).unwrap();
        assert!(opened.needs_rebuild);
        opened.index.mark_rebuilt().unwrap();
        opened.index.flush().unwrap();
        drop(opened);
        let opened = Index::open(&path).unwrap();
        assert!(!opened.needs_rebuild);
        assert!(opened.moved_aside.is_none());
    }

    #[test]
    fn garbage_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        {
            let opened = Index::open(&path).unwrap();
            opened
                .index
                .put_document("k", &Document::public(1, "b"))
                .unwrap();
            opened.index.flush().unwrap();
        }
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::write(entry.path(), b"\xffgarbage garbage garbage").unwrap();
            }
        }
        let opened = Index::open(&path).unwrap();
        assert!(opened.needs_rebuild);
        assert!(opened.moved_aside.is_some());
        assert_eq!(opened.index.document("k").unwrap(), None);
    }

    #[test]
    fn documents_without_a_credential_field_read_as_public() {
        let old: Document = serde_json::from_str(r#"{"fetched_at_ms":1,"body":"b"}"#).unwrap();
        assert_eq!(old, Document::public(1, "b"));
        let private = Document {
            credential_sha256: Some("ab".into()),
            ..old
        };
        let stored = serde_json::to_string(&private).unwrap();
        assert_eq!(serde_json::from_str::<Document>(&stored).unwrap(), private);
    }

    #[test]
    fn hits_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index")).unwrap().index;
        index
            .record_stored("a/b.zip", 10, Some("ab".into()))
            .unwrap();
        index.record_hit("a/b.zip", 10).unwrap();
        index.record_hit("a/b.zip", 10).unwrap();
        let usage = index.usage("a/b.zip").unwrap().unwrap();
        assert_eq!((usage.size, usage.hits), (10, 2));
    }
}
