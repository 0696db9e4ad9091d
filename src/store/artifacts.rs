//! The one path by which an artifact is found or made.
//!
//! An artifact (a provider zip, a checksum file, a module archive, a
//! commit's tarball) is looked for on disk, then in the second tier when
//! one is set (a bucket a team or a CI fleet shares), and only then made:
//! downloaded from the upstream or built. One request per key does that
//! work at a time; the others wait on the key's lock and then find the
//! artifact on disk, or why the work failed.
//!
//! The second tier is a cache, never a source of truth: a copy read from it
//! passes the check the caller names ([`FromTier`]) before it is stored,
//! the same check the upstream's copy passes, and is forgotten otherwise.
//! What is stored in a shared bucket ([`Bucket::is_shared`]) is offered to
//! the second tier once it is whole, whoever made it.
//!
//! [`Store::lookup`] hands the caller a [`Slot`] to make the artifact in,
//! for callers that relay while they download (provider zips);
//! [`Store::get_or_produce`] runs the whole sequence for artifacts made in
//! one piece (module archives, commit tarballs).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tracing::Instrument;

use super::blob::{BlobWriter, Written};
use super::layout::Bucket;
use super::locks::KeyGuard;
use super::segment::RelPath;
use super::Store;

/// A cache shared beyond this machine, consulted between the disk and the
/// upstream. It reports its own failures (once, not per request): to its
/// callers a failing tier is a tier without the artifact.
pub trait SecondTier: Send + Sync + 'static {
    /// Copies the tier's copy of `rel` into `writer`, refusing more than
    /// `max_size` bytes. `false`: no copy, or it could not be read; the
    /// caller then drops the writer, and its temporary file with it.
    fn fetch<'a>(
        &'a self,
        rel: &'a RelPath,
        writer: &'a mut BlobWriter,
        max_size: u64,
    ) -> BoxFuture<'a, bool>;

    /// The tier's copy of a small artifact (a checksum file), at most
    /// `max_size` bytes; `None` as for [`SecondTier::fetch`]. The caller
    /// checks it and stores it with [`Store::keep_from_tier`].
    fn fetch_bytes<'a>(&'a self, rel: &'a RelPath, max_size: u64)
        -> BoxFuture<'a, Option<Vec<u8>>>;

    /// Shares the artifact just stored at `path`, in the background. The
    /// file never changes, but gc may remove it before the upload begins.
    fn offer(&self, rel: &RelPath, path: PathBuf);

    /// The tier's copy of a metadata document, as [`doc_files::encode`]
    /// wrote it; `None` when it has none or cannot be read.
    ///
    /// [`doc_files::encode`]: super::doc_files::encode
    fn fetch_document<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;

    /// Shares a public metadata document (a version list), in the
    /// background.
    fn offer_document(&self, key: &str, encoded: Vec<u8>);

    /// What `tfmirror status` and the log call the tier.
    fn describe(&self) -> String;
}

/// How a copy read from the second tier is checked before it is stored.
pub enum FromTier {
    /// Its sha256 must be this one (a zip listed in a signed SHA256SUMS).
    Sha256 { sha256: String, max_size: u64 },
    /// `check` passes on the staged file (run on the blocking pool): a
    /// module archive's entries, sizes and paths.
    Checked { max_size: u64, check: StagedCheck },
    /// Never read from the second tier: made here from something verified.
    Never,
}

/// A check of a staged file, given as the reason it failed.
pub type StagedCheck = Box<dyn FnOnce(&Path) -> Result<(), BoxError> + Send>;

/// Why a [`StagedCheck`] refused a file, in the checker's own error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where an opened artifact came from, for the run's report and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Already on disk.
    Disk,
    /// Read from the second tier by this request, checked, and stored.
    SecondTier,
    /// Made by this request's producer.
    Produced,
}

/// A stored artifact, open for reading.
pub struct Opened {
    pub file: std::fs::File,
    pub size: u64,
    pub found: Found,
    /// The key, still held when this request stored the artifact from the
    /// second tier: released when the caller drops this, after it has
    /// recorded how the copy was verified, before a waiter looks.
    _held: Option<KeyGuard>,
}

