//! `exec`'s fast path for `init`: locked providers installed from the
//! server's unpacked tree, which Terraform hashes against the lock file's
//! `h1:` and symlinks, instead of downloading and unpacking a zip in every
//! working directory.
//!
//! The invariant: the fast path never changes which version is selected.
//! Terraform sees only the tree's versions of an included provider, so a
//! provider is included only where a lock file pins it, never for `init
//! -upgrade`, and, for a command that may run many `init`s, only if no
//! unit that uses it lacks a lock entry for it (see `units`).
//!
//! - `scope`: which lock files the command line makes relevant.
//! - `units`, `usage`: the multi-unit rule.
//! - `prepare`: asking the server to put the providers in the tree.
//! - `verdict`: which providers are then included, and which lock files
//!   need this platform's `h1:`.

mod prepare;
mod scope;
mod units;
mod usage;
mod verdict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use scope::Scope;

use super::packages::{hash_cached, PackageId, Platform};
use super::Health;
use crate::cliconfig::{FilesystemMirror, UserConfig};
use crate::config::Config;
use crate::lockfile::{find_lock_files, LockFile, LockFileError, ProviderAddress, LOCK_FILE_NAME};
use verdict::H1Addition;

/// The tree to install locked providers from for this command, having
/// prepared them and completed the lock files; `None` when the fast path
/// does not apply. Each decision the user should know of is one stderr
/// line. `run` is the `exec` run preparing them.
pub async fn plan(
    scope: &Scope,
    config: &Config,
    server: &Health,
    run: &str,
    user: Option<&UserConfig>,
) -> Option<FilesystemMirror> {
    let scope_root = match scope {
        Scope::NoInstall | Scope::Upgrade => return None,
        Scope::Root(dir) | Scope::Tree(dir) => dir.clone(),
    };
    let multi_unit = matches!(scope, Scope::Tree(_));
    let read = tokio::task::spawn_blocking(move || read_locks(&scope_root, multi_unit)).await;
    let (locks, units) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            eprintln!("tfmirror: {e}; providers are installed through the registry protocol");
            return None;
        }
        Err(e) => {
            tracing::warn!("reading lock files failed: {e}");
            return None;
        }
    };
    if locks.iter().all(|lock| lock.providers.is_empty()) {
        return None;
    }
    if let Some(file) = user.and_then(|user| user.file_setting("provider_installation")) {
        eprintln!(
            "tfmirror: {} has a provider_installation block, so providers are installed as it \
             says, not from tfmirror's unpacked tree",
            file.display()
        );
        return None;
    }

    let units = units.unwrap_or_default();
    report_disqualified(&locks, &units);
    let items = verdict::items(&locks, |address| {
        units::disqualifying(&units, address).is_none()
    });
    if items.is_empty() {
        return None;
    }
    let platform = Platform::host().to_string();
    let (tree, answers) = match prepare::prepare(server, run, &platform, &items).await {
        Ok(prepared) => prepared,
        Err(e) => {
            eprintln!("tfmirror: providers are installed through the registry protocol: {e}");
            return None;
        }
    };
    let mut verdict = verdict::judge(&locks, &items, &answers, config.update_lock);
    for why in verdict.excluded.values() {
        eprintln!("tfmirror: {why}; installed through the registry protocol");
    }
    for (index, additions) in std::mem::take(&mut verdict.additions) {
        let path = locks[index].path.clone();
        let wanted: Vec<ProviderAddress> = additions.keys().cloned().collect();
        let additions = confirmed(&server.server.cache_dir, additions).await;
        let written = tokio::task::spawn_blocking(move || add_h1(&path, &additions)).await;
        let path = &locks[index].path;
        let added = match written {
            Ok(Ok(added)) => added,
            Ok(Err(e)) => {
                eprintln!("tfmirror: {e}");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!("adding h1: hashes failed: {e}");
                Vec::new()
            }
        };
        if !added.is_empty() {
            eprintln!(
                "tfmirror: added the {platform} h1: hash of {} to {} (each package matches a \
                 zh: hash listed there)",
                join(&added),
                path.display()
            );
        }
        // Without the hash, Terraform cannot use the tree's directory.
        for address in wanted.iter().filter(|a| !added.contains(a)) {
            eprintln!(
                "tfmirror: {address}: no h1: hash added to {}; installed through the registry \
                 protocol",
                path.display()
            );
            verdict.include.remove(address);
        }
    }
    if verdict.include.is_empty() {
        return None;
    }
    Some(FilesystemMirror {
        path: tree,
        include: verdict.include.iter().map(ToString::to_string).collect(),
    })
}

