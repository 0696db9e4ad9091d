//! Where a scenario runs: the binaries, a temporary root holding HOME, caches, working
//! directories and CLI configs, and commands that see only that environment.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::fixtures::FakeRegistry;

/// The programs under test.
#[derive(Clone, Debug)]
pub struct Tools {
    pub tfmirror: PathBuf,
    pub terraform: PathBuf,
}

/// The simulated network between the machine and the upstream registry.
#[derive(Clone, Copy, Debug)]
pub struct Network {
    pub latency: Duration,
    pub bytes_per_sec: u64,
}

impl Network {
    pub fn apply(&self, registry: &FakeRegistry) {
        registry.set_request_latency(Some(self.latency));
        registry.set_bandwidth(Some(self.bytes_per_sec));
    }
}

/// One scenario's temporary world; everything below it is removed on drop.
pub struct Sandbox {
    pub tools: Tools,
    root: TempDir,
    upstream: String,
    counter: std::cell::Cell<usize>,
}

impl Sandbox {
    /// The config routes registry.terraform.io and `<upstream>git/` through tfmirror.
    pub fn new(tools: &Tools, registry: &FakeRegistry) -> Result<Sandbox> {
        let root = tempfile::Builder::new()
            .prefix("tfmirror-bench-")
            .tempdir()
            .context("temporary directory")?;
        std::fs::create_dir_all(root.path().join("home"))?;
        let upstream = registry.url();
        let config = format!(
            "idle_timeout = \"10m\"\nregistries = [\"registry.terraform.io\"]\n[upstream]\n\"registry.terraform.io\" = \"{upstream}\"\n[git]\nmirror = [\"{upstream}git/\"]\n"
        );
        std::fs::write(root.path().join("config.toml"), config)?;
        Ok(Sandbox {
            tools: tools.clone(),
            root,
            upstream,
            counter: std::cell::Cell::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// A new, empty directory `<root>/<prefix>-<n>`.
    pub fn fresh_dir(&self, prefix: &str) -> Result<PathBuf> {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let dir = self.path().join(format!("{prefix}-{n}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// A new working directory holding `main_tf`, and `lock_file` if given.
    pub fn workdir(&self, main_tf: &str, lock_file: Option<&Path>) -> Result<PathBuf> {
        let dir = self.fresh_dir("work")?;
        std::fs::write(dir.join("main.tf"), main_tf)?;
        if let Some(lock_file) = lock_file {
            std::fs::copy(lock_file, dir.join(".terraform.lock.hcl"))?;
        }
        Ok(dir)
    }

    /// Any program, with a cleared environment: PATH, the sandbox's HOME, no checkpoint calls.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path().join("home"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1");
        command
    }

    /// tfmirror with `cache` as its cache directory and the sandbox's config.
    pub fn tfmirror(&self, cache: &Path, args: &[&str]) -> Command {
        let mut command = self.command(&self.tools.tfmirror);
        command
            .args(args)
            .env("TFMIRROR_CACHE_DIR", cache)
            .env("TFMIRROR_CONFIG", self.path().join("config.toml"))
            .env("TFMIRROR_LOG", "warn");
        command
    }

    /// `tfmirror exec -- terraform init` in `dir`.
    pub fn init_through(&self, cache: &Path, dir: &Path) -> Command {
        let terraform = self.tools.terraform.to_string_lossy().into_owned();
        let mut command = self.tfmirror(
            cache,
            &[
                "exec",
                "--",
                &terraform,
                "init",
                "-input=false",
                "-no-color",
            ],
        );
        command.current_dir(dir);
        command
    }

    /// One timed init through a warm tfmirror in `dir`; any upstream request it still made is
    /// reported, since a warm run should make none (module version lists aside).
    pub fn warm_init(&self, registry: &FakeRegistry, cache: &Path, dir: &Path) -> Result<Duration> {
        registry.clear_requests();
        let elapsed = run(&mut self.init_through(cache, dir), "init through tfmirror")?;
        report_upstream(registry);
        Ok(elapsed)
    }

    /// `dir` as before its first init: without `.terraform` and the lock file.
    pub fn reset_workdir(&self, dir: &Path) -> Result<()> {
        let installed = dir.join(".terraform");
        if installed.exists() {
            std::fs::remove_dir_all(&installed)?;
        }
        let lock_file = dir.join(".terraform.lock.hcl");
        if lock_file.exists() {
            std::fs::remove_file(&lock_file)?;
        }
        Ok(())
    }

    /// Plain `terraform init` in `dir` with `cli_config` as its CLI configuration.
    pub fn init_with(&self, cli_config: &Path, dir: &Path) -> Command {
        let mut command = self.command(&self.tools.terraform);
        command
            .args(["init", "-input=false", "-no-color"])
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", cli_config);
        command
    }

    /// A CLI config that sends registry.terraform.io straight to the fake upstream.
    pub fn direct_cli_config(&self) -> Result<PathBuf> {
        let url = &self.upstream;
        let path = self.path().join("direct.tfrc");
        std::fs::write(
            &path,
            format!(
                "host \"registry.terraform.io\" {{\n  services = {{\n    \"providers.v1\" = \"{url}v1/providers/\"\n    \"modules.v1\"   = \"{url}v1/modules/\"\n  }}\n}}\n"
            ),
        )?;
        Ok(path)
    }

    /// A CLI config that installs every provider from the mirror at `dir` only (packed or
    /// unpacked, Terraform reads either), written as `<name>.tfrc`.
    pub fn filesystem_mirror_cli_config(&self, name: &str, dir: &Path) -> Result<PathBuf> {
        let path = self.path().join(format!("{name}.tfrc"));
        std::fs::write(
            &path,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n  }}\n}}\n",
                dir.display()
            ),
        )?;
        Ok(path)
    }

