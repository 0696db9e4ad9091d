//! `tfmirror serve`: own the cache and serve it until stopped, or until
//! idle when started in the background by a client.

use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use std::path::PathBuf;

use url::Url;

use crate::cliconfig::Tokens;
use crate::config::Config;
use crate::listen_addr::ListenAddr;
use crate::server::{self, state_file, MemberTokens, Server, Team, TlsFiles};
use crate::store::{OwnerLockError, Store, StoreError};

pub struct ServeOptions {
    /// `--listen`; else the config's `listen`; else a free loopback port.
    pub listen: Option<ListenAddr>,
    /// `--idle-timeout`; a background server defaults to the config's.
    pub idle_timeout: Option<Duration>,
    /// Started by a client (`exec`): losing the cache to another server is
    /// the expected outcome of a race, not an error.
    pub background: bool,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
    /// `--public-url`; else the config's `public_url`.
    pub public_url: Option<Url>,
    /// `--tokens`: team clients' tokens.
    pub tokens: Option<PathBuf>,
    /// The file the config was read from, whose `[policy]` the server
    /// keeps reading as it changes.
    pub config_file: Option<PathBuf>,
}

impl ServeOptions {
    /// Who besides the owner may use the server. A server reachable from
    /// other machines must say by which URL (or its answers would carry
    /// `0.0.0.0`), speak TLS and admit only token holders: it refuses to
    /// start otherwise, in one line naming what to add. A host name counts
    /// as loopback only if every address it resolves to is.
    fn team(
        &self,
        listen: &ListenAddr,
        addrs: &[SocketAddr],
        config: &Config,
    ) -> anyhow::Result<Team> {
        let public_url = self
            .public_url
            .clone()
            .or_else(|| config.public_url.clone());
        if let Some(url) = &public_url {
            check_public_url(url, self.tls.is_some())?;
        }
        if !addrs.iter().all(|addr| addr.ip().is_loopback()) {
            let missing: Vec<&str> = [
                (public_url.is_none(), "--public-url https://NAME:PORT"),
                (self.tls.is_none(), "--tls-cert FILE --tls-key FILE"),
                (self.tokens.is_none(), "--tokens FILE"),
            ]
            .into_iter()
            .filter_map(|(missing, flag)| missing.then_some(flag))
            .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "{listen} is reachable from other machines; to serve a team there, add {}",
                    missing.join(", ")
                );
            }
        }
        let members = self.tokens.as_deref().map(MemberTokens::read).transpose()?;
        Ok(Team {
            public_url,
            members,
        })
    }
}

/// A public URL names a host, carries no path tricks, and is https when
/// the server speaks TLS (Terraform reaches a network mirror over https
/// only).
fn check_public_url(url: &Url, tls: bool) -> anyhow::Result<()> {
    let expected = if tls { "https" } else { "http" };
    if url.scheme() != expected || url.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("--public-url {url}: expected {expected}://NAME[:PORT]");
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        anyhow::bail!("--public-url {url}: a public URL has no user, query or fragment");
    }
    Ok(())
}

pub async fn run(cache_dir: &Path, config: Config, options: ServeOptions) -> anyhow::Result<i32> {
    let listen = options
        .listen
        .clone()
        .or_else(|| config.listen.clone())
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into());
    let addrs = listen.resolve().await?;
    let team = options.team(&listen, &addrs, &config)?;
    let store = match open_store(cache_dir, options.background).await? {
        Ok(store) => store,
        Err(StoreError::Owned(OwnerLockError::Busy(_))) if options.background => {
            tracing::info!("another server already owns the cache; exiting");
            return Ok(0);
        }
        Err(StoreError::Owned(OwnerLockError::Busy(_))) => {
            let owner = state_file::read(cache_dir)
                .map(|info| format!(" (pid {}, {})", info.pid, info.url))
                .unwrap_or_default();
            anyhow::bail!(
                "another tfmirror process{owner} already serves the cache at {}",
                cache_dir.display()
            );
        }
        Err(e) => return Err(e.into()),
    };
    let idle_timeout = options
        .idle_timeout
        .or(options.background.then_some(config.idle_timeout));
    let signal = server::shutdown_signal()?;
    let config_file = options.config_file.clone();
    let tls = options.tls.as_ref();
    let server = Server::bind(
        &listen,
        &addrs,
        tls,
        team,
        config.clone(),
        config_file,
        store,
    )
    .await?;
    let url = server.url().to_owned();
    server
        .user_routes()
        .set_start(&start_routes(cache_dir, &config).await);
    let info = state_file::ServerInfo::current(&url, server.secret().as_str());
    write_terraform_rc(cache_dir, &config, &info.base_url()).await;
    state_file::write(cache_dir, &info)?;
    tracing::info!("listening on {url}");
    println!("tfmirror listening on {url}");
    std::io::stdout().flush()?;
    let stop = stop_when(signal, idle_timeout.map(|t| (t, server.idle_for(t))));
    server.run(stop).await;
    state_file::remove_own(cache_dir);
    Ok(0)
}

