//! Provider zips: served from the packed `filesystem_mirror` layout, or
//! downloaded, relayed to the client while they arrive, and stored only
//! once their sha256 matches the signed SHA256SUMS.

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::StatusCode;

use super::checksums::expected_sha256;
use super::download_answer::DownloadAnswer;
use super::route::Package;
use super::Providers;
use crate::request::RequestContext;
use crate::response::{self, ChunkSender, Response};
use crate::store::{BlobWriter, RelPath, Segment};

const ZIP: &str = "application/zip";

/// `<cache>/providers/<host>/<ns>/<type>/terraform-provider-<type>_<version>_<os>_<arch>.zip`,
/// the name `terraform providers mirror` writes, so Terraform can read the
/// directory as a `filesystem_mirror`.
pub fn zip_path(package: &Package) -> RelPath {
    let addr = &package.addr;
    let name = format!(
        "terraform-provider-{}_{}_{}_{}.zip",
        addr.kind, package.version, package.os, package.arch
    );
    RelPath::new([
        RelPath::fixed("providers"),
        addr.host.clone(),
        addr.namespace.clone(),
        addr.kind.clone(),
        Segment::new(&name).expect("built from valid segments"),
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
        if ctx.head && !self.store.path(&rel).is_file() {
            return response::full(StatusCode::OK, ZIP, Bytes::new());
        }
        // Concurrent requests for one zip wait here for the first one's
        // download, then find the zip on disk.
        let one_downloader = self.locks.lock(&rel.key()).await;
        if let Some((file, size)) = self.store.open_artifact(&rel).await {
            if let Some(stored) = self.store.recorded_sha256(&rel) {
                if stored != answer.shasum {
                    let message = format!(
                        "the cached {package} has sha256 {stored}, but the registry now says {}; \
                         delete the cached file to fetch it again",
                        answer.shasum
                    );
                    tracing::error!("{message}");
                    return response::error(StatusCode::BAD_GATEWAY, &message);
                }
            }
            return response::file(file, size, ZIP);
        }
        let forwarded = &ctx.forwarded;
        let expected = match self.verified_checksums(package, answer, forwarded).await {
            Ok(sums) => expected_sha256(&sums, answer),
            Err(e) => Err(e),
        };
        let expected = match expected {
            Ok(expected) => expected,
            Err(e) => return refuse(package, &e.to_string()),
        };
        let upstream = match self
            .upstream
            .get_artifact(&answer.download_url, &forwarded.without_credential())
            .await
        {
            Ok(upstream) => upstream,
            Err(e) => return refuse(package, &format!("cannot download the package: {e}")),
        };
        let writer = match self.store.writer(&rel) {
            Ok(writer) => writer,
            Err(e) => return refuse(package, &format!("cannot write to the cache: {e}")),
        };
        let (sender, response) = response::channel(upstream.content_length(), ZIP);
        let download = Download {
            providers: self.clone(),
            package: package.clone(),
            rel,
            expected,
        };
        tokio::spawn(async move {
            download.run(upstream, writer, sender).await;
            drop(one_downloader);
        });
        response
    }
}

/// One zip on its way from upstream to the cache and the client.
struct Download {
    providers: Providers,
    package: Package,
    rel: RelPath,
    expected: String,
}

impl Download {
    /// Runs to the end even if the client goes away, so the next request
    /// finds the zip cached. The last chunk is held back until the sha256
    /// has been checked: a client never receives a complete-looking copy of
    /// a file that failed its check.
    async fn run(self, upstream: reqwest::Response, mut writer: BlobWriter, sender: ChunkSender) {
        let mut body = upstream.bytes_stream();
        let mut held: Option<Bytes> = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    let reason =
                        format!("the download broke off: {}", crate::upstream::describe(&e));
                    return self.fail(&sender, &reason).await;
                }
            };
            if let Err(e) = writer.write(&chunk).await {
                return self
                    .fail(&sender, &format!("cannot write to the cache: {e}"))
                    .await;
            }
            if let Some(previous) = held.replace(chunk) {
                // A client that went away stops receiving; the download goes on.
                let _ = sender.send(Ok(previous)).await;
            }
        }
        let written = writer.written();
        if written.sha256 != self.expected {
            let reason = format!(
                "the downloaded zip does not match SHA256SUMS: its sha256 is {}, expected {} ({} bytes received)",
                written.sha256, self.expected, written.size
            );
            return self.fail(&sender, &reason).await;
        }
        if let Err(e) = self.providers.store.commit(&self.rel, writer).await {
            return self
                .fail(&sender, &format!("cannot store the zip: {e}"))
                .await;
        }
        tracing::info!("stored {} ({} bytes)", self.package, written.size);
        if let Some(last) = held {
            let _ = sender.send(Ok(last)).await;
        }
    }

    async fn fail(&self, sender: &ChunkSender, reason: &str) {
        tracing::error!("refusing {}: {reason}; nothing was cached", self.package);
        let _ = sender.send(Err(io::Error::other(reason.to_owned()))).await;
    }
}

/// Logs why a package is refused and tells the client in a 502.
pub fn refuse(package: &Package, reason: &str) -> Response {
    tracing::error!("refusing {package}: {reason}; nothing was cached");
    response::error(
        StatusCode::BAD_GATEWAY,
        &format!("refusing {package}: {reason}"),
    )
}
