//! Provider zips: served from the packed `filesystem_mirror` layout, or
//! downloaded, relayed to the client while they arrive, and stored only
//! once their sha256 matches the signed SHA256SUMS.

use std::io;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hyper::StatusCode;

use super::checksums::{expected_sha256, ChecksumError};
use super::download_answer::DownloadAnswer;
use super::route::Package;
use super::verified::{self, VerifiedBy};
use super::Providers;
use crate::audit::{Kind, Record};
use crate::request::RequestContext;
use crate::response::{self, ChunkSender, HandlerError, Origin, Response};
use crate::store::{
    BlobWriter, Bucket, Found, FromTier, Lookup, RelPath, RunningHash, Segment, Slot, Written,
};
use crate::upstream::{Body, BodyError, BodyLimits};

const ZIP: &str = "application/zip";

/// `<cache>/providers/<host>/<ns>/<type>/terraform-provider-<type>_<version>_<os>_<arch>.zip`,
/// the name `terraform providers mirror` writes, so Terraform can read the
/// directory as a `filesystem_mirror`.
pub fn zip_path(package: &Package) -> RelPath {
    let addr = &package.address;
    Bucket::Providers.join([
        addr.host.clone(),
        addr.namespace.clone(),
        addr.kind.clone(),
        Segment::new(&package.zip_name()).expect("built from valid segments"),
    ])
}

impl Providers {
    /// Terraform sends HEAD before GET; a HEAD for a zip not yet cached is
    /// answered without fetching anything, and the GET does the download.
    pub(super) async fn serve_zip(
        &self,
        package: &Package,
        answer: &DownloadAnswer,
        ctx: &RequestContext,
    ) -> Response {
        let rel = zip_path(package);
        if ctx.head && !self.store.has_file(&rel).await {
            return response::full(StatusCode::OK, ZIP, Bytes::new());
        }
        if let Some((file, size)) = self.store.open_artifact(&rel).await {
            return self.serve_stored(package, answer, &rel, file, size);
        }
        let forwarded = &ctx.forwarded;
        let expected = match self.verified_checksums(package, answer, forwarded).await {
            Ok(sums) => expected_sha256(&sums, answer),
            Err(e) => Err(e),
        };
        let expected = match expected {
            Ok(expected) => expected,
            Err(e) => return self.refuse_checksums(package, e),
        };
        // Concurrent requests for one zip wait here for the first one's
        // download, then find the zip on disk, or why it failed.
        let tier = FromTier::Sha256 {
            sha256: expected.clone(),
            max_size: self.config.limits.provider_package_size,
        };
        let slot = match self.store.lookup(&rel, tier).await {
            Lookup::Found(opened) => {
                if opened.found == Found::SecondTier {
                    let by = VerifiedBy::RegistrySignature;
                    verified::record(&self.store, package, &expected, by);
                }
                return self.serve_stored(package, answer, &rel, opened.file, opened.size);
            }
            Lookup::Failed(reason) => {
                return refuse(
                    package,
                    &format!("the download this request waited for failed: {reason}"),
                )
            }
            Lookup::Missing(slot) => slot,
        };
        let line = Record::new(
            &forwarded.requester(),
            Kind::ProviderPackage,
            package.to_string(),
        )
        .url(answer.download_url.as_str());
        let upstream = match self
            .upstream
            .get_bounded_artifact(
                &answer.download_url,
                &forwarded.without_credential(),
                self.body_limits(),
            )
            .await
        {
            Ok(upstream) => upstream,
            Err(e) => {
                let reason = format!("cannot download the package: {e}");
                if e.was_requested() {
                    self.upstream.audit().write(line.failed(&reason));
                }
                slot.fail(&reason);
                return refuse(package, &reason);
            }
        };
        let writer = match slot.writer() {
            Ok(writer) => writer,
            Err(e) => {
                let failure = self.store.write_error(package_name(package), e);
                // The download had begun: it is a fetch, and it failed.
                self.upstream.audit().write(line.failed(&failure));
                return response::store_failed(&failure);
            }
        };
        let (sender, response) = response::channel(upstream.content_length, ZIP, Origin::Upstream);
        let download = Download {
            providers: self.clone(),
            package: package.clone(),
            expected,
            slot: Some(slot),
            line,
        };
        // In the request's span: what the relay logs is its run's problem.
        let relay = tracing::Instrument::in_current_span(download.run(upstream, writer, sender));
        tokio::spawn(relay);
        response
    }