/// How long a background server waits for a cache whose lock a command
/// holds while it only reads it (`store::Unowned`, for `cache list`).
const READER_WAIT: Duration = Duration::from_secs(5);

/// Opens the cache. Opening sweeps and may re-index the whole cache: file
/// system walks, kept off the async threads. A background server finding
/// the cache locked with no server answering waits a little: the holder
/// may be a command reading it, and the client that started this server
/// waits for it; while a server of another process starting up also holds
/// the lock, that one is found answering soon, and this one then gives way.
async fn open_store(
    cache_dir: &Path,
    background: bool,
) -> anyhow::Result<Result<Store, StoreError>> {
    let started = std::time::Instant::now();
    loop {
        let opening = cache_dir.to_owned();
        let opened = tokio::task::spawn_blocking(move || Store::open(&opening)).await?;
        let busy = matches!(opened, Err(StoreError::Owned(OwnerLockError::Busy(_))));
        if !(busy && background && started.elapsed() < READER_WAIT)
            || super::running_server(cache_dir).await.is_some()
        {
            return Ok(opened);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Completes on `signal`, or once the server has been idle for the given
/// time.
async fn stop_when(
    signal: impl Future<Output = ()>,
    idle: Option<(Duration, impl Future<Output = ()>)>,
) {
    let Some((timeout, idle)) = idle else {
        return signal.await;
    };
    tokio::select! {
        () = signal => {}
        () = idle => {
            tracing::info!(
                "no client for {}; exiting",
                humantime::format_duration(timeout)
            );
        }
    }
}

/// The `host` blocks of the user's config (Terraform's files), by which
/// the server sends the requests of no `exec` run, such as those of the
/// persistent config `tfmirror env` names. A config that cannot be read
/// gives none; [`write_terraform_rc`] logs why.
async fn start_routes(cache_dir: &Path, config: &Config) -> Vec<crate::upstream::HostRoute> {
    let cache_dir = cache_dir.to_owned();
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let user = super::user_cli_config(&cache_dir, crate::cliconfig::Program::Terraform);
        super::host_routes(&super::user_hosts(&config, user.ok().flatten().as_ref()))
    })
    .await
    .unwrap_or_default()
}

/// Rewrites the persistent CLI config for this server, the file `tfmirror
/// env` points Terraform at, and removes the copy versions before 0.2 kept
/// inside the cache (it may hold the user's tokens). A failure costs only
/// that file, so it is logged and the server starts anyway.
async fn write_terraform_rc(cache_dir: &Path, config: &Config, url: &str) {
    let legacy = super::legacy_terraform_rc_path(cache_dir);
    if let Err(e) = tokio::fs::remove_file(&legacy).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", legacy.display());
        }
    }
    let path = super::terraform_rc_path(cache_dir);
    let result = match super::render_cli_config(config, cache_dir, url, Tokens::Keep) {
        Ok(rendered) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || write_private(&path, rendered.text.as_bytes()))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|written| written.map_err(anyhow::Error::from))
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!("cannot write {}: {e:#}", path.display());
    }
}

/// Mode 0600 in a directory of mode 0700 (made so if new): the text holds
/// the user's registry credentials and the server's secret. A directory
/// that already exists must belong to this user and be writable by no one
/// else: in a shared place (the temporary directory, with no home) another
/// user could have made it first and would then own what is in it.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let metadata = std::fs::symlink_metadata(dir)?;
        // SAFETY: geteuid(2) has no preconditions.
        let me = unsafe { libc::geteuid() };
        if !metadata.is_dir() || metadata.uid() != me || metadata.mode() & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "{} is not a private directory of this user (owner uid {}, mode {:o}); \
                 remove it or set XDG_RUNTIME_DIR",
                dir.display(),
                metadata.uid(),
                metadata.mode() & 0o7777
            )));
        }
    }
    crate::replace_file::replace(path, contents, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A background server waits out a command that reads the cache; a
    /// foreground one says at once that the cache is taken.
    #[tokio::test]
    async fn a_background_server_waits_for_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let reader = crate::store::Unowned::open(dir.path())
            .unwrap()
            .expect("a cache");
        let busy = open_store(dir.path(), false).await.unwrap();
        assert!(matches!(
            busy,
            Err(StoreError::Owned(OwnerLockError::Busy(_)))
        ));
        let done = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(reader);
        });
        let opened = tokio::time::timeout(READER_WAIT * 2, open_store(dir.path(), true))
            .await
            .expect("within the wait")
            .unwrap();
        assert!(opened.is_ok(), "{:?}", opened.err());
        done.join().unwrap();
    }

    #[test]
    fn the_persistent_config_goes_only_into_a_private_directory() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("tfmirror/terraform-x.rc");
        write_private(&path, b"secret").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);

        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = write_private(&shared.join("terraform-x.rc"), b"secret").unwrap_err();
        assert!(err.to_string().contains("not a private directory"), "{err}");
        assert!(!shared.join("terraform-x.rc").exists());
    }
}