/// The lock files of the scope, and for a multi-unit scope its units (a
/// single root has none to check: its lock file is the one `init` reads).
fn read_locks(
    root: &Path,
    multi_unit: bool,
) -> Result<(Vec<LockFile>, Option<Vec<units::Unit>>), LockFileError> {
    let paths: Vec<PathBuf> = if multi_unit {
        find_lock_files(&[root.to_owned()])?
    } else {
        let path = root.join(LOCK_FILE_NAME);
        if path.is_file() {
            vec![path]
        } else {
            Vec::new()
        }
    };
    let locks = paths
        .iter()
        .map(|path| LockFile::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    let units = if multi_unit && !locks.is_empty() {
        Some(units::read_units(root, &locks)?)
    } else {
        None
    };
    Ok((locks, units))
}

/// One line naming the locked providers the multi-unit rule keeps on the
/// registry path, each with a unit that made it so.
fn report_disqualified(locks: &[LockFile], units: &[units::Unit]) {
    let mut addresses: Vec<&ProviderAddress> = locks
        .iter()
        .flat_map(|lock| &lock.providers)
        .map(|provider| &provider.address)
        .collect();
    addresses.sort();
    addresses.dedup();
    let named: Vec<String> = addresses
        .into_iter()
        .filter_map(|address| {
            let unit = units::disqualifying(units, address)?;
            Some(format!("{address} ({})", unit.dir.display()))
        })
        .collect();
    if !named.is_empty() {
        eprintln!(
            "tfmirror: installed through the registry protocol, since a configuration uses \
             them without a lock entry: {}",
            named.join(", ")
        );
    }
}

/// The additions whose zip, hashed here, has the `zh:` that vouches for it
/// and the `h1:` to be added: the lock file is the user's trust root, so
/// what goes into it is checked with this process's own eyes, as `tfmirror
/// lock` does, not taken from the server's word. Terraform then checks the
/// tree's directory against that `h1:`.
async fn confirmed(
    cache_dir: &Path,
    additions: BTreeMap<ProviderAddress, H1Addition>,
) -> BTreeMap<ProviderAddress, H1Addition> {
    let mut confirmed = BTreeMap::new();
    for (address, addition) in additions {
        let Platform { os, arch } = Platform::host();
        let package = PackageId {
            address: address.clone(),
            version: addition.version.clone(),
            os,
            arch,
        };
        match hash_cached(cache_dir, &package).await {
            Ok((zh, h1)) if zh == addition.zh && h1.unpacked == addition.h1 => {
                confirmed.insert(address, addition);
            }
            Ok((zh, h1)) => eprintln!(
                "tfmirror: {package}: the cached zip ({zh}, {}) is not the package the server \
                 prepared ({}, {})",
                h1.unpacked, addition.zh, addition.h1
            ),
            Err(e) => eprintln!("tfmirror: {package}: {e}"),
        }
    }
    confirmed
}

/// Adds each `h1:` to the lock file as it is now on disk, where the entry
/// still pins the same version and lists the `zh:` that vouched for it (the
/// file may have changed since it was read). Returns the providers whose
/// hash was added.
fn add_h1(
    path: &Path,
    additions: &BTreeMap<ProviderAddress, H1Addition>,
) -> Result<Vec<ProviderAddress>, LockFileError> {
    let lock = LockFile::read(path)?;
    let hashes: BTreeMap<ProviderAddress, Vec<String>> = lock
        .providers
        .iter()
        .filter_map(|provider| {
            let addition = additions.get(&provider.address)?;
            let still_vouched =
                provider.version == addition.version && provider.hashes.contains(&addition.zh);
            still_vouched.then(|| (provider.address.clone(), vec![addition.h1.clone()]))
        })
        .collect();
    lock.add_hashes(&hashes)?;
    Ok(hashes.into_keys().collect())
}

fn join(addresses: &[impl std::fmt::Display]) -> String {
    let names: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    names.join(", ")
}
