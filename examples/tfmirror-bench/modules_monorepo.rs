//! `modules-monorepo`: a root module with 20 direct `git::` calls into the generated mono-repo
//! ([`crate::monorepo`], about 49 MB packed) over 3 tags, and 5 into a small second
//! repository, the shape issue 15 measured on a real mono-repo. Terraform clones once per
//! (repository, ref), so a run is 3 full clones of the mono-repo and 2 of the small one; what
//! tfmirror can win is where those clones come from.
//!
//! Every run, on either side, is `init` in a fresh working directory (no `.terraform`, no lock
//! file, a directory neither Terraform nor tfmirror has seen), as a CI job's checkout is; `init`
//! as in `modules-warm`, which with no provider required installs modules and nothing else.
//! - **warm**: one tfmirror server whose cache already holds both mirrors (one priming run).
//! - **cold**: an empty cache each run; `exec` starts the server, which is stopped after.
//!
//! The baseline is Terraform cloning straight from the upstream, over the same simulated
//! network. Every run's module directories are checked against the upstream's files, and the
//! upstream git traffic of each run is counted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::fixtures::{FakeRegistry, GitRepoSpec};
use crate::monorepo::{module_name, tag_name, Monorepo, MODULES};
use crate::runner::{alternate, Pair};
use crate::sandbox::{report_upstream, run, Network, Sandbox, Tools};
use crate::stats::{human_bytes, spread};

const MONOREPO: &str = "org/platform.git";
/// The fixture's small repository: `modules/{vpc,dns}` at tags `v1.0.0` and `v1.1.0`.
const SECOND: &str = "org/network.git";
/// Calls into the mono-repo per tag, and the commits whose tags they use.
const MONOREPO_CALLS: [(usize, usize); 3] = [(400, 7), (700, 7), (1000, 6)];
/// Calls into the second repository: `(module, ref)`.
const SECOND_CALLS: [(&str, &str); 5] = [
    ("vpc", "v1.0.0"),
    ("dns", "v1.0.0"),
    ("vpc", "v1.1.0"),
    ("dns", "v1.1.0"),
    ("vpc", "v1.1.0"),
];

/// One `module` block.
struct Call {
    name: String,
    repo: &'static str,
    subdir: String,
    reference: String,
}

/// 20 calls into the mono-repo, each tag's into different module directories, then 5 into the
/// second repository.
fn calls() -> Vec<Call> {
    let mut calls = Vec::new();
    let mut n = 0;
    for (commit, count) in MONOREPO_CALLS {
        let reference = tag_name(commit).expect("a tagged commit");
        for _ in 0..count {
            // Spread over the providers and kinds: 20 distinct directories out of 160.
            let module = module_name(n * 8 % MODULES);
            calls.push(Call {
                name: format!("p{n:02}_{}", module.replace('-', "_")),
                repo: MONOREPO,
                subdir: format!("modules/{module}"),
                reference: reference.clone(),
            });
            n += 1;
        }
    }
    for (k, (module, reference)) in SECOND_CALLS.iter().enumerate() {
        calls.push(Call {
            name: format!("n{k}_{module}"),
            repo: SECOND,
            subdir: format!("modules/{module}"),
            reference: reference.to_string(),
        });
    }
    calls
}

fn main_tf(registry: &FakeRegistry, calls: &[Call]) -> String {
    calls
        .iter()
        .map(|call| {
            format!(
                "module \"{}\" {{\n  source = \"git::{}//{}?ref={}\"\n}}\n",
                call.name,
                registry.git_url(call.repo),
                call.subdir,
                call.reference
            )
        })
        .collect()
}

/// What the scenario measured: both pairs, and the upstream git traffic of each side's runs.
pub struct Measured {
    pub warm: Pair,
    pub cold: Pair,
    pub note_warm: String,
    pub note_cold: String,
}

/// Upstream git requests and body bytes, one entry per run.
#[derive(Default)]
struct Traffic {
    requests: Vec<usize>,
    bytes: Vec<u64>,
}

impl Traffic {
    fn record(&mut self, registry: &FakeRegistry) {
        self.requests.push(registry.git_requests());
        self.bytes.push(registry.git_bytes_sent());
    }

    /// `12 requests, 147.3 MB` per run, as a range when runs differed.
    fn show(&self) -> String {
        let range = |low: String, high: String| {
            if low == high {
                low
            } else {
                format!("{low}–{high}")
            }
        };
        let (r, b) = (&self.requests, &self.bytes);
        format!(
            "{} requests, {}",
            range(
                r.iter().min().unwrap_or(&0).to_string(),
                r.iter().max().unwrap_or(&0).to_string()
            ),
            range(
                human_bytes(*b.iter().min().unwrap_or(&0)),
                human_bytes(*b.iter().max().unwrap_or(&0))
            )
        )
    }
}