    /// A stored zip, unless the registry now names another sha256 for it.
    fn serve_stored(
        &self,
        package: &Package,
        answer: &DownloadAnswer,
        rel: &RelPath,
        file: std::fs::File,
        size: u64,
    ) -> Response {
        if let Some(stored) = self.store.recorded_sha256(rel) {
            if stored != answer.shasum {
                let message = format!(
                    "the cached {package} has sha256 {stored}, but the registry now says {}; \
                     delete the cached file to fetch it again",
                    answer.shasum
                );
                return HandlerError::new(StatusCode::BAD_GATEWAY, message).into_response();
            }
        }
        response::file(file, size, ZIP)
    }

    /// A provider zip's bounds: `max_provider_package_size` and the stall
    /// timeout.
    fn body_limits(&self) -> BodyLimits {
        let limits = &self.config.limits;
        BodyLimits {
            max_size: limits.provider_package_size,
            size_key: "max_provider_package_size",
            stall: limits.download_stall,
        }
    }

    /// A full disk is the cache's problem, not the package's: it gets its
    /// own answer.
    pub(super) fn refuse_checksums(&self, package: &Package, error: ChecksumError) -> Response {
        match error {
            ChecksumError::Store(e) => {
                let what = format!("the checksums of {package}");
                response::store_failed(&self.store.write_error(what, e))
            }
            other => refuse(package, &other.to_string()),
        }
    }
}

fn package_name(package: &Package) -> String {
    format!("provider package {package}")
}

/// One zip on its way from upstream to the cache and the client.
struct Download {
    providers: Providers,
    package: Package,
    expected: String,
    /// Held to the end of the download, so that waiters find its result;
    /// taken when the zip is stored or refused.
    slot: Option<Slot>,
    /// The audit line of this download, written when it ends.
    line: Record,
}

impl Download {
    /// Runs to the end even if the client goes away, so the next request
    /// finds the zip cached; serves the client to the end even if the cache
    /// cannot be written, so a full disk fails no install. The last chunk is
    /// held back until the sha256 has been checked: a client never receives
    /// a complete-looking copy of a file that failed its check.
    async fn run(mut self, upstream: Body, writer: BlobWriter, sender: ChunkSender) {
        let _in_flight = crate::metrics::InFlight::start();
        let relayed = match relay(upstream.chunks, writer, &sender).await {
            Ok(relayed) => relayed,
            // The writer is dropped by now, and its temporary file with it.
            Err(e) => return self.fail(&sender, &e.to_string()).await,
        };
        let written = relayed.written();
        self.line = self
            .line
            .clone()
            .hashed(written.size, written.sha256.clone());
        if written.sha256 != self.expected {
            let reason = format!(
                "the downloaded zip does not match SHA256SUMS: its sha256 is {}, expected {} ({} bytes received)",
                written.sha256, self.expected, written.size
            );
            return self.fail(&sender, &reason).await;
        }
        // Held to the end, past the record of how the zip was verified: a
        // waiter on the key (prepare's fast path) reads that record next.
        let slot = self.slot.take().expect("taken only here and by fail");
        let stored = match relayed.cache {
            Cache::Writing(writer) => slot.commit(writer).await.map(drop),
            Cache::GaveUp(_, e) => Err(e),
        };
        let line = self.line.clone();
        let audit = self.providers.upstream.audit();
        match stored {
            Ok(_) => {
                audit.write(line.verified("sha256 from SHA256SUMS"));
                let store = &self.providers.store;
                verified::record(
                    store,
                    &self.package,
                    &written.sha256,
                    VerifiedBy::RegistrySignature,
                );
                tracing::info!("stored {} ({} bytes)", self.package, written.size)
            }
            Err(e) => {
                let failure = self
                    .providers
                    .store
                    .write_error(package_name(&self.package), e);
                tracing::error!("served {} without caching it: {failure}", self.package);
                let line = line.verified("sha256 from SHA256SUMS");
                audit.write(line.failed(format!("served without caching it: {failure}")));
            }
        }
        if let Some(last) = relayed.last {
            let _ = sender.send(Ok(last)).await;
        }
    }

