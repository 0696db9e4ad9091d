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
//!
//! - `platform`: the packages to fetch, named as lock files name them.
//! - `fetch`: getting them through the server and hashing the cached zips.
//! - `progress`: what the user sees meanwhile.

mod fetch;
mod platform;
mod progress;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::lockfile::{find_lock_files, LockFile, LOCK_FILE_NAME};

pub use fetch::{fetch_all, hash_cached, Fetched, PackageClient, PackageFetchError};
pub use platform::{PackageId, Platform};

/// Packages fetched at once unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

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

/// A fetched package that does not match a lock file's hashes: refused,
/// since the lock file is the trust root.
#[derive(Debug, thiserror::Error)]
#[error(
    "{package} does not match {}: {why} ({zh}, {h1}); the lock file is the trust root, \
     so the package is refused",
    lock_file.display()
)]
pub struct Mismatch {
    package: String,
    lock_file: PathBuf,
    /// What [`check`] said.
    why: &'static str,
    zh: String,
    /// The package's `h1:` hashes, `, `-joined.
    h1: String,
}

/// The refusal of a package that does not match `lock_file`.
pub fn mismatch(
    package: &PackageId,
    lock_file: &Path,
    why: &'static str,
    fetched: &Fetched,
) -> Mismatch {
    Mismatch {
        package: package.to_string(),
        lock_file: lock_file.to_owned(),
        why,
        zh: fetched.zh.clone(),
        h1: fetched.h1.values().join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::hashes::ZipH1;

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
