//! One module per subcommand; what they share (finding the server that owns
//! a cache, rendering the CLI config for it) lives here.

pub mod env;
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

/// `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` that make git
/// fetch mirrored prefixes from tfmirror, appended after the entries
/// already in the environment (`existing` reads a variable) so the user's
/// own stay in force.
pub fn git_config_env(
    config: &Config,
    url: &str,
    existing: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let start: usize = existing("GIT_CONFIG_COUNT")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let mut vars = Vec::new();
    let mut count = start;
    for prefix in &config.git_mirror {
        let Some(proxy) = crate::git::proxy_prefix(url, prefix) else {
            tracing::warn!("ignoring git mirror prefix {prefix:?}: not a URL prefix");
            continue;
        };
        vars.push((
            format!("GIT_CONFIG_KEY_{count}"),
            format!("url.{proxy}.insteadOf"),
        ));
        vars.push((format!("GIT_CONFIG_VALUE_{count}"), prefix.clone()));
        count += 1;
    }
    vars.push(("GIT_CONFIG_COUNT".to_owned(), count.to_string()));
    vars
}

/// The running server, or `None` after telling the user how to start one.
pub async fn require_server(cache_dir: &Path) -> Option<ServerInfo> {
    let server = running_server(cache_dir).await;
    if server.is_none() {
        eprintln!(
            "tfmirror: no server is running for the cache at {}; start one with `tfmirror serve`",
            cache_dir.display()
        );
    }
    server
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
