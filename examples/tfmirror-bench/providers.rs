//! `providers-warm` and `providers-cold`: `terraform init` of a root module that requires 20
//! providers of 2 MB each.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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

/// What `providers-warm` measured.
pub struct Warm {
    pub pair: Pair,
    /// How long the warm server takes to answer, one after another, the requests Terraform
    /// makes in a warm init (median of 5): the part of the tfmirror time that is tfmirror's.
    pub server_share: Duration,
}

/// A warm tfmirror (server already running, everything cached) against Terraform reading the
/// same packages from a local packed `filesystem_mirror` (the cache's own `providers/`), with
/// no proxy: the floor for any local cache.
pub fn warm(tools: &Tools, network: Network, runs: usize) -> Result<Warm> {
    let registry = FakeRegistry::start(specs());
    network.apply(&registry);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let server = sandbox.serve(&cache, &[])?;
    let main_tf = main_tf();
    let priming = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_through(&cache, &priming), "priming init")?;
    let mirror = sandbox.filesystem_mirror_cli_config(&cache.join("providers"))?;
    let server_share = server_share(&server.url)?;

    let pair = alternate(
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
    )?;
    Ok(Warm { pair, server_share })
}

/// Replays a warm init's requests against the server, as Terraform makes them, one after
/// another: for each provider its version list, download answer, SHA256SUMS, signature, and
/// the zip (HEAD, then GET).
fn server_share(server: &str) -> Result<Duration> {
    let runtime = tokio::runtime::Runtime::new()?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut times: Vec<Duration> = (0..5)
        .map(|_| runtime.block_on(replay_warm_init(&client, server)))
        .collect::<Result<_>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

async fn replay_warm_init(client: &reqwest::Client, server: &str) -> Result<Duration> {
    let get = |url: String| async move {
        let bytes = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        anyhow::Ok(bytes)
    };
    let base = format!("{server}/v1/providers/registry.terraform.io/bench");
    let started = Instant::now();
    for n in 0..PROVIDERS {
        get(format!("{base}/p{n:02}/versions")).await?;
        let answer = get(format!("{base}/p{n:02}/1.0.0/download/linux/amd64")).await?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)?;
        let url = |field: &str| {
            answer[field]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{field} in the download answer"))
        };
        get(url("shasums_url")?).await?;
        get(url("shasums_signature_url")?).await?;
        client
            .head(url("download_url")?)
            .send()
            .await?
            .error_for_status()?;
        let zip = get(url("download_url")?).await?;
        anyhow::ensure!(zip.len() >= ZIP_BYTES, "short zip from tfmirror");
    }
    Ok(started.elapsed())
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
