//! The on-disk cache: artifact files, the sled index, and the owner lock.
//!
//! Nothing here knows about Terraform: callers name artifacts with
//! [`RelPath`]s and documents with string keys.

mod artifacts;
mod blob;
mod derived;
mod doc_files;
mod documents;
pub mod freshness;
mod gc;
mod git_leftovers;
mod git_snapshots;
mod index;
mod inventory;
pub mod layout;
mod locks;
#[cfg(test)]
mod memory_tier;
mod owner;
mod reindex;
mod segment;
mod unowned;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::sealed::Sealed;

pub use artifacts::{Found, FromTier, Lookup, ProduceError, SecondTier, Slot};
pub use blob::{write_atomic, BlobWriter, RunningHash, Written};
pub use derived::StagedTree;
pub use doc_files::{decode as decode_document_file, encode as encode_document_file};
pub use documents::{Documents, FetchError, Freshness, Provenance, Reader, Served};
pub use gc::{plan as gc_plan, GcRules, Reason, Removal};
pub use index::{now_ms, Document, Index, IndexError};
pub use inventory::StoredArtifact;
pub use layout::{is_temp_pack, Bucket};
pub use locks::{KeyedLocks, OncePerKey};
pub use owner::{OwnerLock, OwnerLockError};
pub use segment::{RelPath, Segment, SegmentError};
pub use unowned::Unowned;

pub struct Store {
    root: PathBuf,
    index: Index,
    documents: Documents,
    /// One producer per artifact key at a time (see `artifacts`), shared
    /// by everything that writes artifacts: downloads, builds, imports.
    locks: KeyedLocks,
    /// Consulted between the disk and the upstream, when configured.
    second_tier: Option<Arc<dyn SecondTier>>,
    _owner: OwnerLock,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Owned(#[from] OwnerLockError),
    #[error("cannot prepare cache directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Index(#[from] index::IndexError),
}

/// A write to the cache that failed. A full disk is told apart because the
/// user can fix it, and because nothing is wrong with the upstream.
#[derive(Debug, thiserror::Error)]
pub struct WriteError {
    /// What was being stored, e.g. "module archive https://...".
    what: String,
    root: PathBuf,
    #[source]
    source: io::Error,
}

impl WriteError {
    pub fn is_disk_full(&self) -> bool {
        is_disk_full(&self.source)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, root) = (&self.what, self.root.display());
        if self.is_disk_full() {
            write!(
                f,
                "the cache disk is full (storing {what} in {root}): free some space there and retry"
            )
        } else {
            write!(f, "cannot store {what} in {root}: {}", self.source)
        }
    }
}

