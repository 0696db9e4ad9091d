//! `providers-warm` and `providers-cold`: `terraform init` of a root module that requires 20
//! providers of real sizes: each carries a real Go binary (the terraform binary this bench
//! drives), so it compresses and unpacks like a provider, about 27 MB zipped and 90 MB
//! unpacked; one carries it nine times, the size of `hashicorp/aws` (about 243 MB zipped,
//! 815 MB unpacked).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::fixtures::provider_zip::Payload;
use crate::fixtures::{FakeRegistry, ProviderSpec};
use crate::runner::{alternate, rounds, Pair};
use crate::sandbox::{run, Network, Sandbox, Tools};
use crate::stats::{human, median};

/// How many providers the root module requires.
pub const COUNT: usize = 20;
/// Copies of the payload in the aws-sized provider, `p00`.
const AWS_COPIES: usize = 9;

/// The providers, built around `payload` (the terraform binary).
pub fn specs(payload: &Payload) -> Vec<ProviderSpec> {
    (0..COUNT)
        .map(|n| {
            let copies = if n == 0 { AWS_COPIES } else { 1 };
            ProviderSpec::new("bench", &format!("p{n:02}"), &["1.0.0"])
                .with_platforms(&[("linux", "amd64")])
                .with_payload(payload.with_copies(copies))
        })
        .collect()
}

pub fn payload(tools: &Tools) -> Result<Payload> {
    Payload::from_file(&tools.terraform, 1)
        .with_context(|| format!("read {} as the payload", tools.terraform.display()))
}

pub fn main_tf() -> String {
    let mut text = String::from("terraform {\n  required_providers {\n");
    for n in 0..COUNT {
        text.push_str(&format!(
            "    p{n:02} = {{\n      source  = \"bench/p{n:02}\"\n      version = \"1.0.0\"\n    }}\n"
        ));
    }
    text.push_str("  }\n}\n");
    text
}

/// What `providers-warm` measured.
pub struct Warm {
    /// tfmirror against the floor: Terraform symlinking from an unpacked `filesystem_mirror`.
    pub pair: Pair,
    /// Terraform unpacking every zip from a packed `filesystem_mirror`, in the same rounds.
    pub packed: Duration,
    /// Disk used by tfmirror's unpacked tree, and by the packed zips.
    pub tree_bytes: u64,
    pub zip_bytes: u64,
}

/// A warm tfmirror (server running, everything cached and unpacked) running `exec -- terraform
/// init` in a fresh directory with a lock file, against Terraform installing the same
/// packages from local mirrors with no proxy, in the same rounds: unpacked (the floor, where
/// Terraform only hashes and symlinks) and packed (where it unpacks every zip).
pub fn warm(tools: &Tools, network: Network, runs: usize) -> Result<Warm> {
    let registry = FakeRegistry::start(specs(&payload(tools)?));
    network.apply(&registry);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let _server = sandbox.serve(&cache, &[])?;
    let main_tf = main_tf();
    // The first init makes the lock file; the second, with it, unpacks the tree.
    let priming = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_through(&cache, &priming), "priming init")?;
    let lock_file = sandbox.path().join("priming.terraform.lock.hcl");
    std::fs::copy(priming.join(".terraform.lock.hcl"), &lock_file)?;
    let unpacking = sandbox.workdir(&main_tf, Some(&lock_file))?;
    run(
        &mut sandbox.init_through(&cache, &unpacking),
        "unpacking init",
    )?;
    for dir in [&priming, &unpacking] {
        std::fs::remove_dir_all(dir)?;
    }
    let packed_dir = cache.join("providers");
    let floor_dir = sandbox.fresh_dir("unpacked-mirror")?;
    unpack_mirror(&packed_dir, &floor_dir)?;
    let unpacked = sandbox.filesystem_mirror_cli_config("unpacked-mirror", &floor_dir)?;
    let packed = sandbox.filesystem_mirror_cli_config("packed-mirror", &packed_dir)?;

    // Each round's directory is removed after it is timed: a packed install writes 2.5 GB.
    let timed = |init: &dyn Fn(&Path) -> Result<Duration>| -> Result<Duration> {
        let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
        let elapsed = init(&dir)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(elapsed)
    };
    let times = rounds(
        "providers-warm",
        runs,
        &mut [
            ("tfmirror", &mut |_| {
                timed(&|dir| sandbox.warm_init(&registry, &cache, dir))
            }),
            ("unpacked mirror", &mut |_| {
                timed(&|dir| run(&mut sandbox.init_with(&unpacked, dir), "unpacked mirror"))
            }),
            ("packed mirror", &mut |_| {
                timed(&|dir| run(&mut sandbox.init_with(&packed, dir), "packed mirror"))
            }),
        ],
    )?;
    let [tfmirror, floor, packed]: [Vec<Duration>; 3] = times.try_into().expect("three contenders");
    Ok(Warm {
        pair: Pair {
            tfmirror,
            baseline: floor,
        },
        packed: median(&packed),
        tree_bytes: disk_usage(&cache.join("providers-unpacked"))?,
        zip_bytes: disk_usage(&packed_dir)?,
    })
}

