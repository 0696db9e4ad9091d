//! `fleet-cold`: a new CI runner, its disk empty, initialising the `providers-warm` set
//! (20 providers of real sizes) through tfmirror with a shared tier on a real object store
//! (Garage on loopback) that an earlier runner filled, against the same runner initialising
//! from the upstream behind the simulated network: Terraform straight from it (the
//! baseline, as in `providers-cold`), and tfmirror with no shared tier (reported beside it,
//! to show what the bucket itself adds). All start from the same lock file, tfmirror each
//! round with a new cache directory.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::fixtures::garage::Garage;
use crate::fixtures::FakeRegistry;
use crate::providers;
use crate::runner::{rounds, Pair};
use crate::sandbox::{run, Network, Sandbox, Tools};
use crate::stats::{human, median};

/// How long the first runner's uploads may take to reach the bucket.
const SHARED_WITHIN: Duration = Duration::from_secs(600);

pub fn cold(tools: &Tools, network: Network, runs: usize) -> Result<Fleet> {
    let Some(garage) = Garage::start() else {
        bail!("fleet-cold needs garage (cargo install --locked garage --version 2.5.0)");
    };
    let registry = FakeRegistry::start(providers::specs(&providers::payload(tools)?));
    let sandbox = Sandbox::new(tools, &registry)?;
    let lock_file = providers::lock_file(&sandbox)?;
    let main_tf = providers::main_tf();
    let shared_config = sandbox.path().join("config-shared.toml");
    let base = std::fs::read_to_string(sandbox.path().join("config.toml"))?;
    std::fs::write(
        &shared_config,
        format!("{base}\n{}", garage.config_toml("fleet")),
    )?;
    let with_bucket = |command: &mut Command| {
        command
            .env("TFMIRROR_CONFIG", &shared_config)
            .envs(garage.env());
    };

    // The runner that fills the bucket, before the network is slowed down.
    let first = sandbox.fresh_dir("cache")?;
    let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
    let mut init = sandbox.init_through(&first, &dir);
    with_bucket(&mut init);
    run(&mut init, "the init that fills the bucket")?;
    wait_for_zips(&garage, providers::COUNT)?;
    let mut stop = sandbox.tfmirror(&first, &["stop"]);
    with_bucket(&mut stop);
    run(&mut stop, "tfmirror stop")?;
    network.apply(&registry);

    let new_runner = |shared: bool| -> Result<Duration> {
        let cache = sandbox.fresh_dir("cache")?;
        let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
        let mut init = sandbox.init_through(&cache, &dir);
        let mut stop = sandbox.tfmirror(&cache, &["stop"]);
        if shared {
            with_bucket(&mut init);
            with_bucket(&mut stop);
        }
        let elapsed = run(&mut init, "a new runner's init")?;
        run(&mut stop, "tfmirror stop")?;
        remove(&[&dir, &cache])?;
        Ok(elapsed)
    };
    let direct = sandbox.direct_cli_config()?;
    let times = rounds(
        "fleet-cold",
        runs,
        &mut [
            ("tfmirror + bucket", &mut |_| new_runner(true)),
            ("tfmirror, no bucket", &mut |_| new_runner(false)),
            ("straight from the upstream", &mut |_| {
                let dir = sandbox.workdir(&main_tf, Some(&lock_file))?;
                let elapsed = run(&mut sandbox.init_with(&direct, &dir), "direct init")?;
                remove(&[&dir])?;
                Ok(elapsed)
            }),
        ],
    )?;
    let [bucket, no_bucket, direct]: [Vec<Duration>; 3] =
        times.try_into().expect("three contenders");
    let zip_fetches = registry.count(|r| r.method == "GET" && r.path.ends_with(".zip"));
    Ok(Fleet {
        pair: Pair {
            tfmirror: bucket,
            baseline: direct,
        },
        no_bucket: median(&no_bucket),
        zip_fetches,
    })
}

/// What `fleet-cold` measured.
pub struct Fleet {
    /// tfmirror with the bucket against Terraform straight from the upstream.
    pub pair: Pair,
    /// tfmirror with no bucket, in the same rounds.
    pub no_bucket: Duration,
    /// Zips fetched from the upstream in all rounds: the two upstream contenders' only.
    pub zip_fetches: usize,
}

/// The table's note: tfmirror without the bucket, and the upstream's zip count.
pub fn describe(fleet: &Fleet) -> String {
    let with_bucket = fleet.pair.tfmirror_median();
    format!(
        "tfmirror with no bucket {}, with the bucket {:.2}× that; {} zips from the upstream in all",
        human(fleet.no_bucket),
        with_bucket.as_secs_f64() / fleet.no_bucket.as_secs_f64(),
        fleet.zip_fetches
    )
}

fn wait_for_zips(garage: &Garage, count: usize) -> Result<()> {
    let started = Instant::now();
    loop {
        let keys = garage.list();
        if keys.iter().filter(|k| k.ends_with(".zip")).count() >= count {
            eprintln!(
                "  fleet-cold: the bucket holds every zip {:.1} s after the first init",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > SHARED_WITHIN {
            bail!("the bucket never held the {count} zips: {keys:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn remove(dirs: &[&Path]) -> Result<()> {
    for dir in dirs {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    Ok(())
}
