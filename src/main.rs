//! tfmirror: a local caching proxy for Terraform and OpenTofu registries.

mod cliconfig;
mod commands;
mod config;
mod git;
mod modules;
mod providers;
mod request;
mod response;
mod server;
mod store;
mod upstream;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tfmirror",
    version,
    about = "A local caching proxy for Terraform and OpenTofu registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct CacheArgs {
    /// Cache directory [default: $TFMIRROR_CACHE_DIR, $XDG_CACHE_HOME/tfmirror or ~/.cache/tfmirror]
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Config file [default: $TFMIRROR_CONFIG or $XDG_CONFIG_HOME/tfmirror/config.toml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the cache until stopped (SIGINT/SIGTERM).
    Serve {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
        listen: SocketAddr,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print the Terraform CLI config that points at the running server.
    Rc {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print `export` lines that point git at the running server's mirrors.
    Env {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Run a command (e.g. `terraform init`) with Terraform and OpenTofu
    /// pointed at tfmirror, starting a server for it if none runs.
    Exec {
        #[command(flatten)]
        cache: CacheArgs,
        /// The command and its arguments, after `--`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve { .. }));
    let runtime = tokio::runtime::Runtime::new().expect("the async runtime starts");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("tfmirror: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Serve { listen, cache } => {
            let (dir, config) = load(&cache)?;
            commands::serve::run(&dir, config, listen).await
        }
        Command::Rc { cache } => {
            let (dir, config) = load(&cache)?;
            commands::rc::run(&dir, &config).await
        }
        Command::Env { cache } => {
            let (dir, config) = load(&cache)?;
            commands::env::run(&dir, &config).await
        }
        Command::Exec { cache, command } => {
            let (dir, config) = load(&cache)?;
            commands::exec::run(&dir, config, &command).await
        }
    }
}

fn load(args: &CacheArgs) -> anyhow::Result<(PathBuf, config::Config)> {
    let dir = config::cache_dir(args.cache_dir.as_deref())?;
    let config = config::Config::load(args.config.as_deref())?;
    Ok((dir, config))
}

/// A server logs what it does; around a user's command only warnings and
/// errors are worth interleaving with Terraform's output. `TFMIRROR_LOG`
/// (e.g. `debug`) overrides either.
fn init_logging(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TFMIRROR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if serving {
        builder.init();
    } else {
        builder.without_time().init();
    }
}
