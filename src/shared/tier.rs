//! [`SharedTier`]: reads from the bucket, bounded in size and time, and
//! the tier's health. Uploads are in `upload.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};
use tokio::sync::Semaphore;

use super::circuit::{Circuit, Counters};
use super::{ObjectKey, SharedError};
use crate::config::SharedConfig;
use crate::metrics;
use crate::protocol::SharedHealth;
use crate::store::{BlobWriter, Written};

/// Uploads under way at once; the others wait their turn.
pub const MAX_UPLOADS: usize = 4;

/// The shared tier: cheap to clone, one per server.
#[derive(Clone)]
pub struct SharedTier {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub store: Arc<dyn ObjectStore>,
    prefix: Path,
    pub timeout: Duration,
    pub upload: bool,
    pub circuit: Circuit,
    pub uploads: Arc<Semaphore>,
}

/// What a read from the bucket came to. On anything but `Got`, the caller
/// drops its writer, which removes the unfinished file.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The whole object is in the writer (not yet committed: the caller
    /// verifies it first).
    Got(Written),
    /// The bucket answered: no such object.
    Missing,
    /// The bucket failed, was skipped while failing, or the object was
    /// over the size cap or could not be written locally.
    Failed,
}

/// Where the bytes of a read go: a blob file, or memory for a document.
trait Sink {
    async fn put(&mut self, chunk: &[u8]) -> std::io::Result<()>;
}

impl Sink for BlobWriter {
    async fn put(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.write(chunk).await
    }
}

