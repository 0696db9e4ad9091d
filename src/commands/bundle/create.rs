//! `tfmirror bundle create -o FILE [--platform P]... [--append] -- CMD...`:
//! runs the command as `exec` does, then has the server write what the run
//! was served, with the lock file's provider packages for this machine and
//! each `--platform`, as a bundle at FILE.
//!
//! The server writes the bundle (see `server::bundle` for why) and streams
//! it here; it lands in a temporary file beside FILE, renamed over it once
//! whole, so FILE is never half a bundle.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{PROGRESS_FROM, PROGRESS_STEP};
use crate::bundle::format::{self, Manifest};
use crate::bundle::read;
use crate::bundle::read::ReadLimits;
use crate::commands::exec;
use crate::commands::launch::Launch;
use crate::commands::packages::{self, PackageClient, PackageId, Platform, DEFAULT_CONCURRENCY};
use crate::commands::progress::Progress;
use crate::config::Config;
use crate::lockfile::LOCK_FILE_NAME;
use crate::protocol::closure::{BundleRequest, Closure, ClosureItem, BUNDLE_CONTENT_HEADER};
use crate::protocol::{Endpoint, RunId};
use crate::provider_address::{Package, ProviderAddress};
use crate::store::Segment;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The bundle file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Also the lock file's provider packages for this platform (OS_ARCH,
    /// e.g. `darwin_arm64`); repeat for more. This machine's are always in.
    #[arg(long = "platform", value_name = "OS_ARCH")]
    platforms: Vec<Platform>,
    /// Add this run's closure to the bundle at FILE (its entries must
    /// still be in this cache), rewriting it.
    #[arg(long)]
    append: bool,
    #[command(flatten)]
    wrapped: exec::Wrapped,
}

pub async fn run(launch: Launch<'_>, config: Config, args: CreateArgs) -> anyhow::Result<i32> {
    // A bundle to append to is read first: a bad one stops before the run.
    let earlier = match args.append {
        true => Some(read_manifest(&args.output, &config).await?),
        false => None,
    };
    let run_id = RunId::fresh();
    let (cache_dir, config_file) = (launch.cache_dir, launch.config_file);
    let again = || Launch {
        cache_dir,
        config_file,
    };
    let code = exec::run_as(
        again(),
        config.clone(),
        &args.wrapped.command,
        run_id.clone(),
    )
    .await?;
    if code != 0 {
        eprintln!("tfmirror: the command exited with {code}; no bundle written");
        return Ok(code);
    }
    let server = launch.connect().await?;
    let closure: Closure = server
        .get(
            Endpoint::RunClosure(run_id.as_str()),
            Some(Duration::from_secs(30)),
        )
        .await?;
    let mut items = closure.items;
    let mut platforms = args.platforms.clone();
    platforms.push(Platform::host());
    platforms.sort();
    platforms.dedup();
    let lock_file = workdir(&args.wrapped.command)?.join(LOCK_FILE_NAME);
    if lock_file.is_file() {
        match locked_packages(again(), &lock_file, &platforms).await? {
            Some(packages) => items.extend(packages),
            None => return Ok(1),
        }
    }
    let mut platform_names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
    if let Some(earlier) = &earlier {
        items.extend(earlier.entries.iter().filter_map(format::item_of));
        platform_names.extend(earlier.platforms.iter().cloned());
    }
    items.sort();
    items.dedup();
    let request = BundleRequest {
        items,
        platforms: platform_names,
        created: format::created(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref()),
    };
    let answer = server.post_for_stream(Endpoint::Bundle, &request).await?;
    write_stream(answer, &args.output).await?;
    let manifest = read_manifest(&args.output, &config).await?;
    let bytes: u64 = manifest.entries.iter().map(|e| e.size).sum();
    println!(
        "wrote {}: {} entries, {} of content",
        args.output.display(),
        manifest.entries.len(),
        crate::human_size::human_bytes(bytes)
    );
    Ok(0)
}

/// The directory the command works in (`-chdir=DIR`), whose lock file
/// names the providers.
fn workdir(command: &[OsString]) -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let args = command.get(1..).unwrap_or_default();
    Ok(super::super::run_start::subcommand(args, &cwd)
        .map(|sub| sub.workdir)
        .unwrap_or(cwd))
}

/// The lock file's packages for `platforms`, fetched through the server
/// as `warm` fetches them, as the items that carry each; `None` (the
/// reasons printed) when one cannot be had.
async fn locked_packages(
    launch: Launch<'_>,
    lock_file: &Path,
    platforms: &[Platform],
) -> anyhow::Result<Option<Vec<ClosureItem>>> {
    let locks = packages::read_lock_files(&[lock_file.to_path_buf()])?;
    let wanted = packages::unique_packages(&locks, platforms);
    let client = PackageClient::connect(launch).await?;
    let fetches = packages::fetch_all(&client, wanted, DEFAULT_CONCURRENCY).await;
    let mut items = Vec::new();
    let mut failed = false;
    for (package, result) in &fetches.results {
        match (result, in_store_terms(package)) {
            (Ok(_), Some(package)) => items.extend(crate::providers::package_closure(&package)),
            (Ok(_), None) => {
                eprintln!("tfmirror: {package} cannot be named in the cache");
                failed = true;
            }
            (Err(e), _) => {
                eprintln!("tfmirror: {package}: {e}; no bundle written");
                failed = true;
            }
        }
    }
    Ok((!failed).then_some(items))
}

fn in_store_terms(package: &PackageId) -> Option<Package> {
    let segment = |part: &str| Segment::new(part).ok();
    Some(Package {
        address: ProviderAddress {
            host: segment(&package.address.host)?,
            namespace: segment(&package.address.namespace)?,
            kind: segment(&package.address.kind)?,
        },
        version: segment(&package.version)?,
        os: segment(&package.os)?,
        arch: segment(&package.arch)?,
    })
}

/// The server's answer into a temporary file beside `dest`, renamed over
/// it once whole.
async fn write_stream(mut answer: reqwest::Response, dest: &Path) -> anyhow::Result<()> {
    let dir = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(".tfmirror-bundle-")
            .tempfile_in(dir)
    })
    .await??;
    let mut file = tokio::fs::File::from_std(temp.reopen()?);
    // The bundle's size is not known ahead; its content's is, and close.
    let content = answer
        .headers()
        .get(BUNDLE_CONTENT_HEADER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let progress =
        (content > PROGRESS_FROM).then(|| Progress::new(content.div_ceil(PROGRESS_STEP), "MB"));
    let (mut received, mut shown) = (0u64, 0u64);
    while let Some(chunk) = answer.chunk().await.map_err(reqwest::Error::without_url)? {
        file.write_all(&chunk).await?;
        received += chunk.len() as u64;
        while received / PROGRESS_STEP > shown {
            shown += 1;
            if let Some(progress) = &progress {
                progress.done(&format!("{shown} MB"), None, false);
            }
        }
    }
    if let Some(progress) = progress {
        progress.finish();
    }
    file.sync_all().await?;
    drop(file);
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || temp.persist(dest).map(drop)).await??;
    Ok(())
}

async fn read_manifest(path: &Path, config: &Config) -> anyhow::Result<Manifest> {
    let path = path.to_path_buf();
    let limits = ReadLimits::from(&config.limits);
    let manifest = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        read::manifest(std::io::BufReader::new(file), limits)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    })
    .await??;
    Ok(manifest)
}
