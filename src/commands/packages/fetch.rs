//! Fetching packages through the cache's server, and hashing what it
//! stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::human_size::human_bytes;
use futures_util::StreamExt;

use super::platform::PackageId;
use super::progress::Progress;
use crate::commands::launch::Launch;
use crate::providers::hashes::{self, ZipH1};

/// A package in the cache, with its hashes.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Whether the zip was cached before this run asked for it.
    pub was_cached: bool,
    /// Bytes received from the server (the zip's size).
    pub bytes: u64,
    pub zh: String,
    pub h1: ZipH1,
}

/// Why a package is not in the cache; shown to the user after its name.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PackageFetchError {
    /// The registry does not publish it: not every provider is built for
    /// every platform, and retrying will not change that.
    #[error("not available: {0}")]
    NotAvailable(String),
    #[error("{0}")]
    Failed(String),
}

/// A client of the cache's server, asking it for packages over its
/// network mirror route.
pub struct PackageClient {
    client: reqwest::Client,
    /// Requests go here (the secret included) ...
    url: String,
    /// ... and messages name this.
    address: String,
    cache_dir: PathBuf,
}

impl PackageClient {
    /// The cache's running server, started in the background if none runs.
    pub async fn connect(launch: Launch<'_>) -> anyhow::Result<PackageClient> {
        let health = launch.connect().await?;
        // A server with `--tls-cert` may use a private CA. Its address is
        // loopback and either this process just started it or the cache
        // recorded it and it answered the health check with this cache's
        // pid and directory; and every package is checked against the lock
        // file's hashes afterwards, so its certificate adds nothing here.
        let client = health.client(None)?;
        Ok(PackageClient {
            client,
            url: health.url.clone(),
            address: health.server.url,
            cache_dir: health.server.cache_dir,
        })
    }

    /// Has the server cache `package` (a no-op when it is cached), then
    /// hashes the cached zip.
    pub async fn fetch(&self, package: &PackageId) -> Result<Fetched, PackageFetchError> {
        let packed = package.packed_path();
        let cached_path = crate::store::Bucket::Providers
            .path(&self.cache_dir)
            .join(&packed);
        let was_cached = cached_path.is_file();
        let bytes = self.download(&packed).await?;
        if !cached_path.is_file() {
            return Err(PackageFetchError::Failed(format!(
                "the server sent it but could not cache it; see {}",
                crate::commands::launch::log_path(&self.cache_dir).display()
            )));
        }
        let (zh, h1) = hash_file(cached_path).await?;
        Ok(Fetched {
            was_cached,
            bytes,
            zh,
            h1,
        })
    }

    /// Reads the zip to its end (the server stores it before sending the
    /// last bytes) and returns its size.
    async fn download(&self, packed: &str) -> Result<u64, PackageFetchError> {
        let url = format!("{}/providers/{packed}", self.url);
        let shown = format!("{}/providers/{packed}", self.address);
        let failed =
            |e: reqwest::Error| PackageFetchError::Failed(format!("{shown}: {}", e.without_url()));
        let response = self.client.get(&url).send().await.map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(refusal(status, &body));
        }
        let mut body = response.bytes_stream();
        let mut bytes = 0;
        while let Some(chunk) = body.next().await {
            bytes += chunk.map_err(failed)?.len() as u64;
        }
        Ok(bytes)
    }
}

/// The server's own message (`tfmirror: ...`) where it gave one; a bare 404
/// passed on from the registry means it does not publish the package.
fn refusal(status: reqwest::StatusCode, body: &str) -> PackageFetchError {
    let own = body.trim().strip_prefix("tfmirror: ").map(str::to_owned);
    if status == reqwest::StatusCode::NOT_FOUND {
        let why = own.unwrap_or_else(|| {
            "the registry publishes no such package \
             (not every provider is built for every platform)"
                .to_owned()
        });
        return PackageFetchError::NotAvailable(why);
    }
    PackageFetchError::Failed(own.unwrap_or_else(|| format!("the server answered {status}")))
}

/// The `zh:` and `h1:` of `package`'s zip in the cache at `cache_dir`, read
/// by this process, whatever the server says of it.
pub async fn hash_cached(
    cache_dir: &Path,
    package: &PackageId,
) -> Result<(String, ZipH1), PackageFetchError> {
    hash_file(
        crate::store::Bucket::Providers
            .path(cache_dir)
            .join(package.packed_path()),
    )
    .await
}

async fn hash_file(path: PathBuf) -> Result<(String, ZipH1), PackageFetchError> {
    let hashed = tokio::task::spawn_blocking(move || {
        let zh = hashes::zh_of_file(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let h1 = hashes::zip_h1(&path).map_err(|e| e.to_string())?;
        Ok::<_, String>((zh, h1))
    })
    .await
    .map_err(|e| PackageFetchError::Failed(e.to_string()))?;
    hashed.map_err(PackageFetchError::Failed)
}

/// What fetching a set of packages came to.
pub struct Fetches {
    pub results: BTreeMap<PackageId, Result<Fetched, PackageFetchError>>,
    pub elapsed: Duration,
}

impl Fetches {
    /// One line: how many packages were cached already, downloaded, failed,
    /// with the bytes and time.
    pub fn summary(&self) -> String {
        let (mut cached, mut downloaded, mut failed, mut bytes) = (0, 0, 0, 0);
        for result in self.results.values() {
            match result {
                Ok(f) if f.was_cached => cached += 1,
                Ok(f) => {
                    downloaded += 1;
                    bytes += f.bytes;
                }
                Err(_) => failed += 1,
            }
        }
        let mut line = format!(
            "{} packages: {cached} already cached, {downloaded} downloaded ({}) in {:.1}s",
            self.results.len(),
            human_bytes(bytes),
            self.elapsed.as_secs_f64()
        );
        if failed > 0 {
            line.push_str(&format!(", {failed} failed"));
        }
        line
    }
}

/// Fetches `packages`, `concurrency` at a time, reporting progress.
pub async fn fetch_all(
    server: &PackageClient,
    packages: Vec<PackageId>,
    concurrency: usize,
) -> Fetches {
    let started = Instant::now();
    let progress = Progress::new(packages.len() as u64);
    let results = futures_util::stream::iter(packages)
        .map(|package| async {
            let result = server.fetch(&package).await;
            progress.done(&package, &result);
            (package, result)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    progress.finish();
    Fetches {
        results,
        elapsed: started.elapsed(),
    }
}