impl Sink for BytesMut {
    async fn put(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// How a read into a sink ended.
enum Read {
    /// The whole object is in the sink.
    Whole,
    Missing,
    Failed,
}

/// Why a read ended without the object.
enum ReadError {
    /// The bucket failed: it counts against the tier.
    Tier(SharedError),
    /// The object is too large, or the local write failed: nothing is
    /// wrong with the bucket.
    Local(String),
}

impl SharedTier {
    /// The tier `[shared]` describes; `retry_after` is how long a failing
    /// bucket is left alone (`upstream_retry_after`).
    pub fn from_config(
        config: &SharedConfig,
        retry_after: Duration,
    ) -> Result<SharedTier, SharedError> {
        let (store, prefix) = super::open::open(config)?;
        Ok(SharedTier::with_store(
            store,
            prefix,
            config.url.to_string(),
            config.timeout,
            config.upload,
            retry_after,
        ))
    }

    pub(super) fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        url: String,
        timeout: Duration,
        upload: bool,
        retry_after: Duration,
    ) -> SharedTier {
        SharedTier {
            inner: Arc::new(Inner {
                store,
                prefix,
                timeout,
                upload,
                circuit: Circuit::new(url, retry_after),
                uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
            }),
        }
    }

    /// The object's location: the prefix, then the key.
    pub(super) fn location(&self, key: &ObjectKey) -> Path {
        let full = match self.inner.prefix.as_ref() {
            "" => key.as_str().to_owned(),
            prefix => format!("{prefix}/{key}"),
        };
        Path::parse(full).expect("a prefix and an ObjectKey make a valid path")
    }

    /// Streams the object into `writer`, refusing one over `max_size`
    /// (by its reported size, and while streaming), each wait bounded by
    /// the timeout.
    pub async fn fetch_into(
        &self,
        key: &ObjectKey,
        writer: &mut BlobWriter,
        max_size: u64,
    ) -> Fetched {
        match self.read(key, writer, max_size).await {
            Read::Whole => Fetched::Got(writer.written()),
            Read::Failed => Fetched::Failed,
            Read::Missing => Fetched::Missing,
        }
    }

    /// A small object (a document) whole, or `None` for a miss of any kind.
    pub async fn get_bytes(&self, key: &ObjectKey, max_size: u64) -> Option<Bytes> {
        let mut buffer = BytesMut::new();
        match self.read(key, &mut buffer, max_size).await {
            Read::Whole => Some(buffer.freeze()),
            Read::Missing | Read::Failed => None,
        }
    }

    /// Whether the object is in the bucket (a HEAD).
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool, SharedError> {
        self.admit()?;
        let location = self.location(key);
        match self.timed("head", self.inner.store.head(&location)).await {
            Ok(_) => {
                self.inner.circuit.succeeded();
                Ok(true)
            }
            Err(SharedError::Store(e)) if is_missing_object(&e) => {
                self.inner.circuit.succeeded();
                Ok(false)
            }
            Err(e) => Err(self.tier_failed("head", e)),
        }
    }

    /// Lists one entry below the prefix: whether the bucket is there and
    /// answers. The server runs it at start so that `status` tells.
    pub async fn probe(&self) -> Result<(), SharedError> {
        self.admit()?;
        let prefix = self.inner.prefix.clone();
        let listing = async {
            let mut list = self.inner.store.list(Some(&prefix));
            match list.next().await {
                Some(Err(e)) => Err(SharedError::Store(e)),
                _ => Ok(()),
            }
        };
        match self.timed("list", listing).await {
            Ok(()) => {
                self.inner.circuit.succeeded();
                Ok(())
            }
            Err(e) => Err(self.tier_failed("list", e)),
        }
    }

    /// The tier's URL (never with credentials: `[shared] url` refuses them).
    pub fn url(&self) -> &str {
        self.inner.circuit.url()
    }

    pub fn health(&self) -> SharedHealth {
        self.inner.circuit.health(self.inner.upload)
    }

    /// Reads the object into `sink`, and counts the outcome.
    async fn read(&self, key: &ObjectKey, sink: &mut impl Sink, max_size: u64) -> Read {
        let lookups = &metrics::SHARED_LOOKUPS;
        let counters = &self.inner.circuit.counters;
        if self.admit().is_err() {
            lookups.with_label_values(&["error"]).inc();
            return Read::Failed;
        }
        match self.stream(key, sink, max_size).await {
            Ok(Some(size)) => {
                self.inner.circuit.succeeded();
                lookups.with_label_values(&["hit"]).inc();
                metrics::SHARED_BYTES
                    .with_label_values(&["read"])
                    .inc_by(size);
                Counters::add(&counters.hits, 1);
                Counters::add(&counters.bytes_read, size);
                Read::Whole
            }
            Ok(None) => {
                self.inner.circuit.succeeded();
                lookups.with_label_values(&["miss"]).inc();
                Counters::add(&counters.misses, 1);
                Read::Missing
            }
            Err(ReadError::Tier(e)) => {
                self.tier_failed("get", e);
                lookups.with_label_values(&["error"]).inc();
                Read::Failed
            }
            Err(ReadError::Local(why)) => {
                // The bucket answered; the object is of no use here.
                self.inner.circuit.succeeded();
                tracing::warn!("shared tier: not using {key}: {why}");
                lookups.with_label_values(&["error"]).inc();
                Read::Failed
            }
        }
    }

    async fn stream(
        &self,
        key: &ObjectKey,
        sink: &mut impl Sink,
        max_size: u64,
    ) -> Result<Option<u64>, ReadError> {
        let location = self.location(key);
        let get = self.inner.store.get_opts(&location, GetOptions::default());
        let answer = match self.timed("get", get).await {
            Ok(answer) => answer,
            Err(SharedError::Store(e)) if is_missing_object(&e) => return Ok(None),
            Err(e) => return Err(ReadError::Tier(e)),
        };
        let expected = answer.meta.size;
        let too_large = |size: u64| {
            ReadError::Local(format!(
                "{} over the cap of {}",
                crate::human_size::human_bytes(size),
                crate::human_size::human_bytes(max_size)
            ))
        };
        if expected > max_size {
            return Err(too_large(expected));
        }
        let mut stream = answer.into_stream();
        let mut got = 0u64;
        loop {
            let chunk = match tokio::time::timeout(self.inner.timeout, stream.next()).await {
                Err(_) => return Err(ReadError::Tier(SharedError::Stalled(self.inner.timeout))),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(ReadError::Tier(e.into())),
                Ok(Some(Ok(chunk))) => chunk,
            };
            got += chunk.len() as u64;
            if got > max_size {
                return Err(too_large(got));
            }
            sink.put(&chunk)
                .await
                .map_err(|e| ReadError::Local(format!("cannot write it to the cache: {e}")))?;
        }
        if got != expected {
            return Err(ReadError::Tier(SharedError::Truncated { got, expected }));
        }
        Ok(Some(got))
    }

    /// Whether the bucket may be asked now.
    pub(super) fn admit(&self) -> Result<(), SharedError> {
        if self.inner.circuit.allows() {
            Ok(())
        } else {
            Err(SharedError::Skipped(
                self.health().last_error.unwrap_or_default(),
            ))
        }
    }

    /// `request`, bounded by the timeout, its time recorded.
    pub(super) async fn timed<T, E: Into<SharedError>>(
        &self,
        operation: &str,
        request: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SharedError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.inner.timeout, request).await;
        metrics::SHARED_LATENCY
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => answer.map_err(Into::into),
            Err(_) => Err(SharedError::Timeout(self.inner.timeout)),
        }
    }

    /// Records a failure of the bucket (one warning when it starts) and
    /// gives the error back.
    pub(super) fn tier_failed(&self, operation: &str, error: SharedError) -> SharedError {
        metrics::SHARED_ERRORS.with_label_values(&[operation]).inc();
        self.inner.circuit.failed(&error.to_string());
        error
    }
}

/// "No such object", as opposed to "no such bucket": S3-compatible stores
/// and Azure answer both with a 404, which the client reports alike; only
/// the first is a miss, the second a broken setup.
fn is_missing_object(error: &object_store::Error) -> bool {
    let object_store::Error::NotFound { source, .. } = error else {
        return false;
    };
    let text = source.to_string();
    !["NoSuchBucket", "ContainerNotFound", "bucket does not exist"]
        .iter()
        .any(|sign| text.contains(sign))
}
