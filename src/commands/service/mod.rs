//! `tfmirror service install|uninstall`: a server that starts at login on a
//! fixed address, so the exports `tfmirror env` prints in a shell profile
//! hold across reboots and no command waits for a server to start.
//!
//! The per-user service manager runs it: systemd's user instance on Linux,
//! launchd on macOS. Service files are rendered by pure functions so that
//! both are tested on any OS; only loading them depends on where tfmirror
//! runs.

mod launchd;
mod systemd;

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;

use crate::config::{Config, DEFAULT_SERVICE_LISTEN};
use crate::upstream::NetworkEnv;

#[derive(clap::Subcommand)]
pub enum ServiceAction {
    /// Write the service file and (unless --no-start) enable and start it.
    Install {
        /// Only write the file; leave systemctl/launchctl alone.
        #[arg(long)]
        no_start: bool,
    },
    /// Stop and disable the service and remove its file.
    Uninstall {
        /// Only remove the file; leave systemctl/launchctl alone.
        #[arg(long)]
        no_stop: bool,
    },
}

pub async fn run(
    action: ServiceAction,
    cache_dir: &Path,
    config_file: Option<&Path>,
    config: &Config,
) -> anyhow::Result<i32> {
    let manager = manager()?;
    match action {
        ServiceAction::Install { no_start } => {
            let listen = config
                .listen
                .clone()
                .unwrap_or(DEFAULT_SERVICE_LISTEN.into());
            let spec = ServiceSpec::new(&listen, cache_dir, config_file)?;
            // launchd opens the log there before tfmirror runs.
            std::fs::create_dir_all(cache_dir)
                .with_context(|| format!("cannot create {}", cache_dir.display()))?;
            let url = format!("http://{listen}");
            let code = install(manager.as_ref(), &spec, &url, !no_start).await?;
            note_other_server(cache_dir, &url).await;
            Ok(code)
        }
        ServiceAction::Uninstall { no_stop } => uninstall(manager.as_ref(), !no_stop).await,
    }
}

/// The command line the service runs. Service files are text, so paths are
/// held as strings: one that has no faithful spelling in a service file is
/// refused up front rather than mangled.
struct ServiceSpec {
    program: String,
    args: Vec<String>,
    /// Where launchd sends the server's output; systemd has the journal.
    log_file: String,
    /// The proxy and CA variables of the installing shell
    /// (`HTTPS_PROXY`, `SSL_CERT_FILE`, ...): a service manager starts the
    /// server with an environment of its own, without them.
    environment: Vec<(&'static str, String)>,
    /// A proxy URL in `environment` holds a password: only the user may
    /// read the file.
    private: bool,
}

impl ServiceSpec {
    /// Absolute paths throughout: the service manager starts the server in
    /// a directory of its choosing.
    fn new(
        listen: &crate::listen_addr::ListenAddr,
        cache_dir: &Path,
        config_file: Option<&Path>,
    ) -> anyhow::Result<ServiceSpec> {
        let exe = std::env::current_exe().context("cannot find the tfmirror executable")?;
        let cache_dir = std::path::absolute(cache_dir)?;
        let mut args = vec![
            "serve".to_owned(),
            "--listen".to_owned(),
            listen.to_string(),
            "--cache-dir".to_owned(),
            text(&cache_dir)?,
        ];
        if let Some(file) = config_file {
            args.push("--config".to_owned());
            args.push(text(&std::path::absolute(file)?)?);
        }
        let network = NetworkEnv::from_env();
        let environment = network.service_environment();
        if let Some((name, _)) = environment
            .iter()
            .find(|(_, value)| value.contains(char::is_control))
        {
            anyhow::bail!(
                "{name} holds a control character, which a service file cannot carry; fix it, \
                 or unset it to install the service without it"
            );
        }
        Ok(ServiceSpec {
            program: text(&exe)?,
            args,
            log_file: text(&super::launch::log_path(&cache_dir))?,
            environment,
            private: network.has_credentials(),
        })
    }

