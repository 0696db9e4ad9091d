//! Running tfmirror and terraform the way a user does, for end-to-end
//! tests: a cache directory, a config pointing at the fake registry, a
//! clean HOME, and helpers to run `tfmirror exec -- terraform init` or a
//! `tfmirror serve` process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use tempfile::TempDir;

use crate::fixtures::{FakeRegistry, GitRepoSpec, ModuleSpec, ProviderSpec};

/// The terraform binary the tests drive: `/usr/local/bin/terraform`, else
/// the first one on PATH.
pub fn terraform() -> PathBuf {
    let fixed = Path::new("/usr/local/bin/terraform");
    if fixed.is_file() {
        return fixed.to_owned();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("terraform"))
        .find(|candidate| candidate.is_file())
        .expect("these end-to-end tests need the terraform binary: install it at /usr/local/bin/terraform or on PATH")
}

pub fn tfmirror() -> &'static str {
    env!("CARGO_BIN_EXE_tfmirror")
}

/// One user's world: a fake upstream registry, a cache, a config file.
pub struct World {
    pub registry: FakeRegistry,
    pub root: TempDir,
    pub config_extra: String,
}

impl World {
    pub fn new(providers: Vec<ProviderSpec>) -> World {
        World::with_config(providers, "")
    }

    /// `extra` is added to the top of the config file (e.g. `metadata_ttl`).
    pub fn with_config(providers: Vec<ProviderSpec>, extra: &str) -> World {
        World::start(providers, Vec::new(), extra)
    }

    pub fn with_modules(modules: Vec<ModuleSpec>) -> World {
        World::start(Vec::new(), modules, "")
    }

    pub fn with_git(modules: Vec<ModuleSpec>, repos: Vec<GitRepoSpec>, extra: &str) -> World {
        World::from_registry(FakeRegistry::start_all(Vec::new(), modules, repos), extra)
    }

    pub fn start(providers: Vec<ProviderSpec>, modules: Vec<ModuleSpec>, extra: &str) -> World {
        World::from_registry(FakeRegistry::start_with(providers, modules), extra)
    }

    /// Providers, registry modules and git repositories at once.
    pub fn start_all(
        providers: Vec<ProviderSpec>,
        modules: Vec<ModuleSpec>,
        repos: Vec<GitRepoSpec>,
        extra: &str,
    ) -> World {
        World::from_registry(FakeRegistry::start_all(providers, modules, repos), extra)
    }

    /// A world around `registry`, e.g. one started with [`FakeRegistry::start_tls`].
    pub fn from_registry(registry: FakeRegistry, extra: &str) -> World {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        let world = World {
            registry,
            root,
            config_extra: extra.to_owned(),
        };
        world.write_config();
        world
    }

    /// A background server outliving its test is stopped when the world
    /// is dropped; the short `idle_timeout` covers a test that panics
    /// before that.
    fn write_config(&self) {
        let url = self.registry.url();
        let idle = if self.config_extra.contains("idle_timeout") {
            ""
        } else {
            "idle_timeout = \"60s\"\n"
        };
        let config = format!(
            "{}\n{idle}registries = [\"registry.terraform.io\"]\n[upstream]\n\"registry.terraform.io\" = \"{url}\"\n[git]\nmirror = [\"{url}git/\"]\n",
            self.config_extra,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// Adds `text` at the end of the config file: a section such as
    /// `[shared]`, which would swallow the top-level keys if put first.
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(self.config_path()).unwrap();
        config.push_str(text);
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.path().join("config.toml")
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// A new Terraform working directory requiring `providers`
    /// (`(namespace, type, version constraint)`).
    pub fn workdir(&self, name: &str, providers: &[(&str, &str, &str)]) -> PathBuf {
        let dir = self.root.path().join("work").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), main_tf(providers)).unwrap();
        dir
    }

