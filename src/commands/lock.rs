//! `tfmirror lock`: adds the `h1:` hashes of other platforms to lock
//! files, so that every laptop and CI runner accepts the same file.
//!
//! `terraform init` records `zh:` hashes for every platform (from the
//! registry's signed SHA256SUMS) but `h1:` only for the platform it ran
//! on; a machine of another platform that installs from a mirror or a
//! plugin cache then has nothing to check its package against. The `zh:`
//! already in the file are the trust root: a package is hashed only once
//! its zip matches one of them, and nothing is ever removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::launch::Launch;
use super::packages::{
    self, Fetched, Mismatch, PackageClient, PackageFetchError, PackageId, Platform,
    DEFAULT_CONCURRENCY,
};
use crate::lockfile::{LockFile, LockedProvider, ProviderAddress};

#[derive(clap::Args)]
pub struct LockArgs {
    /// A platform to add hashes for, as Terraform names it (e.g.
    /// `darwin_arm64`); repeat for more [default: this machine's].
    #[arg(long = "platform", value_name = "OS_ARCH")]
    platforms: Vec<Platform>,
    /// Change no lock file: list the hashes that are missing, and exit 1
    /// if any is (the packages are still fetched into the cache).
    #[arg(long)]
    check: bool,
    /// Directories searched for `.terraform.lock.hcl` files, recursively
    /// (`.terraform` and `.git` are skipped) [default: the current
    /// directory's lock file].
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

/// A hash to add, and the package it is the hash of.
struct Addition {
    hash: String,
    package: PackageId,
}

/// What one lock file needs.
#[derive(Default)]
struct Plan {
    additions: BTreeMap<ProviderAddress, Vec<Addition>>,
    /// Messages for providers left unchanged because a package did not
    /// match the lock file.
    refused: Vec<Mismatch>,
}

pub async fn run(launch: Launch<'_>, args: LockArgs) -> anyhow::Result<i32> {
    let paths = packages::lock_file_paths(&[], &args.dirs)?;
    let locks = packages::read_lock_files(&paths)?;
    let platforms = Platform::or_host(args.platforms);
    let server = PackageClient::connect(launch).await?;
    let wanted = packages::unique_packages(&locks, &platforms);
    let fetches = packages::fetch_all(&server, wanted, DEFAULT_CONCURRENCY).await;
    eprintln!("fetched {}", fetches.summary());
    let mut failed = fetches.results.values().any(Result::is_err);
    let mut incomplete = false;
    for lock in &locks {
        let plan = plan(lock, &platforms, &fetches.results);
        for message in &plan.refused {
            eprintln!("tfmirror: {message}");
        }
        failed |= !plan.refused.is_empty();
        if plan.additions.is_empty() {
            println!("{}: complete", lock.path.display());
        } else if args.check {
            report(&lock.path, "lacks", &plan);
            incomplete = true;
        } else {
            let hashes = plan
                .additions
                .iter()
                .map(|(address, added)| {
                    let hashes = added.iter().map(|a| a.hash.clone()).collect();
                    (address.clone(), hashes)
                })
                .collect();
            lock.add_hashes(&hashes)?;
            report(&lock.path, "added", &plan);
        }
    }
    Ok(i32::from(failed || incomplete))
}

/// The `h1:` hashes `lock` lacks for `platforms`, of packages that match
/// its `zh:` hashes. A provider with a package that does not match gets
/// none: its lock entry is in question, and the user has to decide.
fn plan(
    lock: &LockFile,
    platforms: &[Platform],
    fetched: &BTreeMap<PackageId, Result<Fetched, PackageFetchError>>,
) -> Plan {
    let mut plan = Plan::default();
    for provider in &lock.providers {
        match provider_additions(lock, provider, platforms, fetched) {
            Ok(added) if added.is_empty() => {}
            Ok(added) => {
                plan.additions.insert(provider.address.clone(), added);
            }
            Err(message) => plan.refused.push(message),
        }
    }
    plan
}

fn provider_additions(
    lock: &LockFile,
    provider: &LockedProvider,
    platforms: &[Platform],
    fetched: &BTreeMap<PackageId, Result<Fetched, PackageFetchError>>,
) -> Result<Vec<Addition>, Mismatch> {
    let mut added: Vec<Addition> = Vec::new();
    for package in PackageId::of(provider, platforms) {
        // A package that could not be fetched was reported already; the
        // other platforms' hashes are still worth adding.
        let Some(Ok(fetched)) = fetched.get(&package) else {
            continue;
        };
        if let Err(why) = packages::check(fetched, &provider.hashes, true) {
            return Err(packages::mismatch(&package, &lock.path, why, fetched));
        }
        for hash in fetched.h1.values() {
            let known = provider.hashes.contains(&hash) || added.iter().any(|a| a.hash == hash);
            if !known {
                added.push(Addition {
                    hash,
                    package: package.clone(),
                });
            }
        }
    }
    Ok(added)
}

/// One line per hash, `verb` being what happened to it.
fn report(path: &Path, verb: &str, plan: &Plan) {
    for addition in plan.additions.values().flatten() {
        println!(
            "{}: {verb} {} ({})",
            path.display(),
            addition.hash,
            addition.package
        );
    }
}
