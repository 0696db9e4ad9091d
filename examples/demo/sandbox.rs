//! The demo's world: the test suite's fake registry on 127.0.0.1 standing in for
//! registry.terraform.io, a tfmirror config whose `[upstream]` sends that host to it, an empty
//! cache, a HOME of its own, and a small root module; then `tfmirror exec -- terraform init`
//! run twice in it, cold and warm, exactly as the README shows the command.
//!
//! Shared by `examples/demo/main.rs` and the end-to-end test `tests/e2e/demo.rs`, so what the
//! README tells a new user to run is what the tests run. Both crates have the fixtures as
//! `crate::fixtures`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::report;
use crate::fixtures::{FakeRegistry, ModuleSpec, ProviderSpec};

/// What the README's first command runs, after `tfmirror`: the demo runs exactly this, with
/// `terraform` found on the PATH it is given.
pub const INIT_ARGS: [&str; 4] = ["exec", "--", "terraform", "init"];

/// The simulated network in front of the fake registry, so a cold run pays for its downloads
/// as it would over the internet (stated in the demo's output; nothing leaves 127.0.0.1).
pub const LATENCY: Duration = Duration::from_millis(50);
pub const BYTES_PER_SEC: u64 = 20_000_000;

/// An init that takes longer has hung: the demo stops it and says so.
const INIT_TIMEOUT: Duration = Duration::from_secs(180);

/// The programs the demo runs.
#[derive(Clone, Debug)]
pub struct Tools {
    pub tfmirror: PathBuf,
    pub terraform: PathBuf,
}

/// The two runs, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// An empty cache: everything comes from the registry, through tfmirror.
    Cold,
    /// A fresh copy of the root module with the lock file the cold run wrote, as a new
    /// checkout or another CI job has it: everything comes from the cache.
    Warm,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Cold, Stage::Warm];

    /// The working directory's name below the demo directory.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Cold => "cold",
            Stage::Warm => "warm",
        }
    }
}

/// What one run did.
#[derive(Clone, Debug)]
pub struct Run {
    pub stage: Stage,
    pub elapsed: Duration,
    /// Requests that reached the (fake) registry during the run.
    pub upstream_requests: usize,
    /// Of those, downloads: provider packages with their checksums, module archives.
    pub downloads: usize,
    /// Providers Terraform installed as symlinks into tfmirror's unpacked tree.
    pub linked_providers: usize,
    /// The lines tfmirror itself printed (`tfmirror: ...`, `tfmirror server: ...`), the
    /// savings line last.
    pub tfmirror_lines: Vec<String>,
}

/// A demo directory with its fake registry running; dropping it stops the registry and leaves
/// the directory.
pub struct Demo {
    pub tools: Tools,
    pub dir: PathBuf,
    pub registry: FakeRegistry,
}