    /// A new Terraform working directory with `main_tf` as its configuration.
    pub fn workdir_with(&self, name: &str, main_tf: &str) -> PathBuf {
        let dir = self.root.path().join("work").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("main.tf"), main_tf).unwrap();
        dir
    }

    /// A tfmirror command with this world's cache and config, in an
    /// environment cleared of anything from the machine running the tests.
    pub fn tfmirror(&self, args: &[&str]) -> Command {
        let mut command = self.command(tfmirror());
        command.args(args);
        command
    }

    /// Any program, in the environment [`World::tfmirror`] gives tfmirror.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("TFMIRROR_CACHE_DIR", self.cache_dir())
            .env("TFMIRROR_CONFIG", self.config_path())
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env(
                "TFMIRROR_LOG",
                std::env::var("TFMIRROR_LOG").unwrap_or_else(|_| "warn".into()),
            );
        command
    }

    /// `tfmirror exec -- terraform init` in `dir`.
    pub fn init(&self, dir: &Path) -> Output {
        self.init_with_env(dir, &[])
    }

    pub fn init_with_env(&self, dir: &Path, env: &[(&str, &str)]) -> Output {
        let terraform = terraform();
        let mut command = self.tfmirror(&[
            "exec",
            "--",
            terraform.to_str().unwrap(),
            "init",
            "-input=false",
            "-no-color",
        ]);
        command.current_dir(dir).envs(env.iter().copied());
        command.output().expect("run tfmirror exec")
    }

    /// Starts `tfmirror serve` and waits for its "listening" line; a
    /// server an earlier `exec` started is stopped first.
    pub fn serve(&self) -> ServeProcess {
        self.serve_with(&[])
    }

    /// [`World::serve`] with more arguments, e.g. `--tls-cert`.
    pub fn serve_with(&self, args: &[&str]) -> ServeProcess {
        let mut command = self.tfmirror(&["serve"]);
        command.args(args).stderr(Stdio::inherit());
        self.serve_command(command)
    }

    /// Starts `command`, a `tfmirror serve` set up by the caller (say, with
    /// its stderr in a file), and waits for its "listening" line; a server
    /// an earlier `exec` started is stopped first.
    pub fn serve_command(&self, mut command: Command) -> ServeProcess {
        if self.server_info().is_some() {
            self.stop_server();
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tfmirror serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let address = line
            .trim()
            .strip_prefix("tfmirror listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_owned();
        let secret = self.server_secret();
        ServeProcess {
            child,
            url: format!("{address}/{secret}"),
            address,
            secret,
        }
    }

    /// [`World::serve_with`] over HTTPS, with a new certificate for
    /// `localhost` and 127.0.0.1 from a throwaway CA; returns the server
    /// and the CA to trust (`SSL_CERT_FILE`).
    pub fn serve_tls(&self, args: &[&str]) -> (ServeProcess, PathBuf) {
        let (ca, cert, key) = crate::fixtures::tls::test_certificates(self.root.path());
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let tls = ["--tls-cert", cert, "--tls-key", key];
        (self.serve_with(&[&tls[..], args].concat()), ca)
    }

    /// The running server's secret, from `server.json`: what makes a
    /// request the owner's.
    pub fn server_secret(&self) -> String {
        let info = self.server_info().expect("server.json of a running server");
        info["secret"]
            .as_str()
            .expect("server.json has a secret")
            .to_owned()
    }

    /// The base URL of the owner's requests to the running server (one an
    /// `exec` started, say): its address and secret.
    pub fn server_url(&self) -> String {
        let info = self.server_info().expect("server.json of a running server");
        format!("{}/{}", info["url"].as_str().unwrap(), self.server_secret())
    }

    /// The server recorded in the cache's `server.json`, if any.
    pub fn server_info(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.cache_dir().join("server.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stops the cache's server (one `exec` started in the background), as
    /// `tfmirror stop` does, and waits for it to exit.
    pub fn stop_server(&self) {
        let output = self
            .tfmirror(&["stop"])
            .output()
            .expect("run tfmirror stop");
        assert_success(&output, "tfmirror stop");
    }

    /// `terraform providers lock -platform=...` straight against the fake
    /// registry, with no tfmirror in between: `zh:` of every platform,
    /// `h1:` of the ones named.
    pub fn providers_lock(&self, dir: &Path, platforms: &[&str]) {
        let cli_config = self.root.path().join("direct.tfrc");
        let services = format!("{}v1/providers/", self.registry.url());
        std::fs::write(
            &cli_config,
            format!(
                "host \"registry.terraform.io\" {{\n  services = {{\n    \"providers.v1\" = \"{services}\"\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let mut command = self.command(terraform());
        command
            .args(["providers", "lock", "-no-color"])
            .args(platforms.iter().map(|p| format!("-platform={p}")))
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", &cli_config);
        assert_success(&command.output().unwrap(), "terraform providers lock");
    }

    /// Every file below the cache directory, relative, sorted.
    pub fn cache_files(&self) -> Vec<String> {
        let mut files = Vec::new();
        let mut dirs = vec![self.cache_dir()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(self.cache_dir()).unwrap();
                    files.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        files.sort();
        files
    }

    /// Artifact files (provider zips and checksums), leaving out the index
    /// and tfmirror's own bookkeeping.
    pub fn artifact_files(&self) -> Vec<String> {
        self.cache_files()
            .into_iter()
            .filter(|f| {
                ["providers/", "provider-checksums/", "modules/"]
                    .iter()
                    .any(|prefix| f.starts_with(prefix))
            })
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if self.server_info().is_some() {
            let _ = self.tfmirror(&["stop"]).output();
        }
    }
}

/// A running `tfmirror serve`, stopped with SIGTERM when dropped.
pub struct ServeProcess {
    pub child: Child,
    /// What the owner's requests start with: the address and the secret.
    pub url: String,
    /// The address alone, as `serve` prints it.
    pub address: String,
    pub secret: String,
}

impl ServeProcess {
    pub fn addr(&self) -> std::net::SocketAddr {
        let authority = self
            .address
            .split_once("://")
            .map_or(&*self.address, |(_, rest)| rest);
        authority.parse().unwrap()
    }

    /// SIGTERM, then wait; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A root module with `providers`, the registry module `acme/net/aws`
/// 1.0.0 (an HTTP archive) as `net`, and `modules/vpc` of the fake
/// upstream's git repository `repo` at `v1.0.0` as `vpc`: every kind of
/// artifact tfmirror caches.
pub fn mixed_main_tf(world: &World, providers: &[(&str, &str, &str)], repo: &str) -> String {
    format!(
        "{}\nmodule \"net\" {{\n  source  = \"acme/net/aws\"\n  version = \"1.0.0\"\n}}\n\
         module \"vpc\" {{\n  source = \"git::{}//modules/vpc?ref=v1.0.0\"\n}}\n",
        main_tf(providers),
        world.registry.git_url(repo)
    )
}

pub fn main_tf(providers: &[(&str, &str, &str)]) -> String {
    let mut text = String::from("terraform {\n  required_providers {\n");
    for (namespace, name, version) in providers {
        text.push_str(&format!(
            "    {name} = {{\n      source  = \"{namespace}/{name}\"\n      version = \"{version}\"\n    }}\n"
        ));
    }
    text.push_str("  }\n}\n");
    text
}

/// Fails with both output streams shown, which is what one needs to read
/// when terraform fails.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn assert_failure(output: &Output, what: &str) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !output.status.success(),
        "{what} should have failed:\n{text}"
    );
    text
}

/// The `zh:`/`h1:` hashes recorded for `namespace/type` in a lock file.
pub fn locked_hashes(dir: &Path, namespace: &str, name: &str) -> Vec<String> {
    let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl")).expect("lock file written");
    let header = format!("provider \"registry.terraform.io/{namespace}/{name}\"");
    let block = lock
        .split("provider \"")
        .map(|b| format!("provider \"{b}"))
        .find(|b| b.starts_with(&header))
        .unwrap_or_else(|| panic!("{header} not in lock file:\n{lock}"));
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("\"h1:") || l.starts_with("\"zh:"))
        .map(|l| l.trim_matches(|c| c == '"' || c == ',').to_owned())
        .collect()
}

/// The `id` output of each installed module call, keyed by call name.
pub fn installed_ids(dir: &Path) -> Vec<(String, String)> {
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join(".terraform/modules/modules.json")).unwrap(),
    )
    .unwrap();
    let mut ids: Vec<_> = manifest["Modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["Key"] != "")
        .map(|m| {
            let main =
                std::fs::read_to_string(dir.join(m["Dir"].as_str().unwrap()).join("main.tf"))
                    .unwrap();
            let id = main.split('"').nth(3).unwrap_or_default().to_owned();
            (m["Key"].as_str().unwrap().to_owned(), id)
        })
        .collect();
    ids.sort();
    ids
}
