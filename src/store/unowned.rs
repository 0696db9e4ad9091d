//! A cache that no server owns, read by a command that only looks (`cache
//! list`, `cache stats`, `cache push`): such a command must not start a
//! server that then runs for its idle timeout, nor make a cache where
//! there was none.
//!
//! It holds the owner lock while it reads, so no server opens the cache
//! meanwhile (one that tries in the background waits for the lock, see
//! `commands::serve`), and it changes nothing: no sweep, no re-index, and
//! an index that will not open is left as it is, the listing then using
//! the files' times.

use std::io;
use std::path::{Path, PathBuf};

use super::index::{Document, Index};
use super::inventory::{self, StoredArtifact};
use super::layout::{Bucket, OWNER_LOCK};
use super::owner::{OwnerLock, OwnerLockError};

pub struct Unowned {
    root: PathBuf,
    index: Option<Index>,
    _owner: OwnerLock,
}

impl Unowned {
    /// `Ok(None)` when there is no cache at `root`: a cache is a directory
    /// a server has opened, which leaves its owner lock file there.
    /// [`OwnerLockError::Busy`] when a process owns it.
    pub fn open(root: &Path) -> Result<Option<Unowned>, OwnerLockError> {
        if !root.join(OWNER_LOCK).is_file() {
            return Ok(None);
        }
        let owner = OwnerLock::acquire(root)?;
        Ok(Some(Unowned {
            root: root.to_owned(),
            index: Index::open_existing(&Bucket::Index.path(root)),
            _owner: owner,
        }))
    }

    /// Every stored artifact, as `Store::inventory` lists it.
    pub fn inventory(&self) -> io::Result<Vec<StoredArtifact>> {
        inventory::list(&self.root, self.index.as_ref())
    }

    /// A metadata document as the index holds it.
    pub fn document(&self, key: &str) -> Option<Document> {
        self.index.as_ref()?.document(key).ok().flatten()
    }

    /// How many metadata documents the index holds.
    pub fn metadata_entries(&self) -> usize {
        self.index.as_ref().map_or(0, Index::document_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn no_cache_is_no_cache_and_stays_absent() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        assert!(Unowned::open(&absent).unwrap().is_none());
        assert!(!absent.exists());
        // A directory no server has opened is no cache either, and gets
        // no lock file.
        assert!(Unowned::open(dir.path()).unwrap().is_none());
        assert!(!dir.path().join(OWNER_LOCK).exists());
    }

    #[test]
    fn reads_what_a_server_left_and_keeps_servers_out_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        {
            let store = Store::open(root).unwrap();
            std::fs::create_dir_all(root.join("providers/h/ns/t")).unwrap();
            std::fs::write(root.join("providers/h/ns/t/p.zip"), b"zip").unwrap();
            let rel = Bucket::Providers
                .join(["h", "ns", "t", "p.zip"].map(|s| crate::store::Segment::new(s).unwrap()));
            store.record_use(&rel, 3);
            store
                .documents()
                .put("modules/x", &Document::now("body"))
                .unwrap();
            store.flush();
        }
        let view = Unowned::open(root).unwrap().expect("a cache");
        let listed = view.inventory().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "providers/h/ns/t/p.zip");
        assert_eq!(listed[0].usage.hits, 1);
        assert_eq!(view.document("modules/x").unwrap().body, "body");
        assert_eq!(view.metadata_entries(), 1);
        assert!(matches!(
            Store::open(root),
            Err(crate::store::StoreError::Owned(_))
        ));
        drop(view);
        Store::open(root).unwrap();
    }
}
