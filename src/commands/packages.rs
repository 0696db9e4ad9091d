//! What `warm` and `lock` share: the provider packages some lock files
//! name for some platforms, fetched through the cache's server, hashed and
//! checked against the lock files that name them.
//!
//! Packages go through the server's network mirror route rather than
//! straight to the registry: the server is the one process that writes the
//! cache, it verifies each zip against the signed SHA256SUMS before storing
//! it, and concurrent requests for one package share one download. The
//! hashes are then computed here from the cached file, which this process
//! can read because the server shares its machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::launch::Launch;
use crate::lockfile::{find_lock_files, LockFile, LockedProvider, ProviderAddress, LOCK_FILE_NAME};
use crate::providers::hashes::{self, ZipH1};

/// Packages fetched at once unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// An `OS_ARCH` pair in Go's names, as registries and lock files use them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.os, self.arch)
    }
}

impl FromStr for Platform {
    type Err = String;

    /// Both halves become parts of a file name, so only lowercase letters
    /// and digits are allowed, as in every platform Terraform knows.
    fn from_str(s: &str) -> Result<Platform, String> {
        let word = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match s.split_once('_') {
            Some((os, arch)) if word(os) && word(arch) => Ok(Platform {
                os: os.to_owned(),
                arch: arch.to_owned(),
            }),
            _ => Err(format!(
                "{s:?} is not a platform; write OS_ARCH as Terraform does, e.g. linux_amd64"
            )),
        }
    }
}

impl Platform {
    /// This machine's platform in Go's names, the one `terraform init`
    /// here installs.
    pub fn host() -> Platform {
        Platform::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    fn from_rust(os: &str, arch: &str) -> Platform {
        let os = match os {
            "macos" => "darwin",
            other => other,
        };
        let arch = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: os.to_owned(),
            arch: arch.to_owned(),
        }
    }

    /// The platforms asked for, else this machine's.
    pub fn or_host(requested: Vec<Platform>) -> Vec<Platform> {
        if requested.is_empty() {
            return vec![Platform::host()];
        }
        let mut platforms = requested;
        platforms.sort();
        platforms.dedup();
        platforms
    }
}

/// One provider package: a locked version of a provider for one platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageId {
    pub address: ProviderAddress,
    pub version: String,
    pub platform: Platform,
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.address, self.version, self.platform)
    }
}

impl PackageId {
    /// The packages of `provider` for each of `platforms`.
    pub fn of(provider: &LockedProvider, platforms: &[Platform]) -> Vec<PackageId> {
        platforms
            .iter()
            .map(|platform| PackageId {
                address: provider.address.clone(),
                version: provider.version.clone(),
                platform: platform.clone(),
            })
            .collect()
    }

    /// `<host>/<ns>/<type>/terraform-provider-<type>_<version>_<os>_<arch>.zip`,
    /// the packed layout of the cache and of the network mirror's URLs.
    fn packed_path(&self) -> String {
        let ProviderAddress {
            host,
            namespace,
            kind,
        } = &self.address;
        let Platform { os, arch } = &self.platform;
        format!(
            "{host}/{namespace}/{kind}/terraform-provider-{kind}_{}_{os}_{arch}.zip",
            self.version
        )
    }
}

/// The lock files named by `--lockfile` and found under `dirs`, else the
/// one in the current directory.
pub fn lock_file_paths(files: &[PathBuf], dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if files.is_empty() && dirs.is_empty() {
        let here = PathBuf::from(LOCK_FILE_NAME);
        if !here.is_file() {
            anyhow::bail!(
                "no {LOCK_FILE_NAME} in the current directory; run `terraform init` first, \
                 or name lock files with --lockfile or directories to search"
            );
        }
        return Ok(vec![here]);
    }
    let mut paths = files.to_vec();
    let found = find_lock_files(dirs)?;
    if found.is_empty() && !dirs.is_empty() {
        anyhow::bail!("no {LOCK_FILE_NAME} under {}", list_paths(dirs));
    }
    paths.extend(found);
    paths.sort();
    paths.dedup();
    Ok(paths)
}

