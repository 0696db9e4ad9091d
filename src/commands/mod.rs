//! One module per subcommand; what they share (finding the server that owns
//! a cache, rendering the CLI config for it) lives here.

pub mod exec;
pub mod rc;
pub mod serve;

use std::path::Path;
use std::time::Duration;

use crate::cliconfig::HostServices;
use crate::config::Config;
use crate::server::state_file::{self, ServerInfo};

/// The server recorded in `<cache>/server.json`, if it answers its health
/// check for this cache directory. A stale file (dead process, another
/// cache) is not trusted.
pub async fn running_server(cache_dir: &Path) -> Option<ServerInfo> {
    let info = state_file::read(cache_dir)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .ok()?;
    let response = client
        .get(format!("{}/_tfmirror/health", info.url))
        .send()
        .await
        .ok()?;
    let health: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    let served_dir = health.get("cache_dir")?.as_str()?;
    same_dir(Path::new(served_dir), cache_dir).then_some(info)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The `host` blocks that send each proxied registry to the server at `url`.
pub fn host_services(config: &Config, url: &str) -> Vec<HostServices> {
    config
        .registries
        .iter()
        .map(|host| HostServices {
            host: host.clone(),
            services: vec![
                (
                    "providers.v1".to_owned(),
                    format!("{url}/v1/providers/{host}/"),
                ),
                ("modules.v1".to_owned(), format!("{url}/v1/modules/{host}/")),
            ],
        })
        .collect()
}
