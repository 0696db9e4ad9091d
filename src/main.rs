//! tfmirror: a local caching proxy for Terraform and OpenTofu registries.
//!
//! # Module map
//!
//! Requests flow one way: `server` → `providers` / `modules` / `git` →
//! `store` / `upstream`. Nothing low reaches up; `protocol` is shared by
//! `server` and `commands`.
//!
//! - `server`: the HTTP server: listening, TLS, routing (`router`), access
//!   checks, limits, the owner's admin endpoints (`admin`: gc, delete,
//!   prune). Uses everything below.
//! - `providers`: the provider registry protocol (`route::ProviderRoute`),
//!   the network mirror protocol (`network_mirror`), zips and checksums
//!   verified with GPG, `h1:`/`zh:` hashes, unpacked trees. Uses `store`,
//!   `upstream`.
//! - `modules`: the module registry protocol (`route::ModuleRoute`),
//!   `X-Terraform-Get` rewriting, HTTP module archives (`http_archives`).
//!   Uses `git` (for `git::` locations), `store`, `upstream`.
//! - `git`: bare mirrors of upstream repositories (`mirror`, kept with gix),
//!   their freshness and single flight (`freshness::GitMirrors`), smart HTTP
//!   for git clients (`smart_http`), a commit's tree as tar.gz
//!   (`commit_archive`) served at `/git-archive/` (`archive_route`),
//!   snapshots for local clones. Uses `store`.
//! - `store`: the cache directory: layout and buckets, atomic blobs, the
//!   sled index, metadata documents (`documents`), the one freshness rule
//!   for documents and git mirrors (`freshness`), per-key locks and single
//!   flight (`locks`), inventory and gc. Knows nothing of Terraform.
//! - `upstream`: the HTTP client to registries and download hosts:
//!   discovery, credentials, retries, circuit breaker. Uses `store` for
//!   cached documents.
//! - `shared`: the tier on object storage (`[shared]`): keys in the bucket
//!   (`ObjectKey`), reads bounded in size and time, background uploads,
//!   the tier's health and its circuit breaker (`SharedTier`). Uses
//!   `store` for blob writers and paths.
//! - `protocol`: what tfmirror's commands and their server say to each
//!   other: endpoints, wire types, header names, `server.json`.
//! - `commands`: one module per subcommand. `serve` runs `server`; the
//!   others reach a running server through `protocol`, and use pure
//!   helpers such as `providers::hashes`.
//! - `cliconfig`: the generated Terraform CLI config, merged with the
//!   user's. `lockfile`: `.terraform.lock.hcl`, read and extended.
//! - `provider_address`: a provider's address (`host/namespace/type`) and
//!   its packages (version, os, arch), with the one builder and the one
//!   parser of `terraform-provider-<type>_<version>_<os>_<arch>.zip`. Used
//!   by `providers`, `lockfile`, `commands` and `catalog`; uses only
//!   `store::Segment`.
//! - `sealed`: sealed (offline) mode, the one value that keeps the server
//!   from every upstream, and its refusal.
//! - `config`: the config file, defaults and paths. `catalog`: store paths
//!   named in Terraform's terms. `request` / `response`: what handlers take
//!   and build. `server_key`: the server's secret and grants. `metrics`,
//!   `file_chunks`, `replace_file`: small helpers. `human_size`: the one
//!   way a size is shown (`1.2 MB`). `crypto_provider`: ring
//!   as the process's rustls provider, for gix's and object_store's reqwest.
//!
//! "Mirror" names three things: a git mirror (a bare repository under
//! `git/`), Terraform's network mirror protocol (`providers::network_mirror`),
//! and the filesystem mirror layout the provider store uses on disk.

