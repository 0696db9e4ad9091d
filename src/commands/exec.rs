//! `tfmirror exec -- CMD ...`: run one command with Terraform and OpenTofu
//! pointed at the cache's server, starting one in the background if none
//! runs. For `init`, locked providers come from the server's unpacked tree
//! (see `fast_path`); for `init` and `get`, the git repositories the module
//! calls name are cloned by path from snapshots of their mirrors (see
//! `local_clones`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

use super::fast_path::{self, Scope};
use super::launch::Launch;
use super::local_clones::{self, LocalClones};
use super::{run_report, savings, user_settings};
use crate::cliconfig::{self, Program, Rendered, UserHost};
use crate::config::Config;
use crate::protocol::RunId;

/// Terraform's own variable for its plugin cache, which `exec` unsets.
const PLUGIN_CACHE_ENV: &str = "TF_PLUGIN_CACHE_DIR";
/// Terraform's own variable for the directory it keeps `.terraform` in.
const DATA_DIR_ENV: &str = "TF_DATA_DIR";

/// The command a run wraps, as `exec` and `bundle create` take it: every
/// argument after `--`, hyphens and all.
#[derive(clap::Args)]
pub struct Wrapped {
    /// The command and its arguments, after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

pub async fn run(launch: Launch<'_>, config: Config, command: &[OsString]) -> anyhow::Result<i32> {
    run_as(launch, config, command, RunId::fresh()).await
}

/// [`run`] as the run `run_id`, which the caller then asks the server
/// about (`bundle create` asks for its closure).
pub async fn run_as(
    launch: Launch<'_>,
    config: Config,
    command: &[OsString],
    run_id: RunId,
) -> anyhow::Result<i32> {
    let Some((program, args)) = command.split_first() else {
        anyhow::bail!(
            "nothing to run: give a command after --, e.g. `tfmirror exec -- terraform init`"
        );
    };
    let server = launch.connect_sealed(config.offline.as_ref()).await?;
    let run_url = crate::protocol::run_url(&server.url, &run_id);
    let run = run_id.as_str();
    let cwd = std::env::current_dir()?;
    let reader = Program::of(program);
    let user = super::user_cli_config(launch.cache_dir, reader)?;
    let user_hosts = super::user_hosts(&config, user.as_ref());
    let scope = Scope::of(program, args, &cwd, |name| std::env::var(name).ok());
    let module_workdir = super::run_start::module_workdir(args, &cwd);
    let routes = super::host_routes(&user_hosts);
    // Before anything of the run reaches the server: its requests go by
    // the routes announced.
    let announced = if module_workdir.is_some() || !routes.is_empty() {
        super::run_start::announce(&server, run, module_workdir.as_deref(), routes).await
    } else {
        true
    };
    let local = async {
        match &module_workdir {
            Some(workdir) => {
                let data_dir = terraform_data_dir(workdir);
                local_clones::plan(&server, run, workdir, &data_dir).await
            }
            None => LocalClones::default(),
        }
    };
    let (mirror, local) = tokio::join!(
        fast_path::plan(&scope, &config, &server, run, user.as_ref()),
        local
    );
    let rendered = super::render_exec_config(&config, &run_url, mirror.as_ref(), user.as_ref());
    let routed: &[UserHost] = if announced { &user_hosts } else { &[] };
    report_dropped_settings(&rendered, &scope, routed);
    let kept_installation = !rendered
        .overridden
        .iter()
        .any(|setting| setting == "provider_installation");
    let settings = user_settings::UserSettings {
        program,
        reader,
        user: user.as_ref(),
        routed,
        installs_providers: scope.installs_providers() && kept_installation,
    };
    for line in settings.lines() {
        eprintln!("tfmirror: {line}");
    }
    let git = super::git_config_env(&config, &run_url, &local.rewrites, |name| {
        std::env::var(name).ok()
    });
    let code = run_command(&rendered, git, program, args).await;
    if code.as_ref().is_ok_and(|code| *code != 0) {
        local.report_missing(server.server.offline.as_deref());
    }
    // This run's problems, grouped, then its savings (see `run_report`).
    let counters = savings::end_run(&server, run).await;
    for line in counters.iter().flat_map(run_report::lines) {
        eprintln!("{line}");
    }
    code
}

/// One line for the user's settings the generated config replaces (but
/// not the `host` blocks tfmirror follows, `routed`), and one for a plugin
/// cache left out when the command may install providers.
fn report_dropped_settings(rendered: &Rendered, scope: &Scope, routed: &[UserHost]) {
    let overridden: Vec<&str> = rendered
        .overridden
        .iter()
        .map(String::as_str)
        .filter(|setting| {
            !routed
                .iter()
                .any(|host| cliconfig::names_host_block(setting, &host.host))
        })
        .collect();
    if !overridden.is_empty() {
        eprintln!(
            "tfmirror: the generated CLI config replaces these settings of yours: {}",
            overridden.join(", ")
        );
    }
    let mut plugin_cache = rendered.left_out.clone();
    if std::env::var_os(PLUGIN_CACHE_ENV).is_some_and(|dir| !dir.is_empty()) {
        plugin_cache.push(PLUGIN_CACHE_ENV.to_owned());
    }
    if !plugin_cache.is_empty() && scope.installs_providers() {
        eprintln!(
            "tfmirror: your {} is left out: tfmirror is the cache, and Terraform's plugin \
             cache is not safe when several inits run at once",
            plugin_cache.join(" and ")
        );
    }
}

/// Terraform's data directory for `workdir`: `TF_DATA_DIR` (relative to
/// the working directory), else `.terraform`.
fn terraform_data_dir(workdir: &Path) -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => workdir.join(dir),
        _ => workdir.join(".terraform"),
    }
}

async fn run_command(
    rendered: &Rendered,
    git: Vec<(String, String)>,
    program: &OsString,
    args: &[OsString],
) -> anyhow::Result<i32> {
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
        .env_remove(PLUGIN_CACHE_ENV)
        .envs(git)
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
/// process must survive it to report the command's exit code. A SIGTERM
/// sent to tfmirror alone is passed on, so the command can stop as
/// gracefully.
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