    /// Says which of the installing shell's variables the service keeps,
    /// by name only: a proxy URL may hold a password.
    fn environment_note(&self) -> Option<String> {
        if self.environment.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.environment.iter().map(|(name, _)| *name).collect();
        let private = if self.private {
            " (a proxy password among them: the file is readable by you only)"
        } else {
            ""
        };
        Some(format!(
            "Carried into the service from this shell, for reaching upstreams: {}{private}. \
             Run `tfmirror service install` again after changing them.",
            names.join(", ")
        ))
    }
}

/// A path as service file text. A control character (a newline ends the
/// line it is on) or bytes that are not UTF-8 cannot be written faithfully.
fn text(path: &Path) -> anyhow::Result<String> {
    match path.to_str() {
        Some(text) if !text.contains(char::is_control) => Ok(text.to_owned()),
        _ => anyhow::bail!(
            "{:?} cannot be written in a service file: move it to a path without control characters that is valid UTF-8",
            path
        ),
    }
}

/// What differs between service managers.
trait Manager {
    /// Where the service file goes.
    fn file(&self) -> &Path;
    /// Fails for a spec the manager cannot run.
    fn render(&self, spec: &ServiceSpec) -> anyhow::Result<String>;
    /// Run once the file is written. A service that already runs is
    /// restarted, so that a changed file takes effect.
    fn start(&self) -> Vec<Step>;
    /// Run before the file is removed, while the manager can still find it.
    fn stop(&self) -> Vec<Step>;
    /// Run after the file is removed.
    fn forget(&self) -> Vec<Step>;
    /// How the user reads the server's output.
    fn logs(&self, spec: &ServiceSpec) -> String;
}

fn manager() -> anyhow::Result<Box<dyn Manager>> {
    if cfg!(target_os = "macos") {
        Ok(Box::new(launchd::Launchd::from_env()?))
    } else if cfg!(target_os = "linux") {
        Ok(Box::new(systemd::Systemd::from_env()?))
    } else {
        anyhow::bail!(
            "`tfmirror service` knows systemd (Linux) and launchd (macOS), not {}; \
             have your service manager run `tfmirror serve --listen {DEFAULT_SERVICE_LISTEN}`",
            std::env::consts::OS
        )
    }
}

async fn install(
    manager: &dyn Manager,
    spec: &ServiceSpec,
    url: &str,
    start: bool,
) -> anyhow::Result<i32> {
    let file = manager.file();
    let existed = file.exists();
    write_atomic(file, &manager.render(spec)?, spec.private)?;
    let verb = if existed { "Updated" } else { "Installed" };
    println!("{verb} the tfmirror login service: {}", file.display());
    if let Some(note) = spec.environment_note() {
        println!("{note}");
    }
    let steps = manager.start();
    let left = if start {
        run_steps(&steps).await
    } else {
        &steps[..]
    };
    if left.is_empty() {
        println!("Started: it serves {url} now and after every login.");
    } else {
        let why = if start {
            "The file is in place, but the service is not running."
        } else {
            "Not started (--no-start)."
        };
        println!("{why} To serve {url} now and after every login, run:");
        print!("{}", commands(left));
    }
    println!("Logs: {}", manager.logs(spec));
    println!("Add this line to your shell profile so that terraform, tofu and git use it:");
    println!("    eval \"$(tfmirror env)\"");
    Ok(0)
}

/// One server owns a cache: another one, such as the background server
/// `exec` starts, keeps the service's server from starting (it retries)
/// until it exits.
async fn note_other_server(cache_dir: &Path, service_url: &str) {
    let Some(other) = super::running_server(cache_dir).await else {
        return;
    };
    if other.server.url != service_url {
        println!(
            "Note: another tfmirror server (pid {}) serves this cache at {}; the service's \
             server takes over once it exits. `tfmirror stop` stops it now.",
            other.server.pid, other.server.url
        );
    }
}

/// A service that cannot be stopped keeps its file: without it the
/// manager could no longer stop or disable the service either.
async fn uninstall(manager: &dyn Manager, stop: bool) -> anyhow::Result<i32> {
    let file = manager.file();
    if !file.exists() {
        println!(
            "The tfmirror login service is not installed ({} does not exist).",
            file.display()
        );
        return Ok(0);
    }
    if stop {
        let steps = manager.stop();
        let left = run_steps(&steps).await;
        if !left.is_empty() {
            eprintln!(
                "tfmirror: kept {} so that the service can still be stopped. Run:\n{}\
                 then `tfmirror service uninstall` again, or `tfmirror service uninstall --no-stop` \
                 to remove only the file.",
                file.display(),
                commands(left)
            );
            return Ok(1);
        }
    }
    std::fs::remove_file(file).with_context(|| format!("cannot remove {}", file.display()))?;
    println!("Removed the tfmirror login service: {}", file.display());
    if !stop {
        println!("Not stopped or disabled (--no-stop).");
        return Ok(0);
    }
    let steps = manager.forget();
    let left = run_steps(&steps).await;
    if !left.is_empty() {
        print!("To finish, run:\n{}", commands(left));
    }
    Ok(0)
}

/// Replaces the file in one step, so the service manager never reads half
/// of it. The temporary name has no `.service` or `.plist` suffix, so
/// neither manager mistakes it for a service.
fn write_atomic(path: &Path, contents: &str, private: bool) -> anyhow::Result<()> {
    let dir = path.parent().context("a service file has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Temporary files are private (0600); service files are not secret,
    // unless they carry a proxy password.
    let mode = std::fs::Permissions::from_mode(if private { 0o600 } else { 0o644 });
    crate::replace_file::replace(path, contents.as_bytes(), Some(mode))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One command to the service manager.
struct Step {
    program: &'static str,
    args: Vec<String>,
    /// Its failure only says that the state it brings about was already
    /// there (launchd's `bootout` of an agent that is not loaded).
    may_fail: bool,
}

impl Step {
    fn new(program: &'static str, args: &[&str]) -> Step {
        Step {
            program,
            args: args.iter().map(|arg| arg.to_string()).collect(),
            may_fail: false,
        }
    }

    fn may_fail(self) -> Step {
        Step {
            may_fail: true,
            ..self
        }
    }

    /// Output is captured: on success it is noise, on failure it is the
    /// reason.
    async fn run(&self) -> Result<(), StepFailure> {
        let program = self.program;
        let output = tokio::process::Command::new(program)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => StepFailure::NotOnPath(program),
                _ => StepFailure::CannotRun { program, source },
            })?;
        if output.status.success() || self.may_fail {
            return Ok(());
        }
        let status = output.status;
        Err(match String::from_utf8_lossy(&output.stderr).trim() {
            "" => StepFailure::Failed { status },
            stderr => StepFailure::FailedSaying {
                status,
                stderr: stderr.to_owned(),
            },
        })
    }
}

/// Why a step failed, as the warning after its command line says it.
#[derive(Debug, thiserror::Error)]
enum StepFailure {
    #[error("{0} is not on PATH")]
    NotOnPath(&'static str),
    #[error("cannot run {program}: {source}")]
    CannotRun {
        program: &'static str,
        source: std::io::Error,
    },
    /// It failed and said nothing on stderr.
    #[error("{status}")]
    Failed { status: std::process::ExitStatus },
    #[error("{stderr} ({status})")]
    FailedSaying {
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// As the user would type it in a POSIX shell.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.program)?;
        for arg in &self.args {
            write!(f, " {}", shell_word(arg))?;
        }
        Ok(())
    }
}

fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@%+=,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Runs `steps` in order up to the first failure, which it reports. The
/// steps not done, the failed one first, are returned for the user to run:
/// the ones after it are unlikely to do better.
async fn run_steps(steps: &[Step]) -> &[Step] {
    for (done, step) in steps.iter().enumerate() {
        if let Err(reason) = step.run().await {
            eprintln!("tfmirror: warning: `{step}` failed: {reason}");
            return &steps[done..];
        }
    }
    &[]
}

/// One indented line per step, to copy into a shell.
fn commands(steps: &[Step]) -> String {
    steps.iter().map(|step| format!("    {step}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed paths, one with a space and one with `&`, for the renderers'
    /// snapshots.
    pub(super) fn example() -> ServiceSpec {
        ServiceSpec {
            program: "/home/jo/my tools/tfmirror".to_owned(),
            args: [
                "serve",
                "--listen",
                "127.0.0.1:7878",
                "--cache-dir",
                "/home/jo/.cache/tfmirror",
                "--config",
                "/home/jo/R&D/tfmirror.toml",
            ]
            .map(str::to_owned)
            .to_vec(),
            log_file: "/home/jo/.cache/tfmirror/server.log".to_owned(),
            environment: vec![
                ("HTTPS_PROXY", "http://jo:p%25ss@proxy.corp:3128".to_owned()),
                ("NO_PROXY", "localhost,.corp.example".to_owned()),
                ("SSL_CERT_FILE", "/home/jo/R&D/corp ca.pem".to_owned()),
            ],
            private: true,
        }
    }

    #[test]
    fn names_the_variables_it_carries_but_not_their_values() {
        let note = example().environment_note().unwrap();
        insta::assert_snapshot!("environment_note", note);
        let none = ServiceSpec {
            environment: Vec::new(),
            private: false,
            ..example()
        };
        assert_eq!(none.environment_note(), None);
    }

    #[test]
    fn refuses_paths_a_service_file_cannot_spell() {
        assert_eq!(text(Path::new("/a b/c")).unwrap(), "/a b/c");
        assert!(text(Path::new("/a\nb")).is_err());
        let not_utf8 = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"/a\xff");
        assert!(text(Path::new(not_utf8)).is_err());
    }

    #[test]
    fn shows_commands_as_a_shell_reads_them() {
        let step = Step::new(
            "launchctl",
            &["bootstrap", "gui/501", "/Users/Jo Doe/it's.plist"],
        );
        assert_eq!(
            step.to_string(),
            r"launchctl bootstrap gui/501 '/Users/Jo Doe/it'\''s.plist'"
        );
    }

    #[tokio::test]
    async fn stops_at_the_first_failed_step() {
        let steps = [
            Step::new("true", &[]),
            Step::new("false", &[]).may_fail(),
            Step::new("false", &[]),
            Step::new("true", &[]),
        ];
        let left = run_steps(&steps).await;
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].to_string(), "false");
    }

    #[tokio::test]
    async fn a_missing_program_fails_even_where_failure_is_allowed() {
        let step = Step::new("tfmirror-test-no-such-program", &[]).may_fail();
        let err = step.run().await.unwrap_err().to_string();
        assert_eq!(err, "tfmirror-test-no-such-program is not on PATH");
    }
}
