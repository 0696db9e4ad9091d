//! `cargo run --release --example tfmirror-bench -- <scenario>`: tfmirror against a baseline,
//! with the real terraform binary and the test suite's fake upstream registry behind a
//! simulated network (per-request latency, per-connection bandwidth). Each pair runs
//! alternately (A B A B ...) and the table quotes medians. See `bench/RESULTS.md`.
//!
//! Everything listens on 127.0.0.1; nothing touches the network.

mod bundle;
#[path = "../../tests/fixtures/mod.rs"]
mod fixtures;
mod fleet;
mod metadata;
mod modules;
mod modules_monorepo;
mod monorepo;
mod providers;
mod runner;
mod sandbox;
mod serve;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use runner::Pair;
use sandbox::{Network, Tools};
use stats::human;

#[derive(Parser)]
#[command(about = "Benchmarks tfmirror against baselines with the real terraform binary")]
struct Args {
    scenario: Scenario,
    /// Rounds per pair (each round runs tfmirror, then the baseline).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Simulated round trip added to every upstream request.
    #[arg(long, value_name = "MS", default_value_t = 50)]
    latency_ms: u64,
    /// Simulated upstream bandwidth per connection, in MB/s (10^6 bytes).
    #[arg(long, value_name = "MB_PER_S", default_value_t = 20.0)]
    bandwidth: f64,
    /// The tfmirror binary [default: `tfmirror` beside the directory of this example, i.e.
    /// target/release/tfmirror].
    #[arg(long, env = "TFMIRROR_BIN")]
    tfmirror: Option<PathBuf>,
    #[arg(long, default_value = "/usr/local/bin/terraform")]
    terraform: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    ProvidersWarm,
    ProvidersCold,
    ModulesWarm,
    ModulesMonorepo,
    FleetCold,
    ServeThroughput,
    MetadataLatency,
    Bundle,
    All,
}

/// One line of the table.
struct Row {
    scenario: &'static str,
    tfmirror: String,
    baseline: String,
    ratio: f64,
    runs: usize,
    target: Target,
    note: String,
}

#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(limit) => ratio <= limit,
            Target::AtLeast(limit) => ratio >= limit,
        }
    }

    fn show(self) -> String {
        match self {
            Target::AtMost(limit) => format!("≤ {limit:.2}"),
            Target::AtLeast(limit) => format!("≥ {limit:.2}"),
        }
    }
}

