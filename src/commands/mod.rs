//! One module per subcommand; what they share (finding the server that owns
//! a cache, rendering the CLI config for it) lives here.

pub mod audit;
pub mod bundle;
pub mod cache;
pub mod env;
pub mod exec;
mod fast_path;
pub mod launch;
mod local_clones;
pub mod lock;
mod owner_call;
mod packages;
pub mod policy;
mod progress;
pub mod rc;
mod run_report;
mod run_start;
mod savings;
pub mod serve;
pub mod service;
pub mod status;
pub mod stop;
mod user_settings;
pub mod warm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cliconfig::{self, HostServices, Rendered, Tokens};
use crate::config::{self, Config};
use crate::protocol::Endpoint;
use crate::server::state_file;

/// A running server as its owner's commands know it: what it says of
/// itself at `/_tfmirror/health`, with what `server.json` adds, the secret
/// that makes this process its owner. Its calls to the server's own
/// endpoints are in `owner_call`.
#[derive(Debug, Clone)]
pub struct Health {
    /// The server's own answer; its `url` is the address without the
    /// secret, what may be shown.
    pub server: crate::protocol::Health,
    /// What every request of the owner's starts with: the address and the
    /// secret. Never printed, logged or written inside the cache.
    pub url: String,
    secret: Option<String>,
}

impl Health {
    /// Whether it is this build of tfmirror; another one may speak an older
    /// protocol or lay out the cache differently.
    pub fn is_current(&self) -> bool {
        self.server.version == env!("CARGO_PKG_VERSION")
    }

    /// A client for the owner's requests: it shows the secret as a bearer
    /// token, which whatever changes the cache needs.
    pub fn client(&self, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(secret) = &self.secret {
            let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {secret}"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(local_client_builder(timeout)
            .default_headers(headers)
            .build()?)
    }
}

/// The server recorded in `<cache>/server.json`, if it answers its health
/// check as the process recorded there, for this cache directory. A stale
/// file (dead process, a port reused by something else, another cache) is
/// not trusted.
pub async fn running_server(cache_dir: &Path) -> Option<Health> {
    let info = state_file::read(cache_dir)?;
    let client = local_client_builder(Some(Duration::from_secs(2)))
        .build()
        .ok()?;
    let base = info.base_url();
    let response = client
        .get(format!("{base}/{}", Endpoint::Health.path()))
        .send()
        .await
        .ok()?;
    let server: crate::protocol::Health =
        serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    let trusted = server.pid == info.pid && same_path(&server.cache_dir, cache_dir);
    trusted.then_some(Health {
        server,
        url: base,
        secret: info.secret,
    })
}

/// An HTTP client for the cache's own server, on loopback.
///
/// The certificate of a server with `--tls-cert` is for Terraform to check;
/// this client talks only to the address recorded in `server.json`, which
/// it trusts only after the health check has matched the pid and cache
/// dir.
fn local_client_builder(timeout: Option<Duration>) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// One git `url.<base>.insteadOf=<instead_of>` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRewrite {
    pub base: String,
    pub instead_of: String,
}

/// `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` that make git
/// fetch mirrored prefixes from tfmirror, and the `local` repositories from
/// their snapshots by path, appended after the entries already in the
/// environment (`existing` reads a variable) so the user's own stay in
/// force. git applies the longest matching `insteadOf`, so a whole
/// repository URL in `local` wins over the prefix it lies under.
///
/// The last entry sets an empty `http.<server>.proxy`, which turns proxies
/// off for tfmirror's own URLs: git (curl) sends loopback requests through
/// `http_proxy`/`ALL_PROXY` and the user's `http.proxy` otherwise, and a
/// corporate proxy cannot reach the user's 127.0.0.1.
pub fn git_config_env(
    config: &Config,
    url: &str,
    local: &[UrlRewrite],
    existing: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let start: usize = existing("GIT_CONFIG_COUNT")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let prefixes = config.git_mirror.iter().map(|prefix| UrlRewrite {
        base: prefix.proxy_prefix(url),
        instead_of: prefix.as_str().to_owned(),
    });
    let mut vars = Vec::new();
    let mut count = start;
    for rewrite in prefixes.chain(local.iter().cloned()) {
        vars.push((
            format!("GIT_CONFIG_KEY_{count}"),
            format!("url.{}.insteadOf", rewrite.base),
        ));
        vars.push((format!("GIT_CONFIG_VALUE_{count}"), rewrite.instead_of));
        count += 1;
    }
    if let Ok(server) = url::Url::parse(url) {
        let origin = server.origin().ascii_serialization();
        vars.push((
            format!("GIT_CONFIG_KEY_{count}"),
            format!("http.{origin}/.proxy"),
        ));
        vars.push((format!("GIT_CONFIG_VALUE_{count}"), String::new()));
        count += 1;
    }
    vars.push(("GIT_CONFIG_COUNT".to_owned(), count.to_string()));
    vars
}

