//! `metadata-latency`: a cached provider version list requested at a fixed rate with `oha`
//! (open loop, latency corrected for coordinated omission), p50 and p99.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::fixtures::{FakeRegistry, ProviderSpec};
use crate::sandbox::{Sandbox, Tools};

pub const RATE: u32 = 2000;
const SECONDS: u32 = 10;
const CONNECTIONS: u32 = 16;

pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub requests_per_sec: f64,
    pub success_rate: f64,
}

/// `oha` on PATH or in ~/.cargo/bin, where `bench/install.sh` puts it.
pub fn find_oha() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>());
    let cargo_bin = std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin"));
    on_path
        .chain(cargo_bin)
        .map(|dir| dir.join("oha"))
        .find(|candidate| candidate.is_file())
}

pub fn latency(tools: &Tools, oha: &Path) -> Result<Latency> {
    let registry = FakeRegistry::start(vec![ProviderSpec::new("bench", "meta", &["1.0.0"])]);
    let sandbox = Sandbox::new(tools, &registry)?;
    let cache = sandbox.path().join("cache");
    let server = sandbox.serve(&cache, &[])?;
    let url = format!(
        "{}/v1/providers/registry.terraform.io/bench/meta/versions",
        server.url
    );
    // Cached by the first request; the rest are hits for the whole default metadata_ttl.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async { reqwest::get(&url).await?.error_for_status() })?;

    let output = Command::new(oha)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .args(["-z", &format!("{SECONDS}s")])
        .args(["-q", &RATE.to_string()])
        .args(["-c", &CONNECTIONS.to_string()])
        .arg(&url)
        .output()
        .context("run oha")?;
    if !output.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("oha's JSON report")?;
    let seconds = |pointer: &str| {
        report
            .pointer(pointer)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("{pointer} in oha's report"))
    };
    Ok(Latency {
        p50: Duration::from_secs_f64(seconds("/latencyPercentiles/p50")?),
        p99: Duration::from_secs_f64(seconds("/latencyPercentiles/p99")?),
        requests_per_sec: seconds("/summary/requestsPerSec")?,
        success_rate: seconds("/summary/successRate")?,
    })
}
