//! `tfmirror warm`: fills the cache with every provider package some lock
//! files name, for the platforms asked for, so that the `terraform init`s
//! that follow (on a plane, in CI with the registry down, in a container
//! build) read nothing from the network.

use std::path::PathBuf;

use super::launch::Launch;
use super::packages::{self, PackageClient, PackageId, Platform, DEFAULT_CONCURRENCY};

#[derive(clap::Args)]
pub struct WarmArgs {
    /// A lock file to read; repeat for more [default: ./.terraform.lock.hcl
    /// when no DIR is given either].
    #[arg(long = "lockfile", value_name = "FILE")]
    lock_files: Vec<PathBuf>,
    /// A platform to fetch packages for, as Terraform names it (e.g.
    /// `darwin_arm64`); repeat for more [default: this machine's].
    #[arg(long = "platform", value_name = "OS_ARCH")]
    platforms: Vec<Platform>,
    /// How many packages to fetch at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    concurrency: usize,
    /// Directories searched for `.terraform.lock.hcl` files, recursively
    /// (`.terraform` and `.git` are skipped).
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

pub async fn run(launch: Launch<'_>, args: WarmArgs) -> anyhow::Result<i32> {
    let paths = packages::lock_file_paths(&args.lock_files, &args.dirs)?;
    let locks = packages::read_lock_files(&paths)?;
    let platforms = Platform::or_host(args.platforms);
    let server = PackageClient::connect(launch).await?;
    let wanted = packages::unique_packages(&locks, &platforms);
    let fetches = packages::fetch_all(&server, wanted, args.concurrency).await;
    let mut failed = fetches.results.values().any(Result::is_err);
    // The server checked each zip against the registry's signed checksums;
    // the lock file may still pin other bytes (a re-published version, or
    // a provider from a different registry under the same name).
    for lock in &locks {
        for provider in &lock.providers {
            for package in PackageId::of(provider, &platforms) {
                let Some(Ok(fetched)) = fetches.results.get(&package) else {
                    continue;
                };
                if let Err(why) = packages::check(fetched, &provider.hashes, false) {
                    let message = packages::mismatch(&package, &lock.path, why, fetched);
                    eprintln!("tfmirror: {message}");
                    failed = true;
                }
            }
        }
    }
    println!("warmed {}", fetches.summary());
    Ok(i32::from(failed))
}
