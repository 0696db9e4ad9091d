//! `tfmirror serve`: own the cache and serve it until stopped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;
use crate::server::{self, state_file, Server};
use crate::store::{OwnerLockError, Store, StoreError};

pub async fn run(cache_dir: &Path, config: Config, listen: SocketAddr) -> anyhow::Result<i32> {
    let store = match Store::open(cache_dir) {
        Ok(store) => store,
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
    let server = Server::bind(listen, config, store).await?;
    let url = server.url().to_owned();
    state_file::write(cache_dir, &state_file::ServerInfo::current(&url))?;
    println!("tfmirror listening on {url}");
    std::io::stdout().flush()?;
    server.run(server::shutdown_signal()).await;
    state_file::remove_own(cache_dir);
    Ok(0)
}
