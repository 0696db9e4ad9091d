//! `tfmirror serve`: own the cache and serve it until stopped, or until
//! idle when started in the background by a client.

use std::future::Future;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::server::{self, state_file, Server, TlsFiles};
use crate::store::{write_atomic, OwnerLockError, Store, StoreError};

pub struct ServeOptions {
    /// `--listen`; else the config's `listen`; else a free loopback port.
    pub listen: Option<SocketAddr>,
    /// `--idle-timeout`; a background server defaults to the config's.
    pub idle_timeout: Option<Duration>,
    /// Started by a client (`exec`): losing the cache to another server is
    /// the expected outcome of a race, not an error.
    pub background: bool,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsFiles>,
}

pub async fn run(cache_dir: &Path, config: Config, options: ServeOptions) -> anyhow::Result<i32> {
    let store = match Store::open(cache_dir) {
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
    let listen = options
        .listen
        .or(config.listen)
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let idle_timeout = options
        .idle_timeout
        .or(options.background.then_some(config.idle_timeout));
    let signal = server::shutdown_signal()?;
    let server = Server::bind(listen, options.tls.as_ref(), config.clone(), store).await?;
    let url = server.url().to_owned();
    write_terraform_rc(cache_dir, &config, &url).await;
    state_file::write(cache_dir, &state_file::ServerInfo::current(&url))?;
    tracing::info!("listening on {url}");
    println!("tfmirror listening on {url}");
    std::io::stdout().flush()?;
    let stop = stop_when(signal, idle_timeout.map(|t| (t, server.idle_for(t))));
    server.run(stop).await;
    state_file::remove_own(cache_dir);
    Ok(0)
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

/// Rewrites `<cache>/terraform.rc` for this server, the file `tfmirror env`
/// points Terraform at. A failure costs only that file, so it is logged and
/// the server starts anyway.
async fn write_terraform_rc(cache_dir: &Path, config: &Config, url: &str) {
    let path = super::terraform_rc_path(cache_dir);
    let result = match super::render_cli_config(config, cache_dir, url) {
        // Mode 0600, as for every temporary file tempfile creates: the
        // text may hold the user's registry credentials.
        Ok(rendered) => write_atomic(&path, rendered.text.as_bytes())
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!("cannot write {}: {e:#}", path.display());
    }
}