/// The running server, or `None` after telling the user how to start one.
pub async fn require_server(cache_dir: &Path) -> Option<Health> {
    let server = running_server(cache_dir).await;
    if server.is_none() {
        eprintln!(
            "tfmirror: no server is running for the cache at {}; start one with \
             `tfmirror serve`, or install one that starts at login with `tfmirror service install`",
            cache_dir.display()
        );
    }
    server
}

/// The registry services tfmirror proxies on each host, in the order its
/// `host` blocks list them.
pub const PROXIED_SERVICES: [&str; 2] = ["providers.v1", "modules.v1"];

/// The `host` blocks that send each proxied registry to the server at `url`.
pub fn host_services(config: &Config, url: &str) -> Vec<HostServices> {
    config
        .registries
        .iter()
        .map(|host| HostServices {
            host: host.clone(),
            services: PROXIED_SERVICES
                .iter()
                .map(|service| {
                    let kind = service.trim_end_matches(".v1");
                    (service.to_string(), format!("{url}/v1/{kind}/{host}/"))
                })
                .collect(),
        })
        .collect()
}

/// The user's own `host` blocks for the registries tfmirror proxies, which
/// are then tfmirror's upstream for those hosts, as they were Terraform's:
/// the generated config replaces them with tfmirror's. An `[upstream]`
/// entry in tfmirror's config names where a host is really read from and
/// wins over the user's block. A block that lists none of the proxied
/// services changes nothing.
pub fn user_hosts(
    config: &Config,
    user: Option<&cliconfig::UserConfig>,
) -> Vec<cliconfig::UserHost> {
    let Some(user) = user else {
        return Vec::new();
    };
    config
        .registries
        .iter()
        .filter(|host| !config.upstream.contains_key(host.as_str()))
        .filter_map(|host| user.host_services(host, &PROXIED_SERVICES))
        .filter(|host| !host.services.is_empty())
        .collect()
}

/// [`user_hosts`] as the server takes them.
pub fn host_routes(hosts: &[cliconfig::UserHost]) -> Vec<crate::upstream::HostRoute> {
    hosts
        .iter()
        .map(|host| crate::upstream::HostRoute {
            host: host.host.clone(),
            services: host
                .services
                .iter()
                .map(|(service, url)| (service.clone(), url.to_string()))
                .collect(),
        })
        .collect()
}

/// The CLI config for the server at `url`, carrying along the user's own,
/// read as Terraform reads it (see [`user_cli_config`]).
pub fn render_cli_config(
    config: &Config,
    cache_dir: &Path,
    url: &str,
    tokens: Tokens,
) -> anyhow::Result<Rendered> {
    let user = user_cli_config(cache_dir, cliconfig::Program::Terraform)?;
    Ok(cliconfig::render(
        &host_services(config, url),
        user.as_ref(),
        tokens,
    ))
}

/// [`render_cli_config`] for one `exec`: without the user's
/// `plugin_cache_dir`, and with the fast path's tree if there is one.
pub fn render_exec_config(
    config: &Config,
    url: &str,
    mirror: Option<&cliconfig::FilesystemMirror>,
    user: Option<&cliconfig::UserConfig>,
) -> Rendered {
    cliconfig::render_exec(&host_services(config, url), mirror, user, Tokens::Keep)
}

/// [`render_cli_config`] for the server's network mirror instead of host
/// blocks.
pub fn render_network_mirror_config(
    cache_dir: &Path,
    url: &str,
    tokens: Tokens,
) -> anyhow::Result<Rendered> {
    let user = user_cli_config(cache_dir, cliconfig::Program::Terraform)?;
    let mirror = format!("{url}/providers/");
    Ok(cliconfig::render_network_mirror(
        &mirror,
        user.as_ref(),
        tokens,
    ))
}