pub fn measure(tools: &Tools, network: Network, runs: usize) -> Result<Measured> {
    let monorepo = Monorepo::get()?;
    let registry = FakeRegistry::start_all(
        Vec::new(),
        Vec::new(),
        vec![GitRepoSpec::new(MONOREPO), GitRepoSpec::new(SECOND)],
    );
    // The fixture built a small repository at that path; the generated one replaces it, so
    // only the fixture's read helpers (`show`) are used on it, none that makes commits.
    monorepo.copy_to(registry.git_repo(MONOREPO).bare_path())?;
    let calls = calls();
    let expected = expected_files(&registry, &calls);
    network.apply(&registry);
    let sandbox = Sandbox::new(tools, &registry)?;
    let direct = sandbox.direct_cli_config()?;
    let main_tf = main_tf(&registry, &calls);

    // One init through tfmirror, then timed runs in fresh directories.
    let cache = sandbox.path().join("cache");
    let server = sandbox.serve(&cache, &[])?;
    let priming = sandbox.workdir(&main_tf, None)?;
    run(&mut sandbox.init_through(&cache, &priming), "priming init")?;
    check_installed(&priming, &calls, &expected)?;
    std::fs::remove_dir_all(&priming)?;

    // One timed init through tfmirror's server for `cache` in a fresh
    // directory, its upstream traffic recorded; and one straight to the
    // upstream. Both sides of both scenarios.
    let through = |cache: &Path, ours: &mut Traffic| -> Result<(Duration, PathBuf)> {
        let dir = sandbox.workdir(&main_tf, None)?;
        registry.clear_requests();
        let elapsed = run(
            &mut sandbox.init_through(cache, &dir),
            "init through tfmirror",
        )?;
        ours.record(&registry);
        Ok((elapsed, dir))
    };
    let straight = |theirs: &mut Traffic| {
        direct_run(
            &sandbox, &registry, &direct, &main_tf, &calls, &expected, theirs,
        )
    };

    let (mut ours, mut theirs) = (Traffic::default(), Traffic::default());
    let warm = alternate(
        "modules-monorepo-warm",
        runs,
        |_| {
            let (elapsed, dir) = through(&cache, &mut ours)?;
            report_upstream(&registry);
            finish(&dir, &calls, &expected)?;
            Ok(elapsed)
        },
        |_| straight(&mut theirs),
    )?;
    drop(server);
    let note_warm = note(&warm, &ours, &theirs);

    let (mut ours, mut theirs) = (Traffic::default(), Traffic::default());
    let cold = alternate(
        "modules-monorepo-cold",
        runs,
        |_| {
            let cache = sandbox.fresh_dir("cache")?;
            let (elapsed, dir) = through(&cache, &mut ours)?;
            sandbox.stop(&cache)?;
            finish(&dir, &calls, &expected)?;
            std::fs::remove_dir_all(&cache)?;
            Ok(elapsed)
        },
        |_| straight(&mut theirs),
    )?;
    let note_cold = note(&cold, &ours, &theirs);
    Ok(Measured {
        warm,
        cold,
        note_warm: format!(
            "{}; repo {} pack, {} commits, {} tags, {} module dirs",
            note_warm,
            human_bytes(monorepo.pack_bytes),
            monorepo.commits,
            monorepo.tags,
            monorepo.module_dirs
        ),
        note_cold,
    })
}

/// One baseline run: Terraform straight to the upstream, in a fresh directory.
fn direct_run(
    sandbox: &Sandbox,
    registry: &FakeRegistry,
    direct: &Path,
    main_tf: &str,
    calls: &[Call],
    expected: &[String],
    traffic: &mut Traffic,
) -> Result<Duration> {
    let dir = sandbox.workdir(main_tf, None)?;
    registry.clear_requests();
    let elapsed = run(&mut sandbox.init_with(direct, &dir), "direct init")?;
    traffic.record(registry);
    finish(&dir, calls, expected)?;
    Ok(elapsed)
}

/// Checks the run's modules, then removes its directory: each holds a full checkout per call.
fn finish(dir: &Path, calls: &[Call], expected: &[String]) -> Result<()> {
    check_installed(dir, calls, expected)?;
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

fn note(pair: &Pair, ours: &Traffic, theirs: &Traffic) -> String {
    format!(
        "spread tfmirror {}, direct {}; upstream git per run: tfmirror {}, direct {}",
        spread(&pair.tfmirror),
        spread(&pair.baseline),
        ours.show(),
        theirs.show()
    )
}

/// Each call's `main.tf` as the upstream has it at the call's ref.
fn expected_files(registry: &FakeRegistry, calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|call| {
            registry
                .git_repo(call.repo)
                .show(&call.reference, &format!("{}/main.tf", call.subdir))
        })
        .collect()
}

/// Every call is installed, in the directory Terraform recorded for it, with the upstream's
/// `main.tf` at the call's ref.
fn check_installed(dir: &Path, calls: &[Call], expected: &[String]) -> Result<()> {
    let manifest = dir.join(".terraform/modules/modules.json");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&manifest).with_context(|| format!("read {}", manifest.display()))?,
    )?;
    let modules = json["Modules"]
        .as_array()
        .context("modules.json: Modules")?;
    for (call, want) in calls.iter().zip(expected) {
        let entry = modules
            .iter()
            .find(|m| m["Key"] == call.name.as_str())
            .with_context(|| format!("modules.json has no {}", call.name))?;
        let installed = dir
            .join(entry["Dir"].as_str().context("modules.json: Dir")?)
            .join("main.tf");
        let got = std::fs::read_to_string(&installed)
            .with_context(|| format!("read {}", installed.display()))?;
        if got.trim() != want.trim() {
            bail!(
                "{}: {} differs from {}:{}/main.tf upstream",
                call.name,
                installed.display(),
                call.reference,
                call.subdir
            );
        }
    }
    Ok(())
}