/// ENOSPC or EDQUOT: no room left, whether the disk or the user's quota.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl Store {
    /// Takes ownership of the cache at `root` (one process at a time, since
    /// sled allows one), marks it with `CACHEDIR.TAG`, sweeps leftovers of killed writers and mirror
    /// fetches (none can be running now: this process owns the cache and
    /// has not started any), and rebuilds
    /// usage records from the files if the index is new.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let io_err = |source| StoreError::Io {
            path: root.to_owned(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io_err)?;
        let owner = OwnerLock::acquire(root)?;
        layout::write_cachedir_tag(root).map_err(io_err)?;
        let swept = blob::remove_temp_files(root).map_err(io_err)?;
        if swept > 0 {
            tracing::info!(
                "removed {swept} unfinished download(s) and other temporary file(s) left by an earlier run"
            );
        }
        let swept = git_leftovers::remove(root).map_err(io_err)?;
        if swept > 0 {
            tracing::info!(
                "removed {swept} git mirror lock(s), unfinished clone(s) and repack(s) left by an earlier run"
            );
        }
        if git_snapshots::remove_all(root).map_err(io_err)? {
            tracing::info!("removed the git mirror snapshots of runs of an earlier server");
        }
        let opened = Index::open(&Bucket::Index.path(root))?;
        if opened.needs_rebuild {
            let count = reindex::rebuild(root, &opened.index).map_err(io_err)?;
            let documents = doc_files::restore(root, &opened.index).map_err(io_err)?;
            if count > 0 || documents > 0 || opened.moved_aside.is_some() {
                tracing::warn!(
                    "re-indexed {count} cached artifact file(s) and {documents} metadata document(s)"
                );
            }
            opened.index.mark_rebuilt()?;
        } else if !Bucket::Documents.path(root).exists() {
            // An index made before documents were kept as files.
            let count = doc_files::export_missing(root, &opened.index).map_err(io_err)?;
            if count > 0 {
                tracing::info!("wrote {count} metadata document(s) as files beside the index");
            }
        }
        Ok(Store {
            root: root.to_owned(),
            documents: Documents::new(opened.index.clone(), root),
            index: opened.index,
            locks: KeyedLocks::default(),
            second_tier: None,
            _owner: owner,
        })
    }

    /// Puts `tier` between the disk and the upstream (see `artifacts`).
    pub fn with_second_tier(mut self, tier: Arc<dyn SecondTier>) -> Store {
        self.documents.set_tier(tier.clone());
        self.second_tier = Some(tier);
        self
    }

    /// Seals the metadata cache (see `crate::sealed`): cached documents
    /// never expire and missing ones are never fetched.
    pub fn with_sealed(mut self, sealed: Option<Sealed>) -> Store {
        self.documents.set_sealed(sealed);
        self
    }

    /// The second tier, if one is set.
    pub fn second_tier(&self) -> Option<&Arc<dyn SecondTier>> {
        self.second_tier.as_ref()
    }

    /// The per-key locks every artifact writer takes: hold a key's lock to
    /// write or remove the artifact under that key.
    pub fn locks(&self) -> &KeyedLocks {
        &self.locks
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn documents(&self) -> &Documents {
        &self.documents
    }

    pub fn path(&self, rel: &RelPath) -> PathBuf {
        rel.to_path(&self.root)
    }

    /// Whether the artifact is on disk, as [`Path::is_file`] says, asked
    /// off the runtime threads.
    pub async fn has_file(&self, rel: &RelPath) -> bool {
        tokio::fs::metadata(self.path(rel))
            .await
            .is_ok_and(|metadata| metadata.is_file())
    }

    /// Opens a stored artifact for reading and counts the use.
    pub async fn open_artifact(&self, rel: &RelPath) -> Option<(std::fs::File, u64)> {
        // One trip to the blocking pool, not one per call: a warm init opens
        // about 80 small files, each a request Terraform waits for.
        let path = self.path(rel);
        let (file, size) = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path)?;
            let size = file.metadata()?.len();
            std::io::Result::Ok((file, size))
        })
        .await
        .ok()?
        .ok()?;
        if let Err(e) = self.index.record_hit(&rel.key(), size) {
            tracing::warn!("cannot record use of {}: {e}", rel.key());
        }
        Some((file, size))
    }

    /// The sha256 recorded when the artifact was stored.
    pub fn recorded_sha256(&self, rel: &RelPath) -> Option<String> {
        self.index.usage(&rel.key()).ok().flatten()?.sha256
    }

    /// The artifact's sha256: as recorded when it was stored, else read
    /// from the file (off the async threads: a provider zip can be large).
    /// `None` when there is no such file.
    pub async fn sha256(&self, rel: &RelPath) -> Option<String> {
        if let Some(sha256) = self.recorded_sha256(rel) {
            return Some(sha256);
        }
        let path = self.path(rel);
        let (_, sha256) = tokio::task::spawn_blocking(move || reindex::hash_file(&path))
            .await
            .ok()?
            .ok()?;
        Some(sha256)
    }

    /// Names the failed write for the user: `what` was being stored here.
    pub fn write_error(&self, what: impl Into<String>, source: io::Error) -> WriteError {
        WriteError {
            what: what.into(),
            root: self.root.clone(),
            source,
        }
    }

    pub fn writer(&self, rel: &RelPath) -> io::Result<BlobWriter> {
        BlobWriter::create(&self.path(rel))
    }

    /// Commits a finished writer, records the new artifact and shares it
    /// when its bucket is shared.
    pub async fn commit(&self, rel: &RelPath, writer: BlobWriter) -> io::Result<Written> {
        let written = writer.commit().await?;
        self.record_stored(rel, &written);
        self.offer_to_tier(rel);
        Ok(written)
    }

    /// Writes a small artifact in one go, as [`Store::commit`] stores one.
    pub async fn write(&self, rel: &RelPath, bytes: &[u8]) -> io::Result<Written> {
        let written = write_atomic(&self.path(rel), bytes).await?;
        self.record_stored(rel, &written);
        self.offer_to_tier(rel);
        Ok(written)
    }

    fn record_stored(&self, rel: &RelPath, written: &Written) {
        if let Err(e) =
            self.index
                .record_stored(&rel.key(), written.size, Some(written.sha256.clone()))
        {
            tracing::warn!("cannot record {} in the index: {e}", rel.key());
        }
    }

    /// How many metadata documents (version lists, download answers) are
    /// cached.
    pub fn metadata_entries(&self) -> usize {
        self.index.document_count()
    }

    /// Every stored artifact with its use, read from the files.
    pub fn inventory(&self) -> io::Result<Vec<StoredArtifact>> {
        inventory::list(&self.root, Some(&self.index))
    }

    /// Removes an artifact found by [`Store::inventory`]: a file, or a
    /// directory (a git mirror, a derived tree), which is first renamed to
    /// a temporary name so it vanishes at once (and is swept at the next
    /// start should this process die half way). Blocking: a tree may be
    /// large, so async callers run it on the blocking pool.
    pub fn remove(&self, key: &str) -> io::Result<()> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad key {key:?}"),
            ));
        }
        let path = self.root.join(key);
        if path.is_dir() {
            let name = path
                .file_name()
                .expect("a key has a last part")
                .to_string_lossy();
            let doomed = path.with_file_name(format!("{}{name}", layout::temp_prefix("gc-")));
            std::fs::rename(&path, &doomed)?;
            derived::remove_tree(&doomed)?;
        } else {
            std::fs::remove_file(&path)?;
        }
        if let Err(e) = self.index.remove_usage(key) {
            tracing::warn!("cannot forget {key} in the index: {e}");
        }
        Ok(())
    }

    /// Records a use of an artifact that was not opened through
    /// [`Store::open_artifact`] (a derived tree, read by the client
    /// directly, or the zip it was made from), so gc sees it in use.
    pub fn record_use(&self, rel: &RelPath, size: u64) {
        if let Err(e) = self.index.record_hit(&rel.key(), size) {
            tracing::warn!("cannot record use of {}: {e}", rel.key());
        }
    }

    /// Records a derived tree that was just made, with its total size.
    pub fn record_tree(&self, rel: &RelPath, size: u64) {
        if let Err(e) = self.index.record_stored(&rel.key(), size, None) {
            tracing::warn!("cannot record {} in the index: {e}", rel.key());
        }
    }

    /// How many documents [`Store::prune_metadata`] would drop.
    pub fn count_stale_metadata(
        &self,
        before_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize, index::IndexError> {
        self.index.count_documents(before_ms, keep)
    }

    /// Drops metadata fetched before `before_ms`, except documents `keep`
    /// names (ones that cannot be fetched again, like where an archive came
    /// from).
    pub fn prune_metadata(
        &self,
        before_ms: u64,
        keep: impl Fn(&str) -> bool,
    ) -> Result<usize, index::IndexError> {
        let pruned = self.index.prune_documents(before_ms, keep)?;
        self.documents.forget(&pruned);
        Ok(pruned.len())
    }

    pub fn flush(&self) {
        self.documents.wait_for_files();
        if let Err(e) = self.index.flush() {
            tracing::warn!("cannot flush the index: {e}");
        }
    }

    /// Where the git mirror snapshots of run `run` go (see
    /// `git::snapshot`); created by the caller.
    pub fn run_snapshots(&self, run: &Segment) -> PathBuf {
        git_snapshots::of_run(&self.root, run)
    }

    /// Removes run `run`'s snapshots, and those of runs begun more than
    /// `forget_after` ago whose end never came. Blocks.
    pub fn remove_run_snapshots(&self, run: &Segment, forget_after: Duration) -> io::Result<()> {
        git_snapshots::remove_run(&self.root, run)?;
        git_snapshots::sweep_older_than(&self.root, forget_after).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index may be deleted at any time: a new one is filled from the
    /// document files, and pruned documents lose their files too.
    #[test]
    fn documents_outlive_the_index_and_go_with_a_prune() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for key in ["providers/versions/h/a/b", "https://x/a.tgz"] {
                let doc = Document::public(1, format!("body of {key}"));
                store.documents().put(key, &doc).unwrap();
            }
            store.flush();
        }
        std::fs::remove_dir_all(Bucket::Index.path(dir.path())).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.metadata_entries(), 2, "restored from the files");
        assert!(store.inventory().unwrap().is_empty(), "not artifacts");
        let pruned = store
            .prune_metadata(2, |key| key.starts_with("https://"))
            .unwrap();
        assert_eq!(pruned, 1);
        assert!(
            store
                .documents()
                .cached("providers/versions/h/a/b")
                .is_none(),
            "not read back from a file about to go"
        );
        let path = doc_files::path(dir.path(), "providers/versions/h/a/b");
        assert!(!path.exists(), "its file went with it");
        assert!(doc_files::path(dir.path(), "https://x/a.tgz").exists());
        assert!(store
            .documents()
            .cached("providers/versions/h/a/b")
            .is_none());
    }

    /// Every temporary name tfmirror uses in the cache, left by a killed
    /// process, is gone after the next start; `CACHEDIR.TAG` is written
    /// and is not an artifact.
    #[test]
    fn opening_sweeps_every_kind_of_leftover_and_tags_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mirror = root.join("git/h/org/infra.git");
        std::fs::create_dir_all(mirror.join("objects/pack")).unwrap();
        std::fs::write(mirror.join("HEAD"), b"ref").unwrap();
        let leftovers = [
            "providers/h/ns/t/.tmp-abc",
            ".tmp-tfmirror-xyz",
            "git/h/org/infra.git/.tmp-tfmirror-fetched.Ab12",
            "git/h/org/infra.git/objects/pack/tmp_pack_1",
            "git/h/org/infra.git.lock",
            "documents/.tmp-doc",
        ];
        for file in leftovers {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            std::fs::write(root.join(file), b"half").unwrap();
        }
        let dirs = [
            "git/h/org/.tmp-new.git.Ab12.tmp",
            "git/h/org/.old.git.Ab12.tmp",
            "git/h/org/.tmp-gc-gone.git",
            "providers-unpacked/h/ns/t/1.0.0/.tmp-tree",
        ];
        for d in dirs {
            std::fs::create_dir_all(root.join(d).join("objects")).unwrap();
        }
        let store = Store::open(root).unwrap();
        for left in leftovers.iter().chain(&dirs) {
            assert!(!root.join(left).exists(), "{left} was swept");
        }
        let tag = std::fs::read_to_string(root.join(layout::CACHEDIR_TAG)).unwrap();
        assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"));
        let keys: Vec<_> = store
            .inventory()
            .unwrap()
            .into_iter()
            .map(|a| a.key)
            .collect();
        assert_eq!(keys, ["git/h/org/infra.git"]);
    }
}