/// The packed mirror at `packed` (`<host>/<ns>/<type>/terraform-provider-…_<v>_<os>_<arch>.zip`)
/// unpacked into Terraform's unpacked layout at `out`, file modes kept: made by the bench
/// itself, so the floor owes nothing to tfmirror.
fn unpack_mirror(packed: &Path, out: &Path) -> Result<()> {
    for zip in files_below(packed)? {
        let rel = zip.strip_prefix(packed)?;
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .context("zip name")?;
        let Some(rest) = name
            .strip_suffix(".zip")
            .and_then(|n| n.strip_prefix("terraform-provider-"))
        else {
            continue;
        };
        // <type>_<version>_<os>_<arch>
        let parts: Vec<&str> = rest.rsplitn(3, '_').collect();
        let [arch, os, type_version] = parts[..] else {
            continue;
        };
        let version = type_version.rsplit('_').next().context("version")?;
        let target = out
            .join(rel.parent().context("provider directory")?)
            .join(version)
            .join(format!("{os}_{arch}"));
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip)?)?;
        archive
            .extract(&target)
            .with_context(|| format!("unpack {}", zip.display()))?;
    }
    Ok(())
}

fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

/// Bytes of the regular files below `dir`, as `du` counts them (allocated blocks).
fn disk_usage(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for file in files_below(dir)? {
        total += std::fs::symlink_metadata(&file)?.blocks() * 512;
    }
    Ok(total)
}

/// An empty cache each run and `tfmirror exec -- terraform init` alone (server start and
/// downloads included: `exec` fetches the locked providers itself, 8 at a time), against
/// Terraform downloading straight from the upstream. Both working directories start with the
/// same lock file.
pub fn cold(tools: &Tools, network: Network, runs: usize) -> Result<Pair> {
    let registry = FakeRegistry::start(specs(&payload(tools)?));
    let sandbox = Sandbox::new(tools, &registry)?;
    let direct = sandbox.direct_cli_config()?;
    let main_tf = main_tf();
    let lock_file = lock_file(&sandbox)?;
    network.apply(&registry);

    alternate(
        "providers-cold",
        runs,
        |_| {
            let cache = sandbox.fresh_dir("cache")?;
            let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
            let elapsed = run(
                &mut sandbox.init_through(&cache, &dir),
                "init through tfmirror",
            )?;
            sandbox.stop(&cache)?;
            std::fs::remove_dir_all(&dir)?;
            std::fs::remove_dir_all(&cache)?;
            Ok(elapsed)
        },
        |_| {
            let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
            let elapsed = run(&mut sandbox.init_with(&direct, &dir), "direct init")?;
            std::fs::remove_dir_all(&dir)?;
            Ok(elapsed)
        },
    )
}

/// The root module's lock file, made once by Terraform straight from the upstream: call it
/// before the simulated network is applied.
pub fn lock_file(sandbox: &Sandbox) -> Result<PathBuf> {
    let direct = sandbox.direct_cli_config()?;
    let locking = sandbox.workdir(&main_tf(), None)?;
    run(&mut sandbox.init_with(&direct, &locking), "locking init")?;
    Ok(locking.join(".terraform.lock.hcl"))
}

/// How a round's contender is announced on stderr.
pub fn describe(warm: &Warm) -> String {
    format!(
        "packed filesystem_mirror {}; tree {} on disk for {} of zips",
        human(warm.packed),
        crate::stats::human_bytes(warm.tree_bytes),
        crate::stats::human_bytes(warm.zip_bytes)
    )
}