impl Row {
    /// Times compared: the ratio is tfmirror's median over the baseline's.
    fn timed(scenario: &'static str, pair: Pair, target: f64) -> Row {
        Row {
            scenario,
            tfmirror: human(pair.tfmirror_median()),
            baseline: human(pair.baseline_median()),
            ratio: pair.ratio(),
            runs: pair.tfmirror.len(),
            target: Target::AtMost(target),
            note: String::new(),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.runs < 5 {
        eprintln!(
            "note: --runs {} is below the 5 quoted results use",
            args.runs
        );
    }
    let tools = Tools {
        tfmirror: match args.tfmirror {
            Some(path) => path,
            None => default_tfmirror()?,
        },
        terraform: args.terraform,
    };
    for tool in [&tools.tfmirror, &tools.terraform] {
        if !tool.is_file() {
            bail!("{} not found", tool.display());
        }
    }
    let network = Network {
        latency: Duration::from_millis(args.latency_ms),
        bytes_per_sec: (args.bandwidth * 1e6) as u64,
    };
    eprintln!(
        "upstream: {} ms per request, {} MB/s per connection; tfmirror {}",
        args.latency_ms,
        args.bandwidth,
        tools.tfmirror.display()
    );

    let wanted = |s: Scenario| args.scenario == s || args.scenario == Scenario::All;
    let mut rows = Vec::new();
    if wanted(Scenario::ProvidersWarm) {
        let warm = providers::warm(&tools, network, args.runs)?;
        let note = providers::describe(&warm);
        let mut row = Row::timed("providers-warm", warm.pair, 1.15);
        row.note = note;
        rows.push(row);
    }
    if wanted(Scenario::ProvidersCold) {
        let pair = providers::cold(&tools, network, args.runs)?;
        rows.push(Row::timed("providers-cold", pair, 0.35));
    }
    if wanted(Scenario::ModulesWarm) {
        let pair = modules::warm(&tools, network, args.runs)?;
        rows.push(Row::timed("modules-warm", pair, 0.2));
    }
    if wanted(Scenario::ModulesMonorepo) {
        let measured = modules_monorepo::measure(&tools, network, args.runs)?;
        let mut warm = Row::timed("modules-monorepo-warm", measured.warm, 0.4);
        warm.note = measured.note_warm;
        let mut cold = Row::timed("modules-monorepo-cold", measured.cold, 0.8);
        cold.note = measured.note_cold;
        rows.extend([warm, cold]);
    }
    if wanted(Scenario::FleetCold) {
        let measured = fleet::cold(&tools, network, args.runs)?;
        let note = fleet::describe(&measured);
        let mut row = Row::timed("fleet-cold", measured.pair, 0.3);
        row.note = note;
        rows.push(row);
    }
    if wanted(Scenario::ServeThroughput) {
        match serve::find_nginx() {
            None => {
                eprintln!("serve-throughput skipped: nginx is not installed (bench/install.sh)")
            }
            Some(nginx) => rows.push(serve_row(&tools, &nginx, args.runs)?),
        }
    }
    if wanted(Scenario::MetadataLatency) {
        match metadata::find_oha() {
            None => eprintln!("metadata-latency skipped: oha is not installed (bench/install.sh)"),
            Some(oha) => rows.push(metadata_row(&tools, &oha)?),
        }
    }
    if args.scenario == Scenario::Bundle {
        let measured = bundle::measure(&tools, network)?;
        eprintln!(
            "bundle of the providers-warm set: {} entries, {} bytes for {} bytes of content \
             ({:.1}%); create (a warm init included) {}, import into an empty cache {}",
            measured.entries,
            measured.bundle_bytes,
            measured.content_bytes,
            100.0 * measured.bundle_bytes as f64 / measured.content_bytes.max(1) as f64,
            human(measured.create),
            human(measured.import)
        );
    }
    print_table(&rows);
    Ok(())
}

/// Throughputs compared: the ratio is tfmirror's over nginx's, from the median round times.
fn serve_row(tools: &Tools, nginx: &std::path::Path, runs: usize) -> Result<Row> {
    let result = serve::throughput(tools, nginx, runs)?;
    let rate = |d: Duration| result.bytes_per_round as f64 / d.as_secs_f64();
    let (ours, theirs) = (
        rate(result.pair.tfmirror_median()),
        rate(result.pair.baseline_median()),
    );
    let rss_mib = result.peak_rss_bytes as f64 / (1024.0 * 1024.0);
    Ok(Row {
        scenario: "serve-throughput",
        tfmirror: format!("{:.0} MB/s", ours / 1e6),
        baseline: format!("{:.0} MB/s (nginx)", theirs / 1e6),
        ratio: ours / theirs,
        runs: result.pair.tfmirror.len(),
        target: Target::AtLeast(0.8),
        note: format!(
            "{} clients × 100 MiB; tfmirror peak RSS {rss_mib:.1} MiB (target ≤ 64: {})",
            serve::CLIENTS,
            if rss_mib <= 64.0 { "met" } else { "not met" }
        ),
    })
}

/// One fixed-rate run; the ratio is p99 over the 2 ms target.
fn metadata_row(tools: &Tools, oha: &std::path::Path) -> Result<Row> {
    const TARGET_P99: Duration = Duration::from_millis(2);
    let result = metadata::latency(tools, oha)?;
    Ok(Row {
        scenario: "metadata-latency",
        tfmirror: format!("p50 {} / p99 {}", human(result.p50), human(result.p99)),
        baseline: "—".into(),
        ratio: result.p99.as_secs_f64() / TARGET_P99.as_secs_f64(),
        runs: 1,
        target: Target::AtMost(1.0),
        note: format!(
            "ratio = p99 / 2 ms; {} req/s asked, {:.0} req/s done, {:.1}% succeeded",
            metadata::RATE,
            result.requests_per_sec,
            result.success_rate * 100.0
        ),
    })
}

/// `target/release/examples/tfmirror-bench` → `target/release/tfmirror`.
fn default_tfmirror() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("this program's path")?;
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .context("this program's target directory")?;
    let tfmirror = profile_dir.join("tfmirror");
    if !tfmirror.is_file() {
        bail!(
            "{} not found: run `cargo build --release` first, or pass --tfmirror",
            tfmirror.display()
        );
    }
    Ok(tfmirror)
}

/// A Markdown table, ready for bench/RESULTS.md.
fn print_table(rows: &[Row]) {
    println!(
        "| scenario | tfmirror median | baseline median | ratio | runs | target | met | note |"
    );
    println!("|---|---:|---:|---:|---:|---:|:---:|---|");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} |",
            row.scenario,
            row.tfmirror,
            row.baseline,
            row.ratio,
            row.runs,
            row.target.show(),
            if row.target.met(row.ratio) {
                "yes"
            } else {
                "no"
            },
            row.note,
        );
    }
}
