//! `tfmirror exec -- CMD ...`: run one command with Terraform and OpenTofu
//! pointed at the cache's server, starting one for the duration if none runs.

use std::ffi::OsString;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cliconfig;
use crate::config::{self, Config};
use crate::server::{state_file, Server};
use crate::store::{OwnerLockError, Store, StoreError};

/// How long to wait for another process that owns the cache to publish its
/// server address.
const OWNER_WAIT: Duration = Duration::from_secs(10);

pub async fn run(cache_dir: &Path, config: Config, command: &[OsString]) -> anyhow::Result<i32> {
    let Some((program, args)) = command.split_first() else {
        anyhow::bail!(
            "nothing to run: give a command after --, e.g. `tfmirror exec -- terraform init`"
        );
    };
    let (url, in_process) = connect_or_start(cache_dir, &config).await?;
    let result = run_command(&config, &url, program, args).await;
    if let Some(server) = in_process {
        server.stop().await;
    }
    result
}

/// A server started inside this process, stopped when the command ends.
struct InProcess {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
    cache_dir: PathBuf,
}

impl InProcess {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        state_file::remove_own(&self.cache_dir);
    }
}

async fn connect_or_start(
    cache_dir: &Path,
    config: &Config,
) -> anyhow::Result<(String, Option<InProcess>)> {
    if let Some(info) = super::running_server(cache_dir).await {
        return Ok((info.url, None));
    }
    let store = match Store::open(cache_dir) {
        Ok(store) => store,
        Err(StoreError::Owned(OwnerLockError::Busy(_))) => return wait_for_owner(cache_dir).await,
        Err(e) => return Err(e.into()),
    };
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let server = Server::bind(listen, config.clone(), store).await?;
    let url = server.url().to_owned();
    state_file::write(cache_dir, &state_file::ServerInfo::current(&url))?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let in_process = InProcess {
        stop,
        task,
        cache_dir: cache_dir.to_owned(),
    };
    Ok((url, Some(in_process)))
}

/// Another process holds the cache but may not have written server.json
/// yet: it is starting, just as this one tried to.
async fn wait_for_owner(cache_dir: &Path) -> anyhow::Result<(String, Option<InProcess>)> {
    let started = Instant::now();
    while started.elapsed() < OWNER_WAIT {
        if let Some(info) = super::running_server(cache_dir).await {
            return Ok((info.url, None));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "another process owns the cache at {} but its server did not answer within {}s",
        cache_dir.display(),
        OWNER_WAIT.as_secs()
    )
}

async fn run_command(
    config: &Config,
    url: &str,
    program: &OsString,
    args: &[OsString],
) -> anyhow::Result<i32> {
    let user_config_env =
        std::env::var_os("TF_CLI_CONFIG_FILE").or_else(|| std::env::var_os("TOFU_CLI_CONFIG_FILE"));
    let user =
        cliconfig::find_user_config(user_config_env.as_deref(), config::home_dir().as_deref())?;
    let rendered = cliconfig::render(&super::host_services(config, url), user.as_ref());
    if !rendered.overridden.is_empty() {
        eprintln!(
            "tfmirror: the generated CLI config replaces these settings of yours: {}",
            rendered.overridden.join(", ")
        );
    }
    // Created with mode 0600 (it may hold the user's credentials) and
    // removed when dropped, whatever way the command ends.
    let mut file = tempfile::Builder::new()
        .prefix("tfmirror-")
        .suffix(".tfrc")
        .tempfile()?;
    file.write_all(rendered.text.as_bytes())?;
    file.flush()?;

    let mut child = match Command::new(program)
        .args(args)
        .env("TF_CLI_CONFIG_FILE", file.path())
        .env("TOFU_CLI_CONFIG_FILE", file.path())
        .envs(super::git_config_env(config, url, |name| {
            std::env::var(name).ok()
        }))
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("tfmirror: cannot run {}: {e}", program.to_string_lossy());
            return Ok(127);
        }
    };
    let status = wait_forwarding_signals(&mut child).await?;
    Ok(exit_code(status))
}

/// Ctrl-C reaches the command through the terminal's process group; this
/// process must survive it to stop its server cleanly. A SIGTERM sent to
/// tfmirror alone is passed on, so the command can stop as gracefully.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::ExitStatus> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            status = child.wait() => return status,
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
            }
        }
    }
}

/// The command's exit code, or 128 + signal number as shells report it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