/// What [`Store::lookup`] found.
pub enum Lookup {
    Found(Opened),
    /// Not stored anywhere: the caller holds the key and makes the artifact
    /// in the slot.
    Missing(Slot),
    /// The request this one waited for failed to make it, for this reason.
    Failed(Arc<str>),
}

/// The right, held alone, to make one artifact: the key's lock, and where
/// the artifact goes. Dropping it unused releases the key.
pub struct Slot {
    store: Arc<Store>,
    rel: RelPath,
    lock: KeyGuard,
}

impl Slot {
    pub fn writer(&self) -> io::Result<BlobWriter> {
        self.store.writer(&self.rel)
    }

    /// Stores the finished artifact under its final name, records it, and
    /// shares it. The key stays held until the slot is dropped, so that
    /// what the caller records about the artifact (how it was verified) is
    /// there before a waiter looks.
    pub async fn commit(&self, writer: BlobWriter) -> io::Result<Written> {
        self.store.commit(&self.rel, writer).await
    }

    /// Gives up, telling the requests waiting for the key why.
    pub fn fail(mut self, reason: &str) {
        self.lock.fail(reason);
    }
}

/// Why [`Store::get_or_produce`] has no artifact to open.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError<E> {
    /// The producer's own failure (the upstream refused, the check failed).
    #[error(transparent)]
    Produce(E),
    /// The request this one waited for failed, for this reason.
    #[error("the download this request waited for failed: {0}")]
    Earlier(Arc<str>),
    /// The artifact could not be written to the cache (a full disk).
    #[error("{0}")]
    Store(io::Error),
    /// The producer's task ended without an answer (it panicked).
    #[error("the task making it ended early: {0}")]
    Task(String),
    /// Made, but not found on disk afterwards (removed at once by gc).
    #[error("the stored file vanished")]
    Vanished,
}

impl Store {
    /// Finds `rel` on disk or in the second tier, or hands back the slot to
    /// make it in. Waits while another request makes it.
    pub async fn lookup(self: &Arc<Self>, rel: &RelPath, tier: FromTier) -> Lookup {
        if let Some(opened) = self.open_found(rel, Found::Disk).await {
            return Lookup::Found(opened);
        }
        let lock = self.locks.lock(&rel.key()).await;
        if let Some(opened) = self.open_found(rel, Found::Disk).await {
            return Lookup::Found(opened);
        }
        if let Some(reason) = lock.earlier_failure() {
            return Lookup::Failed(reason);
        }
        if self.copy_from_tier(rel, tier).await {
            if let Some(opened) = self.open_found(rel, Found::SecondTier).await {
                return Lookup::Found(Opened {
                    _held: Some(lock),
                    ..opened
                });
            }
        }
        Lookup::Missing(Slot {
            store: self.clone(),
            rel: rel.clone(),
            lock,
        })
    }