/// The user's own CLI config for `program`, which the generated one
/// carries along. A variable that names the cache's own persistent config
/// (a shell set up by `tfmirror env`) is taken as unset, so the default
/// files are read and edits to `~/.terraformrc` keep reaching the
/// generated file.
pub fn user_cli_config(
    cache_dir: &Path,
    program: cliconfig::Program,
) -> anyhow::Result<Option<cliconfig::UserConfig>> {
    let own = [
        terraform_rc_path(cache_dir),
        legacy_terraform_rc_path(cache_dir),
    ];
    let env = |name: &str| {
        std::env::var_os(name).filter(|path| !own.iter().any(|own| same_path(Path::new(path), own)))
    };
    Ok(cliconfig::find_user_config(
        program,
        &env,
        config::home_dir().as_deref(),
    )?)
}

/// The CLI config of the cache's current server, rewritten whenever one
/// starts, so `TF_CLI_CONFIG_FILE` can name it once and for all. It carries
/// the user's registry credentials (Terraform reads no other file), so it
/// lives where the user's own settings do, never inside the cache
/// directory, which CI systems save and share:
/// `$XDG_RUNTIME_DIR/tfmirror/` (else the config directory), one file per
/// cache directory.
pub fn terraform_rc_path(cache_dir: &Path) -> PathBuf {
    let cache = cache_dir
        .canonicalize()
        .or_else(|_| std::path::absolute(cache_dir))
        .unwrap_or_else(|_| cache_dir.to_owned());
    let digest = Sha256::digest(cache.as_os_str().as_encoded_bytes());
    let name = format!("terraform-{}.rc", hex::encode(&digest[..8]));
    config::private_dir().join(name)
}

/// Where versions before 0.2 kept that file: inside the cache. A server
/// removes it as it starts.
pub fn legacy_terraform_rc_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(crate::store::layout::TERRAFORM_RC)
}

#[cfg(test)]
mod git_env_tests {
    use super::*;

    /// After the user's own entries and the rewrites, tfmirror's own URLs
    /// get an empty `http.<url>.proxy`: git then reaches the server
    /// directly, whatever proxy the environment names.
    #[test]
    fn git_reaches_tfmirror_without_a_proxy() {
        let config = Config::parse("[git]\nmirror = [\"https://git.corp/\"]\n").unwrap();
        let vars = git_config_env(&config, "http://127.0.0.1:4711/run/abcdef12", &[], |name| {
            (name == "GIT_CONFIG_COUNT").then(|| "1".to_owned())
        });
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("GIT_CONFIG_COUNT"), Some("3"));
        assert_eq!(get("GIT_CONFIG_VALUE_1"), Some("https://git.corp/"));
        assert_eq!(
            get("GIT_CONFIG_KEY_2"),
            Some("http.http://127.0.0.1:4711/.proxy")
        );
        assert_eq!(get("GIT_CONFIG_VALUE_2"), Some(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_with(rc: &str) -> (tempfile::TempDir, cliconfig::UserConfig) {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".terraformrc"), rc).unwrap();
        let user = cliconfig::find_user_config(
            cliconfig::Program::Terraform,
            &|_| None,
            Some(home.path()),
        )
        .unwrap()
        .unwrap();
        (home, user)
    }

    #[test]
    fn a_users_host_block_is_followed_unless_upstream_names_the_host() {
        let (_home, user) = user_with(
            "host \"registry.terraform.io\" {\n  services = { \"providers.v1\" = \"https://b.example/p/\" }\n}\n\
             host \"registry.opentofu.org\" {\n  services = { \"login.v1\" = \"https://b.example/l/\" }\n}\n",
        );
        let hosts = user_hosts(&Config::default(), Some(&user));
        let routes = host_routes(&hosts);
        assert_eq!(
            routes.len(),
            1,
            "a block with no proxied service changes nothing"
        );
        assert_eq!(routes[0].host, "registry.terraform.io");
        assert_eq!(
            routes[0].services.get("providers.v1").map(String::as_str),
            Some("https://b.example/p/")
        );
        let explicit =
            Config::parse("[upstream]\n\"registry.terraform.io\" = \"http://127.0.0.1:9/\"\n")
                .unwrap();
        assert_eq!(user_hosts(&explicit, Some(&user)), []);
        assert_eq!(user_hosts(&Config::default(), None), []);
    }
}
