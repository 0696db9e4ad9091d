//! Writing to the bucket: in the background after a verified download
//! (never delaying a client), or at once for `tfmirror cache push`.
//!
//! A file larger than one part goes up as a multipart upload, which the
//! store shows only once complete, and a smaller one in a single PUT: a
//! reader never sees a partial object. Keys are immutable by name and the
//! bytes verified, so a second writer of the same key is harmless; no
//! conditional write is relied on (Garage ignores `If-None-Match`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::circuit::Counters;
use super::{ObjectKey, SharedError, SharedTier};
use crate::metrics;

/// One part of a multipart upload, and the largest file sent in one PUT.
/// S3 wants at least 5 MiB per part but the last.
pub const PART_SIZE: usize = 8 << 20;

/// Parts sent at once by one upload.
const PARTS_IN_FLIGHT: usize = 2;

impl SharedTier {
    /// Uploads the committed file at `path` in the background, at most
    /// [`MAX_UPLOADS`](super::tier::MAX_UPLOADS) at once; nothing when
    /// `upload = false` or while the bucket is failing. A failure is
    /// logged once, never per part.
    pub fn upload_file(&self, key: ObjectKey, path: PathBuf) {
        self.spawn_upload(key, Body::File(path));
    }

    /// [`upload_file`](Self::upload_file) for bytes in memory (a document).
    pub fn upload_bytes(&self, key: ObjectKey, bytes: Bytes) {
        self.spawn_upload(key, Body::Bytes(bytes));
    }

    /// Uploads the file now and returns its size (`tfmirror cache push`).
    pub async fn upload_file_now(&self, key: &ObjectKey, path: &Path) -> Result<u64, SharedError> {
        if !self.inner.upload {
            return Err(SharedError::UploadDisabled);
        }
        self.admit()?;
        self.put_file(key, path).await
    }

    fn spawn_upload(&self, key: ObjectKey, body: Body) {
        if !self.inner.upload {
            return;
        }
        let tier = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = tier.inner.uploads.clone().acquire_owned().await else {
                return;
            };
            if tier.admit().is_err() {
                return;
            }
            let result = match body {
                Body::File(path) => tier.put_file(&key, &path).await,
                Body::Bytes(bytes) => tier.put_bytes(&key, bytes).await,
            };
            match result {
                Ok(_) => {}
                // The tier's own warning said it; this is the detail.
                Err(e @ SharedError::Read { .. }) => {
                    tracing::warn!("shared tier: not uploading {key}: {e}")
                }
                Err(e) => tracing::debug!("shared tier: upload of {key} failed: {e}"),
            }
        });
    }

    /// Opens the file first (it is immutable once committed, and may be
    /// collected meanwhile), then sends it whole or in parts.
    async fn put_file(&self, key: &ObjectKey, path: &Path) -> Result<u64, SharedError> {
        let read_error = |source| SharedError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(read_error)?;
        let size = file.metadata().await.map_err(read_error)?.len();
        if size <= PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await.map_err(read_error)?;
            return self.put_bytes(key, bytes.into()).await;
        }
        let location = self.location(key);
        let store = &self.inner.store;
        let upload = match self.timed("put", store.put_multipart(&location)).await {
            Ok(upload) => upload,
            Err(e) => return Err(self.tier_failed("put", e)),
        };
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buffer = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        loop {
            let n = match file.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(read_error(e));
                }
            };
            let room = tokio::time::timeout(
                self.inner.timeout,
                writer.wait_for_capacity(PARTS_IN_FLIGHT),
            )
            .await;
            let failure = match room {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(SharedError::Store(e)),
                Err(_) => Some(SharedError::Stalled(self.inner.timeout)),
            };
            if let Some(e) = failure {
                let _ = writer.abort().await;
                return Err(self.tier_failed("put", e));
            }
            writer.write(&buffer[..n]);
            sent += n as u64;
        }
        // The parts still in flight each get a timeout's worth.
        let finish = tokio::time::timeout(
            self.inner.timeout * (PARTS_IN_FLIGHT as u32 + 1),
            writer.finish(),
        );
        match finish.await {
            Ok(Ok(_)) => Ok(self.wrote(sent)),
            Ok(Err(e)) => Err(self.tier_failed("put", e.into())),
            Err(_) => Err(self.tier_failed("put", SharedError::Stalled(self.inner.timeout))),
        }
    }

    async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<u64, SharedError> {
        let size = bytes.len() as u64;
        let location = self.location(key);
        let put = self
            .inner
            .store
            .put(&location, PutPayload::from_bytes(bytes));
        match self.timed("put", put).await {
            Ok(_) => Ok(self.wrote(size)),
            Err(e) => Err(self.tier_failed("put", e)),
        }
    }

    fn wrote(&self, size: u64) -> u64 {
        self.inner.circuit.succeeded();
        let counters = &self.inner.circuit.counters;
        Counters::add(&counters.uploads, 1);
        Counters::add(&counters.bytes_written, size);
        metrics::SHARED_BYTES
            .with_label_values(&["written"])
            .inc_by(size);
        size
    }
}

enum Body {
    File(PathBuf),
    Bytes(Bytes),
}