    async fn fail(&mut self, sender: &ChunkSender, reason: &str) {
        tracing::error!("refusing {}: {reason}; nothing was cached", self.package);
        let line = self.line.clone();
        self.providers.upstream.audit().write(line.failed(reason));
        if let Some(slot) = self.slot.take() {
            slot.fail(reason);
        }
        let _ = sender.send(Err(io::Error::other(reason.to_owned()))).await;
    }
}

/// Where the relayed bytes go besides the client: the cache file, or, once
/// writing it failed, only the hash, since the client still needs the check.
enum Cache {
    Writing(BlobWriter),
    GaveUp(RunningHash, io::Error),
}

impl Cache {
    async fn write(self, chunk: &[u8]) -> Cache {
        match self {
            Cache::Writing(mut writer) => match writer.write(chunk).await {
                Ok(()) => Cache::Writing(writer),
                // Removes the partial file now, freeing its space.
                Err(e) => Cache::GaveUp(writer.abandon(), e),
            },
            Cache::GaveUp(mut hash, e) => {
                hash.update(chunk);
                Cache::GaveUp(hash, e)
            }
        }
    }
}

/// A whole body, relayed but for its last chunk.
struct Relayed {
    cache: Cache,
    last: Option<Bytes>,
}

impl Relayed {
    fn written(&self) -> Written {
        match &self.cache {
            Cache::Writing(writer) => writer.written(),
            Cache::GaveUp(hash, _) => hash.written(),
        }
    }
}

/// Sends each chunk to the client as the next one arrives, and to the
/// cache. A cache that cannot be written (a full disk) is given up, not the
/// client's download: nothing half-written is kept either way. Fails only
/// when the upstream body does (broken, over the cap, stalled).
async fn relay<S>(
    mut body: S,
    writer: BlobWriter,
    sender: &ChunkSender,
) -> Result<Relayed, BodyError>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let mut cache = Cache::Writing(writer);
    let mut last: Option<Bytes> = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        cache = cache.write(&chunk).await;
        if let Some(previous) = last.replace(chunk) {
            // A client that went away stops receiving; the download goes on.
            let _ = sender.send(Ok(previous)).await;
        }
    }
    Ok(Relayed { cache, last })
}

/// Why a package is refused, for the client in a 502; nothing was cached.
pub fn refuse(package: &Package, reason: &str) -> Response {
    HandlerError::new(
        StatusCode::BAD_GATEWAY,
        format!("refusing {package}: {reason}"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use tokio::sync::mpsc;

    use super::*;
    use crate::store::is_disk_full;

    #[tokio::test]
    async fn a_full_disk_costs_the_cache_not_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let writer = BlobWriter::on_full_disk(&dir.path().join("package.zip")).unwrap();
        let chunks = ["first ", "second ", "third"];
        let body = futures_util::stream::iter(chunks.map(|c| Ok(Bytes::from_static(c.as_bytes()))));
        let (sender, mut receiver) = mpsc::channel(8);

        let relayed = relay(body, writer, &sender).await.unwrap();
        drop(sender);
        let mut received = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            received.push(chunk.unwrap());
        }
        assert_eq!(received, ["first ", "second "], "all but the last chunk");
        assert_eq!(relayed.last.as_deref(), Some(&b"third"[..]));
        assert_eq!(
            relayed.written().sha256,
            hex::encode(Sha256::digest(chunks.concat())),
            "every byte is still hashed"
        );
        assert!(
            matches!(&relayed.cache, Cache::GaveUp(_, e) if is_disk_full(e)),
            "the cache file was given up"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the partial file is gone"
        );
    }
}
