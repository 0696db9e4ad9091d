//! Finding the server that owns a cache, or starting one in the background.
//!
//! Like `sccache`, every tfmirror process but one is a client: sled lets a
//! single process open the index, and one owner is also what makes "one
//! download per artifact" hold across many `terraform init`s at once. The
//! owner is a detached `tfmirror serve --background` in its own session, so
//! it outlives the command that started it and a Ctrl-C in that terminal
//! does not reach it; it exits after `idle_timeout` without clients.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Health;
use crate::sealed::{Sealed, OFFLINE_ENV};
use crate::server::state_file;

/// How long a new server may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits: the server drains requests for up to 30 s.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// The log is moved to `server.log.1` beyond this size when a server starts.
const LOG_ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// How to start a server for the cache: the same cache and config file as
/// the client that needs it.
pub struct Launch<'a> {
    pub cache_dir: &'a Path,
    pub config_file: Option<&'a Path>,
}

impl Launch<'_> {
    /// The cache's running server, started first if there is none. A server
    /// of another tfmirror version is stopped (once its requests finish)
    /// and replaced.
    pub async fn connect(&self) -> anyhow::Result<Health> {
        self.connect_sealed(None).await
    }

    /// [`Self::connect`] for a client that needs a sealed server when
    /// `sealed` is set (`exec --offline`): a server started here is sealed
    /// too, and a running server that is online is refused rather than
    /// used, since it would fetch what the client means to keep offline.
    pub async fn connect_sealed(&self, sealed: Option<&Sealed>) -> anyhow::Result<Health> {
        if let Some(health) = super::running_server(self.cache_dir).await {
            if health.is_current() {
                if sealed.is_some() && health.server.offline.is_none() {
                    anyhow::bail!(
                        "the tfmirror server for this cache (pid {}) is online, and offline \
                         mode needs a sealed one; run `tfmirror stop` first, then run this \
                         again",
                        health.server.pid
                    );
                }
                return Ok(health);
            }
            eprintln!(
                "tfmirror: the server for this cache (pid {}) runs tfmirror {}, this is {}; \
                 restarting it once its requests finish",
                health.server.pid,
                health.server.version,
                env!("CARGO_PKG_VERSION")
            );
            stop(&health).await?;
            state_file::remove_if_pid(self.cache_dir, health.server.pid);
        }
        self.start(sealed).await
    }

    /// Spawns `tfmirror serve --background` and waits for whichever server
    /// wins the cache: when several clients start one at once, all but one
    /// lose the owner lock and exit quietly, and every client finds the
    /// winner through `server.json`.
    async fn start(&self, sealed: Option<&Sealed>) -> anyhow::Result<Health> {
        std::fs::create_dir_all(self.cache_dir)?;
        let log = log_path(self.cache_dir);
        let exited = self.spawn(&log, sealed)?;
        let started = Instant::now();
        let mut exit_status = None;
        while started.elapsed() < START_TIMEOUT {
            if let Some(health) = super::running_server(self.cache_dir).await {
                if health.is_current() {
                    return Ok(health);
                }
            }
            if exit_status.is_none() {
                exit_status = exited.try_recv().ok();
            }
            if let Some(status) = exit_status.filter(|status| !status.success()) {
                anyhow::bail!(
                    "the tfmirror server could not start ({status}); from {}:\n{}",
                    log.display(),
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "no tfmirror server for the cache at {} answered within {}s; see {}",
            self.cache_dir.display(),
            START_TIMEOUT.as_secs(),
            log.display()
        )
    }

    /// Starts the server in a new session with its output in the log; the
    /// channel reports its exit status should it exit while this process
    /// still runs (a thread reaps it, so no zombie confuses [`stop`]). A
    /// server sealed by the config reads the same file; one sealed by the
    /// environment or `exec --offline` gets the variable.
    fn spawn(
        &self,
        log: &Path,
        sealed: Option<&Sealed>,
    ) -> anyhow::Result<mpsc::Receiver<ExitStatus>> {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find the tfmirror executable: {e}"))?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--background")
            .arg("--cache-dir")
            .arg(absolute(self.cache_dir));
        if let Some(config) = self.config_file {
            command.arg("--config").arg(absolute(config));
        }
        if sealed == Some(&Sealed::Environment) {
            command.env(OFFLINE_ENV, "1");
        }
        let log_file = open_log(log)?;
        // The server runs in `/`: a relative SSL_CERT_FILE must still name
        // the same file. The proxy variables pass through unchanged.
        command.envs(crate::upstream::NetworkEnv::from_env().absolute_cert_paths());
        command
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        new_session(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start tfmirror serve: {e}"))?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = sender.send(status);
            }
        });
        Ok(receiver)
    }
}