impl Demo {
    /// Starts the fake registry and writes the config and the root module into `dir`, which
    /// must be empty or not exist yet.
    pub fn start(tools: Tools, dir: &Path) -> Result<Demo> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        if std::fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} is not empty: the demo needs a directory of its own",
                dir.display()
            );
        }
        let dir = dir.canonicalize()?;
        let registry = FakeRegistry::start_with(providers(), modules());
        registry.set_request_latency(Some(LATENCY));
        registry.set_bandwidth(Some(BYTES_PER_SEC));
        std::fs::create_dir(dir.join("home"))?;
        std::fs::write(dir.join("config.toml"), config(&registry.url()))?;
        std::fs::create_dir(dir.join(Stage::Cold.name()))?;
        std::fs::write(dir.join(Stage::Cold.name()).join("main.tf"), MAIN_TF)?;
        Ok(Demo {
            tools,
            dir,
            registry,
        })
    }

    /// Both runs, each reported to `out` as it ends, then `tfmirror stop` and the next steps.
    pub fn play(&self, out: &mut dyn Write) -> Result<Vec<Run>> {
        writeln!(out, "{}", report::intro(self))?;
        let mut runs = Vec::new();
        let played = Stage::ALL.iter().try_for_each(|&stage| {
            let run = self.run(stage)?;
            writeln!(out, "{}", report::run(&run))?;
            runs.push(run);
            anyhow::Ok(())
        });
        // The server the first exec started would otherwise wait out its idle timeout.
        let stopped = self.tfmirror(&["stop"]).output();
        played?;
        let stopped = stopped.context("run tfmirror stop")?;
        if !stopped.status.success() {
            bail!(
                "tfmirror stop failed: {}",
                String::from_utf8_lossy(&stopped.stderr)
            );
        }
        writeln!(out, "{}", report::next_steps(self))?;
        Ok(runs)
    }

    /// The working directory of `stage`.
    pub fn workdir(&self, stage: Stage) -> PathBuf {
        self.dir.join(stage.name())
    }

    /// Where `stage`'s whole output (Terraform's and tfmirror's, as a terminal shows it) goes.
    pub fn log(&self, stage: Stage) -> PathBuf {
        self.workdir(stage).join("init.log")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// `tfmirror exec -- terraform init` in `stage`'s directory, after preparing it.
    fn run(&self, stage: Stage) -> Result<Run> {
        let workdir = self.workdir(stage);
        if stage == Stage::Warm {
            let cold = self.workdir(Stage::Cold);
            std::fs::create_dir(&workdir)?;
            std::fs::copy(cold.join("main.tf"), workdir.join("main.tf"))?;
            std::fs::copy(
                cold.join(".terraform.lock.hcl"),
                workdir.join(".terraform.lock.hcl"),
            )
            .context("the cold run wrote no lock file")?;
        }
        self.registry.clear_requests();
        let log_path = self.log(stage);
        let log = File::create(&log_path)?;
        let mut command = self.tfmirror(&INIT_ARGS);
        command
            .current_dir(&workdir)
            .stdout(log.try_clone()?)
            .stderr(log);
        let started = Instant::now();
        let status = wait_bounded(command.spawn().context("start tfmirror")?, INIT_TIMEOUT)?;
        let elapsed = started.elapsed();
        let output = std::fs::read_to_string(&log_path)?;
        if !status.success() {
            bail!(
                "`tfmirror {}` in {} failed ({status}):\n{output}",
                INIT_ARGS.join(" "),
                workdir.display()
            );
        }
        Ok(Run {
            stage,
            elapsed,
            upstream_requests: self.registry.requests().len(),
            downloads: self.registry.artifact_requests() + self.registry.module_archive_requests(),
            linked_providers: linked_providers(&workdir.join(".terraform/providers"))?,
            tfmirror_lines: output
                .lines()
                .filter(|line| line.starts_with("tfmirror"))
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The installed tfmirror with the demo's config, cache and HOME, and nothing else of
    /// the user's environment: their `~/.terraformrc`, plugin cache, proxies and running
    /// tfmirror server stay out of it, and theirs stays untouched. `terraform` is found first
    /// in the directory of [`Tools::terraform`].
    fn tfmirror(&self, args: &[&str]) -> Command {
        let mut path = vec![self
            .tools
            .terraform
            .parent()
            .unwrap_or(Path::new("/"))
            .to_owned()];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let mut command = Command::new(&self.tools.tfmirror);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::join_paths(path).unwrap_or_default())
            .env("HOME", self.dir.join("home"))
            .env("TFMIRROR_CONFIG", self.config_path())
            .env("TFMIRROR_CACHE_DIR", self.cache_dir())
            // The README's command as it is; these only keep the logs plain and init from
            // asking anything.
            .env("TF_CLI_ARGS_init", "-input=false -no-color")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null());
        command
    }
}

/// The symlinks at `<host>/<namespace>/<type>/<version>/<os>_<arch>` below `providers`
/// (Terraform's `.terraform/providers`).
fn linked_providers(providers: &Path) -> Result<usize> {
    let mut level = vec![providers.to_owned()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for dir in level.iter().filter(|dir| dir.is_dir()) {
            for entry in std::fs::read_dir(dir)? {
                next.push(entry?.path());
            }
        }
        level = next;
    }
    let mut linked = 0;
    for dir in level.iter().filter(|dir| dir.is_dir()) {
        for entry in std::fs::read_dir(dir)? {
            linked += usize::from(entry?.file_type()?.is_symlink());
        }
    }
    Ok(linked)
}

/// Waits for `child`, killing it after `limit`.
fn wait_bounded(mut child: Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`tfmirror {}` took over {limit:?}", INIT_ARGS.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The root module both runs initialise: two providers and a registry module, all of the
/// fake registry (their packages hold no working plugin: `init` installs them, `plan` would
/// fail).
pub const MAIN_TF: &str = r#"# The tfmirror demo's root module. Every source here is served by the demo's
# fake registry on 127.0.0.1, never by the real registry.terraform.io.
terraform {
  required_providers {
    cloud = {
      source  = "demo/cloud"
      version = "1.2.0"
    }
    dns = {
      source  = "demo/dns"
      version = "~> 0.4"
    }
  }
}

module "network" {
  source  = "demo/network/cloud"
  version = "1.0.0"
}
"#;

/// Published for this machine's platform and one other, so the lock file gets a `zh:` for
/// each, as from the real registry; padded to sizes where caching shows.
fn providers() -> Vec<ProviderSpec> {
    let here = (std::env::consts::OS, go_arch());
    let other = if here == ("linux", "amd64") {
        ("darwin", "arm64")
    } else {
        ("linux", "amd64")
    };
    vec![
        ProviderSpec::new("demo", "cloud", &["1.1.0", "1.2.0"])
            .with_platforms(&[here, other])
            .with_extra_bytes(12_000_000),
        ProviderSpec::new("demo", "dns", &["0.4.0", "0.4.1"])
            .with_platforms(&[here, other])
            .with_extra_bytes(4_000_000),
    ]
}

fn modules() -> Vec<ModuleSpec> {
    vec![ModuleSpec::new("demo", "network", "cloud", &["1.0.0"])]
}

/// This machine's architecture as Terraform names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The demo's tfmirror config: registry.terraform.io is the fake registry.
fn config(registry_url: &str) -> String {
    format!(
        "# The tfmirror demo's config: registry.terraform.io is the demo's fake registry.\n\
         registries = [\"registry.terraform.io\"]\n\
         idle_timeout = \"2m\"\n\
         \n\
         [upstream]\n\
         \"registry.terraform.io\" = \"{registry_url}\"\n"
    )
}