    /// Starts `tfmirror serve` for `cache` and waits until it listens.
    pub fn serve(&self, cache: &Path, extra: &[&str]) -> Result<Server> {
        let mut command = self.tfmirror(cache, &[&["serve"], extra].concat());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start tfmirror serve")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("serve's stdout")?)
            .read_line(&mut line)
            .context("read serve's listening line")?;
        let Some(url) = line.trim().strip_prefix("tfmirror listening on ") else {
            let _ = child.kill();
            bail!("unexpected first line from tfmirror serve: {line:?}");
        };
        // The owner's requests carry the server's secret, from server.json.
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cache.join("server.json"))?)?;
        let secret = info["secret"]
            .as_str()
            .context("server.json has no secret")?;
        Ok(Server {
            url: format!("{}/{secret}", url.trim_end_matches('/')),
            child,
        })
    }

    /// `tfmirror stop` for `cache`, whose server an `exec` or `warm` started.
    pub fn stop(&self, cache: &Path) -> Result<()> {
        run(&mut self.tfmirror(cache, &["stop"]), "tfmirror stop").map(|_| ())
    }
}

/// A `tfmirror serve` child process, stopped with SIGTERM on drop.
pub struct Server {
    pub url: String,
    child: Child,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` to completion and returns how long it took; fails with its output if it
/// fails.
pub fn run(command: &mut Command, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

/// What reached the upstream during a run through a warm cache, which should be nothing or
/// nearly: counted by kind of path, on stderr.
pub fn report_upstream(registry: &FakeRegistry) {
    let requests = registry.requests();
    if requests.is_empty() {
        return;
    }
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for request in &requests {
        let path = request.path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let kind = match segments.as_slice() {
            ["", "v1", "modules", .., last] => format!("/v1/modules/…/{last}"),
            ["", "v1", "providers", .., last] => format!("/v1/providers/…/{last}"),
            ["", first, ..] => format!("/{first}/…"),
            _ => path.to_owned(),
        };
        *kinds
            .entry(format!("{} {kind}", request.method))
            .or_default() += 1;
    }
    eprintln!("    upstream requests during this tfmirror run: {kinds:?}");
}
