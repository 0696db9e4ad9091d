//! `providers-warm` and `providers-cold`: `terraform init` of a root module that requires 20
//! providers of 2 MB each.

use std::path::PathBuf;

use anyhow::Result;

use crate::fixtures::{FakeRegistry, ProviderSpec};
use crate::runner::{alternate, Pair};
use crate::sandbox::{run, Network, Sandbox, Tools};

const PROVIDERS: usize = 20;
const ZIP_BYTES: usize = 2 * 1024 * 1024;

fn specs() -> Vec<ProviderSpec> {
    (0..PROVIDERS)
        .map(|n| {
            ProviderSpec::new("bench", &format!("p{n:02}"), &["1.0.0"])
                .with_platforms(&[("linux", "amd64")])
                .with_extra_bytes(ZIP_BYTES)
        })
        .collect()
}

fn main_tf() -> String {
    let mut text = String::from("terraform {\n  required_providers {\n");
    for n in 0..PROVIDERS {
        text.push_str(&format!(
            "    p{n:02} = {{\n      source  = \"bench/p{n:02}\"\n      version = \"1.0.0\"\n    }}\n"
        ));
    }
    text.push_str("  }\n}\n");
    text
}

/// A warm tfmirror (server already running, everything cached) against Terraform reading the
/// same packages from a local packed `filesystem_mirror` (the cache's own `providers/`), with
/// no proxy: the floor for any local cache.
pub fn warm(tools: &Tools, network: Network, runs: usize) -> Result<Pair> {
    let registry = FakeRegistry::start(specs());
    network.apply(&registry);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let _server = sandbox.serve(&cache, &[])?;
    let main_tf = main_tf();
    let priming = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_through(&cache, &priming), "priming init")?;
    let mirror = sandbox.filesystem_mirror_cli_config(&cache.join("providers"))?;

    alternate(
        "providers-warm",
        runs,
        |_| sandbox.warm_init(&registry, &cache, &sandbox.workdir(&main_tf, None)?),
        |_| {
            let dir = sandbox.workdir(&main_tf, None)?;
            run(
                &mut sandbox.init_with(&mirror, &dir),
                "init from a filesystem mirror",
            )
        },
    )
}

/// An empty cache each run, filled by `tfmirror warm` from the lock file and then used by
/// `tfmirror exec -- terraform init` (server start included), against Terraform downloading
/// straight from the upstream. Both working directories start with the same lock file.
pub fn cold(tools: &Tools, network: Network, runs: usize) -> Result<Pair> {
    let registry = FakeRegistry::start(specs());
    let sandbox = Sandbox::new(tools, &registry)?;
    let direct = sandbox.direct_cli_config()?;
    let main_tf = main_tf();
    // The lock file, made once without the simulated network.
    let locking = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_with(&direct, &locking), "locking init")?;
    let lock_file: PathBuf = locking.join(".terraform.lock.hcl");
    network.apply(&registry);

    alternate(
        "providers-cold",
        runs,
        |_| {
            let cache = sandbox.fresh_dir("cache")?;
            let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
            let mut warm = sandbox.tfmirror(&cache, &["warm"]);
            warm.current_dir(&dir);
            let elapsed = run(&mut warm, "tfmirror warm")?
                + run(
                    &mut sandbox.init_through(&cache, &dir),
                    "init through tfmirror",
                )?;
            sandbox.stop(&cache)?;
            Ok(elapsed)
        },
        |_| {
            let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
            run(&mut sandbox.init_with(&direct, &dir), "direct init")
        },
    )
}