mod audit;
mod bundle;
mod catalog;
mod cliconfig;
mod commands;
mod config;
mod crypto_provider;
mod file_chunks;
mod git;
mod human_size;
mod listen_addr;
mod lockfile;
mod metrics;
mod modules;
mod policy;
mod protocol;
mod provider_address;
mod providers;
mod replace_file;
mod request;
mod response;
mod sealed;
mod server;
mod server_key;
mod shared;
mod store;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    #[arg(long, value_name = "DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Config file [default: $TFMIRROR_CONFIG or $XDG_CONFIG_HOME/tfmirror/config.toml]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the cache until stopped (SIGINT/SIGTERM, `tfmirror stop`).
    Serve {
        /// Address to listen on: `127.0.0.1:8443`, `[::1]:8443` or a host
        /// name such as `localhost:8443` (the first of its addresses that
        /// binds, IPv4 first) [default: the config's `listen`, else
        /// 127.0.0.1 on a free port].
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<listen_addr::ListenAddr>,
        /// Exit after this long without clients (e.g. `15m`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        idle_timeout: Option<Duration>,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key);
        /// Terraform reaches a `network_mirror` over HTTPS only.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The URL a team's clients reach this server by (e.g.
        /// `https://tfmirror.example.com:8443`); every URL in its answers
        /// starts with it. Needed to listen beyond loopback [default: the
        /// config's `public_url`].
        #[arg(long, value_name = "URL")]
        public_url: Option<url::Url>,
        /// A file of client tokens, one per line: team clients send one as
        /// `TF_TOKEN_<host>`. Needed to listen beyond loopback.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
        /// Started by a client: exit quietly if another server owns the
        /// cache, and after the config's `idle_timeout` without clients.
        #[arg(long, hide = true)]
        background: bool,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Show the server that owns the cache (exit 1 if none runs).
    Status {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Stop the cache's server once its requests in flight finish.
    Stop {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print the Terraform CLI config that points at the running server.
    Rc {
        /// Install providers from the server's network mirror (a
        /// `provider_installation` block; needs a server with --tls-cert)
        /// instead of routing registry hosts through it.
        #[arg(long)]
        network_mirror: bool,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Print `export` lines that point Terraform, OpenTofu and git at the
    /// running server (use with `eval "$(tfmirror env)"`).
    Env {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Bundles: the exact closure of runs as one verifiable file.
    Bundle {
        #[command(subcommand)]
        action: commands::bundle::BundleAction,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Manage the cache's contents.
    Cache {
        #[command(subcommand)]
        action: commands::cache::CacheAction,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Install or remove a login service that keeps a server running on a
    /// fixed address (systemd user unit on Linux, launchd agent on macOS).
    Service {
        #[command(subcommand)]
        action: commands::service::ServiceAction,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Run a command (e.g. `terraform init`) with Terraform and OpenTofu
    /// pointed at tfmirror, starting a background server if none runs.
    Exec {
        #[command(flatten)]
        cache: CacheArgs,
        /// Sealed: the server contacts no upstream and answers only from
        /// the cache (as `offline = true` or TFMIRROR_OFFLINE=1).
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        wrapped: commands::exec::Wrapped,
    },
    /// Fetch every provider package that lock files name into the cache,
    /// checking each against the lock file's hashes.
    Warm {
        #[command(flatten)]
        args: commands::warm::WarmArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Show the audit log: one line per upstream fetch (time, run, client,
    /// what, size, outcome). Reads the log's files; no server is needed.
    Audit {
        #[command(flatten)]
        args: commands::audit::AuditArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Add the `h1:` hashes of more platforms to lock files, from cached
    /// packages that match the `zh:` hashes already there.
    Lock {
        #[command(flatten)]
        args: commands::lock::LockArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// The config's `[policy]`: what the server refuses to fetch or serve.
    Policy {
        #[command(subcommand)]
        action: commands::policy::PolicyAction,
        #[command(flatten)]
        cache: CacheArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve { .. }));
    if only_prints(&cli.command) {
        die_quietly_on_a_closed_pipe();
    }
    let runtime = tokio::runtime::Runtime::new().expect("the async runtime starts");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("tfmirror: {}", error_report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The commands whose work is printing, which a reader such as `head`
/// may stop reading early. The others start servers or child processes
/// that write into pipes, where SIGPIPE must stay an error, not a death.
fn only_prints(command: &Command) -> bool {
    matches!(
        command,
        Command::Status { .. }
            | Command::Rc { .. }
            | Command::Env { .. }
            | Command::Policy { .. }
            | Command::Audit { .. }
    ) || matches!(command, Command::Cache { action, .. } if action.only_prints())
        || matches!(command, Command::Bundle { action, .. } if action.only_prints())
}

/// Rust ignores SIGPIPE, so printing to a closed pipe fails and `print!`
/// panics; like every Unix tool, such a command should just end.
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: signal(2) with SIG_DFL runs no handler code of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// An error and its causes, each said once: many errors already include
/// their cause's text (`{context}: {source}`), and `{:#}` would repeat it.
fn error_report(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Serve {
            listen,
            idle_timeout,
            tls_cert,
            tls_key,
            public_url,
            tokens,
            background,
            cache,
        } => {
            let loaded = Loaded::new(&cache)?;
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| server::TlsFiles { cert, key });
            let options = commands::serve::ServeOptions {
                listen,
                idle_timeout,
                background,
                tls,
                public_url,
                tokens,
                config_file: loaded.config_file,
            };
            commands::serve::run(&loaded.dir, loaded.config, options).await
        }
        Command::Status { cache } => commands::status::run(&Loaded::new(&cache)?.dir).await,
        Command::Stop { cache } => commands::stop::run(&Loaded::new(&cache)?.dir).await,
        Command::Rc {
            network_mirror,
            cache,
        } => {
            let loaded = Loaded::new(&cache)?;
            commands::rc::run(&loaded.dir, &loaded.config, network_mirror).await
        }
        Command::Env { cache } => {
            let loaded = Loaded::new(&cache)?;
            commands::env::run(&loaded.dir, &loaded.config).await
        }
        Command::Cache { action, cache } => {
            let loaded = Loaded::new(&cache)?;
            let launch = commands::launch::Launch {
                cache_dir: &loaded.dir,
                config_file: loaded.config_file.as_deref(),
            };
            use commands::cache::{self as cache_commands, CacheAction};
            match action {
                CacheAction::Import { dir, lock_files } => {
                    cache_commands::import::run(launch, &dir, &lock_files).await
                }
                CacheAction::List { kind, filter, json } => {
                    cache_commands::list::run(&loaded.dir, kind, filter.as_deref(), json).await
                }
                CacheAction::Stats { json } => cache_commands::stats::run(&loaded.dir, json).await,
                CacheAction::Push { dry_run } => {
                    cache_commands::push::run(launch, &loaded.config, dry_run).await
                }
                CacheAction::Gc {
                    max_size,
                    unused_for,
                    min_age,
                    dry_run,
                    json,
                } => {
                    use cache_commands::remove::MinAge;
                    let gc = &loaded.config.gc;
                    let options = cache_commands::remove::GcOptions {
                        unused_for: unused_for
                            .or(gc.unused_for)
                            .unwrap_or(Duration::from_secs(30 * 24 * 3600)),
                        max_size: max_size.or(gc.max_size),
                        min_age: min_age.map_or(MinAge::Config(gc.min_age), MinAge::Flag),
                        dry_run,
                        json,
                    };
                    cache_commands::remove::gc(launch, options).await
                }
                CacheAction::Delete {
                    pattern,
                    dry_run,
                    json,
                } => cache_commands::remove::delete(launch, &pattern, dry_run, json).await,
                CacheAction::Prune {
                    older_than,
                    dry_run,
                    json,
                } => cache_commands::remove::prune(launch, older_than, dry_run, json).await,
            }
        }
        Command::Bundle { action, cache } => {
            let loaded = Loaded::new(&cache)?;
            use commands::bundle::{inspect, BundleAction};
            match action {
                BundleAction::Create { args } => {
                    commands::bundle::create::run(loaded.launch(), loaded.config.clone(), args)
                        .await
                }
                BundleAction::Import { file } => {
                    commands::bundle::import::run(loaded.launch(), &file).await
                }
                BundleAction::List { file, json } => {
                    inspect::list(&file, &loaded.config.limits, json).await
                }
                BundleAction::Verify { file } => {
                    inspect::verify(&file, &loaded.config.limits).await
                }
            }
        }
        Command::Service { action, cache } => {
            let loaded = Loaded::new(&cache)?;
            let config_file = loaded.config_file.as_deref();
            commands::service::run(action, &loaded.dir, config_file, &loaded.config).await
        }
        Command::Exec {
            cache,
            offline,
            wrapped: commands::exec::Wrapped { command },
        } => {
            let loaded = Loaded::new(&cache)?;
            let launch = commands::launch::Launch {
                cache_dir: &loaded.dir,
                config_file: loaded.config_file.as_deref(),
            };
            let mut config = loaded.config.clone();
            if offline && config.offline.is_none() {
                config.offline = Some(sealed::Sealed::Environment);
            }
            commands::exec::run(launch, config, &command).await
        }
        Command::Warm { args, cache } => {
            let loaded = Loaded::new(&cache)?;
            commands::warm::run(loaded.launch(), args).await
        }
        Command::Audit { args, cache } => {
            let loaded = Loaded::new(&cache)?;
            commands::audit::run(&loaded.dir, &loaded.config.audit, args).await
        }
        Command::Lock { args, cache } => {
            let loaded = Loaded::new(&cache)?;
            commands::lock::run(loaded.launch(), args).await
        }
        Command::Policy { action, cache } => {
            let loaded = Loaded::new(&cache)?;
            commands::policy::run(action, &loaded.config).await
        }
    }
}

/// The cache directory and config a command works with.
struct Loaded {
    dir: PathBuf,
    config: config::Config,
    /// The file the config came from; a server started for this command
    /// reads the same one.
    config_file: Option<PathBuf>,
}

impl Loaded {
    fn new(args: &CacheArgs) -> anyhow::Result<Loaded> {
        let dir = config::cache_dir(args.cache_dir.as_deref())?;
        let (config, config_file) = config::Config::load(args.config.as_deref())?;
        Ok(Loaded {
            dir,
            config,
            config_file,
        })
    }

    /// How to start a server for this cache and config, if none runs.
    fn launch(&self) -> commands::launch::Launch<'_> {
        commands::launch::Launch {
            cache_dir: &self.dir,
            config_file: self.config_file.as_deref(),
        }
    }
}

/// A server logs what it does; around a user's command only warnings and
/// errors are worth interleaving with Terraform's output. `TFMIRROR_LOG`
/// (e.g. `debug`) overrides either. A server also files each `exec` run's
/// problems for that run (`server::run_journal`), whatever the log's level.
fn init_logging(serving: bool) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TFMIRROR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry();
    if serving {
        registry
            .with(log.with_filter(filter))
            .with(server::run_journal::layer())
            .init();
    } else {
        registry.with(log.without_time().with_filter(filter)).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open /x: {source}")]
    struct Repeats {
        #[source]
        source: std::io::Error,
    }

    /// Every subcommand and argument, hidden ones too, says what it is
    /// for in `--help`.
    #[test]
    fn every_flag_and_subcommand_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(sub_path.clone());
                }
                walk(sub, &sub_path, missing);
            }
        }
        let mut command = <Cli as clap::CommandFactory>::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "tfmirror", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }

    #[test]
    fn each_cause_is_said_once() {
        let denied = || std::io::Error::from_raw_os_error(libc::EACCES);
        let repeated = anyhow::Error::new(Repeats { source: denied() });
        assert_eq!(
            error_report(&repeated),
            "cannot open /x: Permission denied (os error 13)"
        );
        let chained = anyhow::Error::new(denied()).context("cannot read the config");
        assert_eq!(
            error_report(&chained),
            "cannot read the config: Permission denied (os error 13)"
        );
    }
}