fn list_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// Every package `locks` name for `platforms`, each once: lock files of
/// many root modules share most of their providers.
pub fn unique_packages(locks: &[LockFile], platforms: &[Platform]) -> Vec<PackageId> {
    let all: BTreeSet<PackageId> = locks
        .iter()
        .flat_map(|lock| &lock.providers)
        .flat_map(|provider| PackageId::of(provider, platforms))
        .collect();
    all.into_iter().collect()
}

/// Reads every lock file before any download, so a malformed one stops the
/// run at once with its `path:line:` message.
pub fn read_lock_files(paths: &[PathBuf]) -> anyhow::Result<Vec<LockFile>> {
    paths
        .iter()
        .map(|path| LockFile::read(path).map_err(anyhow::Error::from))
        .collect()
}

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
pub enum FetchError {
    /// The registry does not publish it: not every provider is built for
    /// every platform, and retrying will not change that.
    #[error("not available: {0}")]
    NotAvailable(String),
    #[error("{0}")]
    Failed(String),
}

/// The cache's server, asked for packages over its network mirror route.
pub struct Server {
    client: reqwest::Client,
    url: String,
    cache_dir: PathBuf,
}

impl Server {
    /// The cache's running server, started in the background if none runs.
    pub async fn connect(launch: Launch<'_>) -> anyhow::Result<Server> {
        let health = launch.connect().await?;
        // A server with `--tls-cert` may use a private CA. Its address is
        // loopback and either this process just started it or the cache
        // recorded it and it answered the health check with this cache's
        // pid and directory; and every package is checked against the lock
        // file's hashes afterwards, so its certificate adds nothing here.
        let client = reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Server {
            client,
            url: health.url,
            cache_dir: health.cache_dir,
        })
    }

    /// Has the server cache `package` (a no-op when it is cached), then
    /// hashes the cached zip.
    pub async fn fetch(&self, package: &PackageId) -> Result<Fetched, FetchError> {
        let packed = package.packed_path();
        let cached_path = self.cache_dir.join("providers").join(&packed);
        let was_cached = cached_path.is_file();
        let bytes = self.download(&packed).await?;
        if !cached_path.is_file() {
            return Err(FetchError::Failed(format!(
                "the server sent it but could not cache it; see {}",
                super::launch::log_path(&self.cache_dir).display()
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
    async fn download(&self, packed: &str) -> Result<u64, FetchError> {
        let url = format!("{}/providers/{packed}", self.url);
        let failed = |e: reqwest::Error| FetchError::Failed(format!("{url}: {e}"));
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
fn refusal(status: reqwest::StatusCode, body: &str) -> FetchError {
    let own = body.trim().strip_prefix("tfmirror: ").map(str::to_owned);
    if status == reqwest::StatusCode::NOT_FOUND {
        let why = own.unwrap_or_else(|| {
            "the registry publishes no such package \
             (not every provider is built for every platform)"
                .to_owned()
        });
        return FetchError::NotAvailable(why);
    }
    FetchError::Failed(own.unwrap_or_else(|| format!("the server answered {status}")))
}

async fn hash_file(path: PathBuf) -> Result<(String, ZipH1), FetchError> {
    let hashed = tokio::task::spawn_blocking(move || {
        let zh = hashes::zh_of_file(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let h1 = hashes::zip_h1(&path).map_err(|e| e.to_string())?;
        Ok::<_, String>((zh, h1))
    })
    .await
    .map_err(|e| FetchError::Failed(e.to_string()))?;
    hashed.map_err(FetchError::Failed)
}

/// How a fetched package stands against a lock file's hashes for its
/// provider: the lock file is the trust root.
///
/// With `require_zh`, a lock file that lists any `zh:` for the provider
/// must list this zip's: `lock` is about to add `h1:` values on the
/// strength of that match, and an `h1:` alone may have come from an
/// unverified mirror. Otherwise any listed `zh:` or `h1:` of the package
/// will do, as for Terraform. A provider locked without hashes accepts
/// anything the server verified.
pub fn check(fetched: &Fetched, locked: &[String], require_zh: bool) -> Result<(), &'static str> {
    let listed = |hash: &String| locked.contains(hash);
    let zh_matches = listed(&fetched.zh);
    if require_zh && locked.iter().any(|h| h.starts_with("zh:")) {
        return if zh_matches {
            Ok(())
        } else {
            Err("its zh: hash is not among the lock file's")
        };
    }
    if locked.is_empty() || zh_matches || fetched.h1.values().iter().any(listed) {
        Ok(())
    } else {
        Err("none of its hashes is among the lock file's")
    }
}

/// The message for a package that does not match `lock_file`.
pub fn mismatch(package: &PackageId, lock_file: &Path, why: &str, fetched: &Fetched) -> String {
    format!(
        "{package} does not match {}: {why} ({}, {}); the lock file is the trust root, \
         so the package is refused",
        lock_file.display(),
        fetched.zh,
        fetched.h1.values().join(", ")
    )
}

/// What fetching a set of packages came to.
pub struct Fetches {
    pub results: BTreeMap<PackageId, Result<Fetched, FetchError>>,
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
            HumanBytes(bytes),
            self.elapsed.as_secs_f64()
        );
        if failed > 0 {
            line.push_str(&format!(", {failed} failed"));
        }
        line
    }
}

/// Fetches `packages`, `concurrency` at a time, reporting progress.
pub async fn fetch_all(server: &Server, packages: Vec<PackageId>, concurrency: usize) -> Fetches {
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

/// A progress bar on a terminal; elsewhere (CI logs, pipes) a plain line
/// per package, which a log keeps and a bar would garble.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} packages, {elapsed} {wide_msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            let bar = ProgressBar::new(total).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }

    /// Failures are printed either way; successes only without a bar.
    fn done(&self, package: &PackageId, result: &Result<Fetched, FetchError>) {
        let line = match result {
            Ok(f) if f.was_cached => format!("cached      {package}"),
            Ok(f) => format!("downloaded  {package} ({})", HumanBytes(f.bytes)),
            Err(e) => format!("tfmirror: {package}: {e}"),
        };
        match &self.bar {
            Some(bar) => {
                if result.is_err() {
                    bar.println(line);
                }
                bar.set_message(package.to_string());
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_rust_platforms_to_go_names() {
        for (os, arch, go) in [
            ("linux", "x86_64", "linux_amd64"),
            ("macos", "aarch64", "darwin_arm64"),
            ("windows", "x86", "windows_386"),
            ("freebsd", "arm", "freebsd_arm"),
        ] {
            assert_eq!(Platform::from_rust(os, arch).to_string(), go);
        }
    }

    #[test]
    fn reads_platform_arguments() {
        let platform: Platform = "darwin_arm64".parse().unwrap();
        assert_eq!((&*platform.os, &*platform.arch), ("darwin", "arm64"));
        for bad in [
            "linux",
            "linux_",
            "_amd64",
            "linux_amd64_v2",
            "Linux_amd64",
            "../x_y",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    fn fetched(zh: &str, h1: &str) -> Fetched {
        Fetched {
            was_cached: false,
            bytes: 0,
            zh: zh.to_owned(),
            h1: ZipH1 {
                unpacked: h1.to_owned(),
                archive: h1.to_owned(),
            },
        }
    }

    #[test]
    fn the_lock_file_decides_which_packages_are_accepted() {
        let locked = |hashes: &[&str]| hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let package = fetched("zh:aa", "h1:AA=");
        assert!(check(&package, &locked(&["zh:bb", "zh:aa"]), true).is_ok());
        assert!(check(&package, &locked(&["h1:AA=", "zh:bb"]), false).is_ok());
        assert!(check(&package, &locked(&["h1:AA=", "zh:bb"]), true).is_err());
        assert!(check(&package, &locked(&["h1:AA="]), true).is_ok());
        assert!(check(&package, &locked(&["h1:BB=", "zh:bb"]), false).is_err());
        assert!(check(&package, &[], true).is_ok());
    }
}