/// A new session, so the server has no controlling terminal and the
/// terminal's signals (Ctrl-C, hang-up) stay with the client.
fn new_session(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Why a server was not stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("cannot stop the tfmirror server (pid {pid}): {source}")]
    Signal { pid: u32, source: std::io::Error },
    #[error(
        "the tfmirror server (pid {pid}) is still running {}s after it was asked to stop; \
         `kill -KILL {pid}` ends it at once",
        .waited.as_secs()
    )]
    StillRunning { pid: u32, waited: Duration },
}

/// Asks the server to stop (SIGTERM: it finishes requests in flight, then
/// exits) and waits until it has.
pub async fn stop(health: &Health) -> Result<(), StopError> {
    stop_pid(health.server.pid, STOP_TIMEOUT).await
}

async fn stop_pid(pid: u32, timeout: Duration) -> Result<(), StopError> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(StopError::Signal { pid, source: error });
    }
    wait_for_exit(pid, timeout).await
}

/// How long a process that has exited may wait for its parent to collect
/// it. A server whose starter has exited is a child of init, and some inits
/// (in containers and VMs) reap only every few seconds.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// Waits up to `timeout` for `pid` to exit, then up to [`REAP_WAIT`] for it
/// to leave the process table: until then `ps`, `pgrep` and `kill -0` still
/// show it, and a user who reads "stopped" takes it as still running. A
/// process left unreaped after that has exited all the same.
async fn wait_for_exit(pid: u32, timeout: Duration) -> Result<(), StopError> {
    let started = Instant::now();
    while process_exists(pid) {
        if started.elapsed() >= timeout {
            return Err(StopError::StillRunning {
                pid,
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = Instant::now();
    while is_zombie(pid) && exited.elapsed() < REAP_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether `pid` is a live process. A zombie counts as gone: a server
/// whose starter has exited is reparented to init, which may take a while
/// to reap it.
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Linux tells a zombie by the state after the command name in
/// `/proc/PID/stat`; elsewhere (macOS) launchd reaps at once.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

pub fn log_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(crate::store::layout::SERVER_LOG)
}

/// Appends to the log, keeping one older generation once it grows large.
fn open_log(path: &Path) -> anyhow::Result<File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(
            path,
            path.with_file_name(crate::store::layout::SERVER_LOG_OLD),
        );
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// The last lines of the log, to show why a server did not start.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The server runs in another working directory, so it must get absolute
/// paths.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that a thread reaps at once, as `Launch::spawn` does.
    fn spawn(script: &str) -> u32 {
        let mut child = Command::new("sh").arg("-c").arg(script).spawn().unwrap();
        let pid = child.id();
        std::thread::spawn(move || child.wait());
        pid
    }

    #[tokio::test]
    async fn waits_until_the_process_is_gone() {
        let pid = spawn("exec sleep 30");
        let started = Instant::now();
        stop_pid(pid, Duration::from_secs(10)).await.unwrap();
        assert!(!process_exists(pid));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn says_so_when_the_process_does_not_exit_in_time() {
        let pid = spawn("trap '' TERM; exec sleep 30");
        // sh must have set its trap before the signal comes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let error = stop_pid(pid, Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(error, StopError::StillRunning { pid: p, .. } if p == pid));
        assert!(process_exists(pid), "SIGTERM was ignored");
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        let message = StopError::StillRunning {
            pid: 4242,
            waited: STOP_TIMEOUT,
        };
        insta::assert_snapshot!(message.to_string());
    }
}