    /// [`Store::lookup`], then, when the artifact is missing, `produce`
    /// fills a writer for it on its own task, so that it is finished (and
    /// stored) for the requests waiting on the key even if this one's client
    /// goes away. A producer that fails tells the waiters why; a store that
    /// cannot be written does not (the next request may find room).
    pub async fn get_or_produce<F, Fut, E>(
        self: &Arc<Self>,
        rel: &RelPath,
        tier: FromTier,
        produce: F,
    ) -> Result<Opened, ProduceError<E>>
    where
        F: FnOnce(BlobWriter) -> Fut + Send + 'static,
        Fut: Future<Output = Result<BlobWriter, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let slot = match self.lookup(rel, tier).await {
            Lookup::Found(opened) => return Ok(opened),
            Lookup::Failed(reason) => return Err(ProduceError::Earlier(reason)),
            Lookup::Missing(slot) => slot,
        };
        let made = tokio::spawn(
            async move {
                let writer = slot.writer().map_err(ProduceError::Store)?;
                match produce(writer).await {
                    Ok(writer) => slot.commit(writer).await.map_err(ProduceError::Store),
                    Err(e) => {
                        slot.fail(&e.to_string());
                        Err(ProduceError::Produce(e))
                    }
                }
            }
            // What it logs is the run's that started it (see `server::run_journal`).
            .in_current_span(),
        );
        made.await
            .map_err(|e| ProduceError::Task(e.to_string()))??;
        self.open_found(rel, Found::Produced)
            .await
            .ok_or(ProduceError::Vanished)
    }

    async fn open_found(&self, rel: &RelPath, found: Found) -> Option<Opened> {
        let (file, size) = self.open_artifact(rel).await?;
        Some(Opened {
            file,
            size,
            found,
            _held: None,
        })
    }

    /// Reads `rel` from the second tier into the store if the tier has a
    /// copy that passes `tier`'s check. Called holding the key's lock.
    async fn copy_from_tier(&self, rel: &RelPath, tier: FromTier) -> bool {
        let Some(second) = &self.second_tier else {
            return false;
        };
        let max_size = match &tier {
            FromTier::Never => return false,
            FromTier::Sha256 { max_size, .. } | FromTier::Checked { max_size, .. } => *max_size,
        };
        let Ok(mut writer) = self.writer(rel) else {
            return false;
        };
        if !second.fetch(rel, &mut writer, max_size).await {
            return false;
        }
        let checked = match tier {
            FromTier::Never => unreachable!("returned above"),
            FromTier::Sha256 { sha256, .. } => {
                let got = writer.written().sha256;
                if got == sha256 {
                    Ok(())
                } else {
                    Err(format!("its sha256 is {got}, expected {sha256}"))
                }
            }
            FromTier::Checked { check, .. } => match writer.staged().await {
                Ok(staged) => {
                    let staged = staged.to_owned();
                    tokio::task::spawn_blocking(move || check(&staged).map_err(|e| e.to_string()))
                        .await
                        .unwrap_or_else(|e| Err(format!("the check failed: {e}")))
                }
                Err(e) => Err(format!("cannot read it back: {e}")),
            },
        };
        if let Err(reason) = checked {
            tracing::warn!(
                "not using {} from {}: {reason}; fetching it from the upstream",
                rel.key(),
                second.describe()
            );
            return false;
        }
        // Not offered back: the tier has it.
        match writer.commit().await {
            Ok(written) => {
                self.record_stored(rel, &written);
                tracing::info!(
                    "stored {} from {} ({} bytes)",
                    rel.key(),
                    second.describe(),
                    written.size
                );
                true
            }
            Err(e) => {
                tracing::warn!("cannot store {} from the second tier: {e}", rel.key());
                false
            }
        }
    }

    /// Stores a small artifact read from the second tier with
    /// [`SecondTier::fetch_bytes`] and checked by the caller; not offered
    /// back, since the tier has it.
    pub async fn keep_from_tier(&self, rel: &RelPath, bytes: &[u8]) -> io::Result<Written> {
        let written = super::write_atomic(&self.path(rel), bytes).await?;
        self.record_stored(rel, &written);
        Ok(written)
    }

    /// Shares what was just stored at `rel`, if its bucket is shared.
    pub(super) fn offer_to_tier(&self, rel: &RelPath) {
        let Some(second) = &self.second_tier else {
            return;
        };
        if Bucket::split(&rel.key()).is_some_and(|(bucket, _)| bucket.is_shared()) {
            second.offer(rel, self.path(rel));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::store::memory_tier::MemoryTier;
    use crate::store::Segment;

    fn store_with_tier(dir: &Path) -> (Arc<Store>, Arc<MemoryTier>) {
        let tier = Arc::new(MemoryTier::default());
        let store = Store::open(dir).unwrap().with_second_tier(tier.clone());
        (Arc::new(store), tier)
    }

    fn zip_rel() -> RelPath {
        Bucket::Providers.join(["h", "ns", "t", "p.zip"].map(|s| Segment::new(s).unwrap()))
    }

    fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn by_sha256(bytes: &[u8]) -> FromTier {
        FromTier::Sha256 {
            sha256: sha256(bytes),
            max_size: 1 << 20,
        }
    }

    async fn produce_bytes(
        mut writer: BlobWriter,
        bytes: &'static [u8],
    ) -> std::io::Result<BlobWriter> {
        writer.write(bytes).await?;
        Ok(writer)
    }

    #[tokio::test]
    async fn a_checked_copy_from_the_tier_is_stored_and_not_offered_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tier) = store_with_tier(dir.path());
        let rel = zip_rel();
        tier.put(rel.key(), b"zip");

        let Lookup::Found(opened) = store.lookup(&rel, by_sha256(b"zip")).await else {
            panic!("found in the tier");
        };
        assert_eq!((opened.found, opened.size), (Found::SecondTier, 3));
        assert_eq!(std::fs::read(store.path(&rel)).unwrap(), b"zip");
        assert!(tier.offered.lock().unwrap().is_empty());
        let Lookup::Found(again) = store.lookup(&rel, by_sha256(b"zip")).await else {
            panic!("now on disk");
        };
        assert_eq!(again.found, Found::Disk);
    }

    #[tokio::test]
    async fn a_copy_that_fails_its_check_is_neither_stored_nor_used() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tier) = store_with_tier(dir.path());
        let rel = zip_rel();
        tier.put(rel.key(), b"tampered");

        let Lookup::Missing(slot) = store.lookup(&rel, by_sha256(b"zip")).await else {
            panic!("the tampered copy is not used");
        };
        assert!(!store.path(&rel).exists());
        let leftovers = std::fs::read_dir(store.path(&rel).parent().unwrap())
            .unwrap()
            .count();
        assert_eq!(leftovers, 0, "its temporary file is gone");
        drop(slot);

        let checked = FromTier::Checked {
            max_size: 1 << 20,
            check: Box::new(|_| Err("not an archive".into())),
        };
        assert!(matches!(
            store.lookup(&rel, checked).await,
            Lookup::Missing(_)
        ));
        assert!(matches!(
            store.lookup(&rel, FromTier::Never).await,
            Lookup::Missing(_)
        ));
    }

    #[tokio::test]
    async fn what_is_produced_in_a_shared_bucket_is_offered_to_the_tier() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tier) = store_with_tier(dir.path());
        let rel = zip_rel();
        let opened = store
            .get_or_produce(&rel, by_sha256(b"zip"), |w| produce_bytes(w, b"zip"))
            .await
            .unwrap();
        assert_eq!(opened.found, Found::Produced);
        assert_eq!(*tier.offered.lock().unwrap(), [rel.key()]);

        let tarball = Bucket::GitArchives.join([Segment::new("c.tar.gz").unwrap()]);
        store
            .get_or_produce(&tarball, FromTier::Never, |w| produce_bytes(w, b"tar"))
            .await
            .unwrap();
        assert_eq!(tier.offered.lock().unwrap().len(), 1, "not a shared bucket");
    }

    /// Concurrent requests for one key run one producer; when it fails,
    /// those waiting on it get its reason instead of trying again.
    #[tokio::test]
    async fn one_producer_per_key_and_waiters_learn_why_it_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let rel = zip_rel();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests: Vec<_> = (0..4)
            .map(|_| {
                let (store, rel, runs) = (store.clone(), rel.clone(), runs.clone());
                tokio::spawn(async move {
                    let produce = move |_writer: BlobWriter| async move {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err::<BlobWriter, _>("upstream said 500".to_owned())
                    };
                    store.get_or_produce(&rel, FromTier::Never, produce).await
                })
            })
            .collect();
        let mut reasons = Vec::new();
        for request in requests {
            reasons.push(request.await.unwrap().err().unwrap().to_string());
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        reasons.sort();
        assert_eq!(reasons[3], "upstream said 500");
        for reason in &reasons[..3] {
            assert_eq!(
                reason,
                "the download this request waited for failed: upstream said 500"
            );
        }
        let later = store
            .get_or_produce(&rel, FromTier::Never, |w| produce_bytes(w, b"zip"))
            .await;
        assert!(later.is_ok(), "a later request tries again");
    }
}
