//! Configuration: the TOML file, its defaults, and where the cache lives.
//!
//! Everything here is resolved once at start-up so that the rest of the code
//! works with plain values (durations, parsed URLs) and never re-reads the
//! environment.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

mod position;

pub use position::Position;

use crate::git::{InvalidMirrorPrefix, MirrorPrefix, RepoId};
use crate::listen_addr::ListenAddr;
use crate::sealed::{BadOfflineEnv, Sealed};

/// Registries routed through tfmirror when the config names none: the
/// default hosts of Terraform and OpenTofu.
pub const DEFAULT_REGISTRIES: [&str; 2] = ["registry.terraform.io", "registry.opentofu.org"];

#[derive(Debug, Clone)]
pub struct Config {
    /// How long version lists and other registry answers count as fresh.
    pub metadata_ttl: Duration,
    /// How long past `metadata_ttl` a stale answer is served while one
    /// background refresh runs.
    pub stale_while_revalidate: Duration,
    /// Registry hosts that get a `host` block in the generated CLI config.
    pub registries: Vec<String>,
    /// Where a host's service discovery is really read from, when it is not
    /// `https://<host>/`. Tests point this at a fake registry on loopback.
    pub upstream: BTreeMap<String, Url>,
    /// Git URL prefixes whose repositories are served from local mirrors;
    /// the server clones nothing else, whatever a client asks for.
    pub git_mirror: Vec<MirrorPrefix>,
    /// Where `tfmirror serve` listens when `--listen` is not given; the
    /// login service always uses a fixed address, [`DEFAULT_SERVICE_LISTEN`]
    /// unless this is set.
    pub listen: Option<ListenAddr>,
    /// The URL a team server's clients reach it by (`serve --public-url`).
    pub public_url: Option<Url>,
    /// How long a server that `exec` started in the background waits with
    /// no requests before it exits.
    pub idle_timeout: Duration,
    /// Garbage collection; the server collects at start and every
    /// `interval` when `unused_for` or `max_size` is set.
    pub gc: GcConfig,
    /// Whether `exec` of `init` may add this machine's `h1:` hash to a lock
    /// file that has only the zip's `zh:`: Terraform installs from the
    /// unpacked tree only against an `h1:`. When off, such providers go
    /// through the registry protocol and the lock file is left to Terraform.
    pub update_lock: bool,
    /// Connections served at once. Every connection holds a file
    /// descriptor; past the limit the server stops accepting instead of
    /// running out of descriptors, which fails every accept, health checks
    /// included. Lowered at start to fit the descriptor limit.
    pub max_connections: usize,
    /// How long a client has to send a complete request head, counted from
    /// when the connection starts waiting for a request: a new connection,
    /// or a kept-alive one after its last response. It closes slow-header
    /// and idle keep-alive connections alike.
    pub header_read_timeout: Duration,
    /// `git upload-pack` processes run at once; further fetches queue.
    /// Each one is a process with its own memory and CPU.
    pub git_max_processes: usize,
    /// How long one `git upload-pack` may run before it is killed, so a
    /// stuck process or a client that stops reading frees its slot.
    pub git_timeout: Duration,
    /// Caps on what one download may cost; see [`Limits`].
    pub limits: Limits,
    /// How long an upstream host that refused or stopped answering is left
    /// alone, its requests served from the cache at once, before one
    /// request tries it again.
    pub upstream_retry_after: Duration,
    /// The shared tier on object storage (`[shared]`), when configured.
    pub shared: Option<SharedConfig>,
    /// `[audit]`: where the log of upstream fetches goes, and its rotation.
    pub audit: crate::audit::AuditConfig,
    /// Sealed mode (`offline = true`, or `TFMIRROR_OFFLINE=1`): the server
    /// contacts no upstream and answers only from the cache (see
    /// [`crate::sealed`]). `None`: online.
    pub offline: Option<Sealed>,
    /// `[policy]`: what the server may fetch and serve (see
    /// [`crate::policy`]). `None`: everything, as without a policy.
    pub policy: Option<crate::policy::Policy>,
}

/// `[shared]`: a second cache tier in a bucket that a team or a CI fleet
/// shares (see `src/shared/`). Credentials are not here: each cloud's are
/// read the standard way (`AWS_*`, `GOOGLE_*`, `AZURE_*`), and the keys
/// below override the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// `s3://bucket/prefix`, `gs://...`, `az://...` or `file:///abs/path`.
    pub url: Url,
    /// An S3-compatible store's endpoint (Garage, MinIO, Ceph).
    pub endpoint: Option<Url>,
    pub region: Option<String>,
    /// Whether plain `http://` endpoints are allowed (a store on loopback).
    pub allow_http: bool,
    /// How long one request to the bucket may take before it counts as
    /// failed, and how long a transfer may go without a byte.
    pub timeout: Duration,
    /// Whether this machine writes to the bucket; a read-only runner sets
    /// `upload = false`.
    pub upload: bool,
}

/// The schemes `[shared] url` accepts.
pub const SHARED_SCHEMES: [&str; 4] = ["s3", "gs", "az", "file"];

/// Caps on one download, so a hostile or broken upstream cannot fill the
/// disk, the memory or a per-package lock. Each cap is a config key that
/// its error message names, so a user with a legitimately larger package
/// knows what to raise.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `max_provider_package_size`: bytes of one provider zip.
    pub provider_package_size: u64,
    /// `max_module_archive_size`: bytes of one module archive as downloaded.
    pub module_archive_size: u64,
    /// `max_module_unpacked_size`: bytes of a module archive once unpacked;
    /// a small archive may unpack to a huge one.
    pub module_unpacked_size: u64,
    /// `max_module_archive_entries`: files, directories and links in one
    /// module archive.
    pub module_archive_entries: u64,
    /// `download_stall_timeout`: a download that sends no byte for this
    /// long is given up, and the requests waiting for it are released.
    pub download_stall: Duration,
    /// `max_metadata_size`: bytes of one registry answer (a version list,
    /// a download answer) or checksum file, which is read whole.
    pub metadata_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            provider_package_size: 2_000_000_000,
            module_archive_size: 1_000_000_000,
            module_unpacked_size: 1_000_000_000,
            module_archive_entries: 100_000,
            download_stall: Duration::from_secs(60),
            metadata_size: 32 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GcConfig {
    /// Artifacts unused this long are removed (`tfmirror cache gc`
    /// defaults to 30 days when this is unset).
    pub unused_for: Option<Duration>,
    /// The cache is shrunk to this many bytes.
    pub max_size: Option<u64>,
    /// Nothing stored or used more recently than this is removed.
    pub min_age: Duration,
    pub interval: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            unused_for: None,
            max_size: None,
            min_age: Duration::from_secs(12 * 3600),
            interval: Duration::from_secs(24 * 3600),
        }
    }
}

impl GcConfig {
    /// Whether the server collects by itself.
    pub fn is_automatic(&self) -> bool {
        self.unused_for.is_some() || self.max_size.is_some()
    }
}

/// The login service's address: fixed, so the exports `tfmirror env`
/// prints stay valid across restarts.
pub const DEFAULT_SERVICE_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 7878);

/// Git hosts mirrored when the config names none.
pub const DEFAULT_GIT_MIRROR: [&str; 3] = [
    "https://github.com/",
    "https://gitlab.com/",
    "https://bitbucket.org/",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            metadata_ttl: Duration::from_secs(3600),
            stale_while_revalidate: Duration::from_secs(168 * 3600),
            registries: DEFAULT_REGISTRIES.iter().map(|h| h.to_string()).collect(),
            upstream: BTreeMap::new(),
            git_mirror: DEFAULT_GIT_MIRROR
                .iter()
                .map(|p| p.parse().expect("the default git prefixes are valid"))
                .collect(),
            listen: None,
            public_url: None,
            idle_timeout: Duration::from_secs(15 * 60),
            gc: GcConfig::default(),
            update_lock: true,
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            git_max_processes: default_git_processes(),
            git_timeout: Duration::from_secs(10 * 60),
            limits: Limits::default(),
            upstream_retry_after: crate::upstream::DEFAULT_RETRY_AFTER,
            shared: None,
            audit: crate::audit::AuditConfig::default(),
            offline: None,
            policy: None,
        }
    }
}

/// Two `git upload-pack` per CPU: a pack is mostly compression, and a
/// fetch also waits on the client.
fn default_git_processes() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// The file as written by the user; every key is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    metadata_ttl: Option<String>,
    stale_while_revalidate: Option<String>,
    registries: Option<Vec<String>>,
    #[serde(default)]
    upstream: BTreeMap<String, String>,
    git: Option<GitSection>,
    listen: Option<String>,
    public_url: Option<String>,
    idle_timeout: Option<String>,
    gc_unused_for: Option<String>,
    gc_max_size: Option<String>,
    gc_min_age: Option<String>,
    gc_interval: Option<String>,
    update_lock: Option<bool>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    git_max_processes: Option<usize>,
    git_timeout: Option<String>,
    max_provider_package_size: Option<String>,
    max_module_archive_size: Option<String>,
    max_module_unpacked_size: Option<String>,
    max_module_archive_entries: Option<u64>,
    download_stall_timeout: Option<String>,
    max_metadata_size: Option<String>,
    upstream_retry_after: Option<String>,
    /// Read as any value, so that a refusal names the key (serde's own
    /// type error does not).
    offline: Option<toml::Value>,
    shared: Option<SharedSection>,
    policy: Option<crate::policy::PolicySection>,
    audit: Option<AuditSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedSection {
    url: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    allow_http: Option<bool>,
    timeout: Option<String>,
    upload: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    path: Option<String>,
    max_size: Option<String>,
    keep: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitSection {
    mirror: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `invalid config /path/config.toml:12:5: listen = ...`: the file,
    /// and the line and column of what is refused, as compilers say it.
    #[error("invalid config {}{}: {source}", path.display(), position.map(|p| format!(":{p}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        position: Option<Position>,
        source: Box<InvalidConfig>,
    },
    #[error("{0}")]
    OfflineEnv(#[from] BadOfflineEnv),
}

/// What is wrong in a config file's text. Each message names the key to
/// fix, so the user need not guess which line was refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    /// Not TOML, or a key tfmirror does not know. Only the parser's message
    /// is shown: its `Display` adds a source excerpt across several lines.
    #[error("{}", .0.message())]
    Toml(toml::de::Error),
    /// The common case: `key = "value"` and why that value is refused.
    #[error("{key} = {value:?}: {why}")]
    BadValue {
        key: &'static str,
        value: String,
        #[source]
        why: Why,
    },
    /// A count of zero, which would stop the server serving anything.
    #[error("{key} = 0: must be at least 1")]
    NoneAllowed { key: &'static str },
    #[error("{0:?} is not a registry hostname")]
    NotAHostname(String),
    #[error("upstream for {host}: {base:?} is not a URL: {source}")]
    UpstreamNotAUrl {
        host: String,
        base: String,
        source: url::ParseError,
    },
    #[error("upstream for {host}: {base:?} must be http or https")]
    UpstreamNotHttp { host: String, base: String },
    #[error("[git] mirror: {0}")]
    BadMirrorPrefix(#[source] InvalidMirrorPrefix),
    #[error("[shared] url is required (e.g. \"s3://bucket/prefix\")")]
    SharedUrlMissing,
    #[error("{0}")]
    Policy(#[from] crate::policy::BadPolicy),
}

/// Why [`InvalidConfig::BadValue`] refused a value.
#[derive(Debug, thiserror::Error)]
pub enum Why {
    #[error("{0}")]
    Duration(#[source] humantime::DurationError),
    #[error("{0}")]
    Size(#[source] BadSize),
    #[error("must be above zero")]
    Zero,
    #[error("must be an absolute path, or \"-\" for stderr")]
    NotAbsolute,
    #[error("expected true or false")]
    NotABool,
    #[error(
        "at least {} (a collection walks the whole cache)",
        humantime::format_duration(MIN_GC_INTERVAL)
    )]
    GcTooOften,
    #[error("{0} (expected e.g. \"127.0.0.1:7878\")")]
    Listen(#[source] std::net::AddrParseError),
    #[error("{0} (expected e.g. \"https://tfmirror.example.com:8443\")")]
    PublicUrl(#[source] url::ParseError),
    #[error("{0}")]
    Url(#[source] url::ParseError),
    #[error("must be http or https")]
    NotHttp,
    #[error("expected s3://, gs://, az:// or file://")]
    SharedScheme,
    #[error("expected <scheme>://<bucket>/<prefix>, without credentials or a query")]
    SharedLocation,
    #[error("expected file:///absolute/directory")]
    SharedDirectory,
}

/// Why a size (`10GB`, `500MiB`) was not read; also what `--max-size`
/// reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSize {
    #[error("expected a size such as 10GB or 500MiB")]
    NotANumber,
    #[error("unknown size unit {0:?}")]
    UnknownUnit(String),
}

impl InvalidConfig {
    fn bad_value(key: &'static str, value: &str, why: Why) -> Self {
        InvalidConfig::BadValue {
            key,
            value: value.to_owned(),
            why,
        }
    }
}

impl Config {
    /// Loads the config file that applies (see [`config_file`]), or the
    /// defaults when there is none; also returns that file's path.
    /// `TFMIRROR_OFFLINE` seals the server whatever the file says.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = config_file(explicit);
        let mut config = match &path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let env = std::env::var(crate::sealed::OFFLINE_ENV).ok();
        if let Some(sealed) = crate::sealed::from_env_value(env.as_deref())? {
            config.offline = Some(sealed);
        }
        Ok((config, path))
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_text(path, &text)
    }

    /// The config in `text`, read from `path`: what [`Config::from_file`]
    /// makes of it, for a caller that read the file itself (the server's
    /// live `[policy]`, which hashes the same bytes).
    pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut config = Config::parse(text).map_err(|source| ConfigError::Invalid {
            path: path.to_owned(),
            position: Position::of(&source, text),
            source: Box::new(source),
        })?;
        // So that a refusal says which file to edit.
        if let Some(Sealed::ConfigKey(file)) = &mut config.offline {
            *file = Some(path.to_owned());
        }
        if let Some(policy) = &mut config.policy {
            policy.file = Some(path.to_owned());
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, InvalidConfig> {
        let file: ConfigFile = toml::from_str(text).map_err(InvalidConfig::Toml)?;
        let mut config = Config {
            limits: parse_limits(&file)?,
            ..Config::default()
        };
        if let Some(ttl) = file.metadata_ttl {
            config.metadata_ttl = parse_duration("metadata_ttl", &ttl)?;
        }
        if let Some(swr) = file.stale_while_revalidate {
            config.stale_while_revalidate = parse_duration("stale_while_revalidate", &swr)?;
        }
        if let Some(registries) = file.registries {
            config.registries = registries
                .into_iter()
                .map(|h| normalize_host(&h))
                .collect::<Result<_, _>>()?;
        }
        if let Some(listen) = file.listen {
            config.listen = Some(
                listen
                    .parse()
                    .map_err(|e| InvalidConfig::bad_value("listen", &listen, Why::Listen(e)))?,
            );
        }
        if let Some(public) = file.public_url {
            config.public_url =
                Some(Url::parse(&public).map_err(|e| {
                    InvalidConfig::bad_value("public_url", &public, Why::PublicUrl(e))
                })?);
        }
        if let Some(idle) = file.idle_timeout {
            config.idle_timeout = parse_duration("idle_timeout", &idle)?;
        }
        if let Some(value) = file.gc_unused_for {
            config.gc.unused_for = Some(parse_duration("gc_unused_for", &value)?);
        }
        if let Some(value) = file.gc_max_size {
            config.gc.max_size = Some(parse_size_key("gc_max_size", &value)?);
        }
        if let Some(value) = file.gc_min_age {
            config.gc.min_age = parse_duration("gc_min_age", &value)?;
        }
        if let Some(value) = file.gc_interval {
            config.gc.interval = parse_duration("gc_interval", &value)?;
            if config.gc.interval < MIN_GC_INTERVAL {
                return Err(InvalidConfig::bad_value(
                    "gc_interval",
                    &value,
                    Why::GcTooOften,
                ));
            }
        }
        if let Some(update_lock) = file.update_lock {
            config.update_lock = update_lock;
        }
        if let Some(value) = file.max_connections {
            config.max_connections = at_least_one("max_connections", value)?;
        }
        if let Some(value) = file.header_read_timeout {
            config.header_read_timeout = parse_duration("header_read_timeout", &value)?;
        }
        if let Some(value) = file.git_max_processes {
            config.git_max_processes = at_least_one("git_max_processes", value)?;
        }
        if let Some(value) = &file.upstream_retry_after {
            let period = parse_duration("upstream_retry_after", value)?;
            if period.is_zero() {
                return Err(InvalidConfig::bad_value(
                    "upstream_retry_after",
                    value,
                    Why::Zero,
                ));
            }
            config.upstream_retry_after = period;
        }
        if let Some(value) = file.git_timeout {
            config.git_timeout = parse_duration("git_timeout", &value)?;
        }
        if let Some(mirror) = file.git.and_then(|git| git.mirror) {
            config.git_mirror = mirror
                .iter()
                .map(|prefix| prefix.parse())
                .collect::<Result<_, InvalidMirrorPrefix>>()
                .map_err(InvalidConfig::BadMirrorPrefix)?;
        }
        if let Some(value) = &file.offline {
            if parse_bool("offline", value)? {
                config.offline = Some(Sealed::ConfigKey(None));
            }
        }
        if let Some(section) = file.audit {
            config.audit = parse_audit(section)?;
        }
        if let Some(section) = file.shared {
            config.shared = Some(parse_shared(section)?);
        }
        config.policy = file.policy.map(|section| section.parse()).transpose()?;
        for (host, base) in file.upstream {
            let host = normalize_host(&host)?;
            let url = parse_upstream(&host, &base)?;
            config.upstream.insert(host, url);
        }
        Ok(config)
    }

    /// Where the discovery document of `host` is read from.
    pub fn discovery_url(&self, host: &str) -> Url {
        let base = match self.upstream.get(host) {
            Some(url) => url.clone(),
            None => Url::parse(&format!("https://{host}/")).expect("validated host"),
        };
        base.join(".well-known/terraform.json")
            .expect("a base URL ending in / joins a relative path")
    }

    /// The freshness rules for registry metadata.
    pub fn metadata_freshness(&self) -> crate::store::Freshness {
        crate::store::Freshness::within(Some(self.metadata_ttl), self.stale_while_revalidate)
    }

    /// Whether a git repository is under one of the mirrored prefixes.
    pub fn is_git_mirrored(&self, repo: &RepoId) -> bool {
        self.git_mirror.iter().any(|prefix| prefix.matches(repo))
    }

    pub fn is_proxied(&self, host: &str) -> bool {
        self.registries.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// `[audit]`: `path` is `-` (stderr) or an absolute path; the server's
/// working directory is nobody's business.
fn parse_audit(section: AuditSection) -> Result<crate::audit::AuditConfig, InvalidConfig> {
    use crate::audit::{AuditConfig, AuditTarget};
    let mut audit = AuditConfig::default();
    if let Some(path) = section.path {
        audit.path = Some(match path.as_str() {
            "-" => AuditTarget::Stderr,
            file if Path::new(file).is_absolute() => AuditTarget::File(PathBuf::from(file)),
            _ => {
                return Err(InvalidConfig::bad_value(
                    "[audit] path",
                    &path,
                    Why::NotAbsolute,
                ))
            }
        });
    }
    if let Some(value) = section.max_size {
        audit.max_size = parse_size_key("[audit] max_size", &value)?;
        if audit.max_size == 0 {
            return Err(InvalidConfig::bad_value(
                "[audit] max_size",
                &value,
                Why::Zero,
            ));
        }
    }
    if let Some(keep) = section.keep {
        audit.keep = keep;
    }
    Ok(audit)
}

/// `[shared]`: `url` is required and names a supported store; each error
/// names its key.
fn parse_shared(section: SharedSection) -> Result<SharedConfig, InvalidConfig> {
    const URL: &str = "[shared] url";
    let text = section.url.ok_or(InvalidConfig::SharedUrlMissing)?;
    let url = Url::parse(&text).map_err(|e| InvalidConfig::bad_value(URL, &text, Why::Url(e)))?;
    if !SHARED_SCHEMES.contains(&url.scheme()) {
        return Err(InvalidConfig::bad_value(URL, &text, Why::SharedScheme));
    }
    let no_bucket = url.scheme() != "file" && url.host_str().is_none_or(str::is_empty);
    let credentials =
        !url.username().is_empty() || url.password().is_some() || url.query().is_some();
    if no_bucket || credentials || url.fragment().is_some() {
        return Err(InvalidConfig::bad_value(URL, &text, Why::SharedLocation));
    }
    if url.scheme() == "file"
        && (url.host_str().is_some_and(|h| !h.is_empty()) || url.path() == "/")
    {
        return Err(InvalidConfig::bad_value(URL, &text, Why::SharedDirectory));
    }
    const ENDPOINT: &str = "[shared] endpoint";
    let endpoint = section
        .endpoint
        .map(|e| match Url::parse(&e) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
            Ok(_) => Err(InvalidConfig::bad_value(ENDPOINT, &e, Why::NotHttp)),
            Err(err) => Err(InvalidConfig::bad_value(ENDPOINT, &e, Why::Url(err))),
        })
        .transpose()?;
    let timeout = match section.timeout {
        Some(value) => {
            const TIMEOUT: &str = "[shared] timeout";
            let timeout = parse_duration(TIMEOUT, &value)?;
            if timeout.is_zero() {
                return Err(InvalidConfig::bad_value(TIMEOUT, &value, Why::Zero));
            }
            timeout
        }
        None => DEFAULT_SHARED_TIMEOUT,
    };
    Ok(SharedConfig {
        url,
        endpoint,
        region: section.region,
        allow_http: section.allow_http.unwrap_or(false),
        timeout,
        upload: section.upload.unwrap_or(true),
    })
}

/// `[shared] timeout` when unset.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest `gc_interval`: a shorter one, `0s` above all, would have
/// the server walk the cache without pause.
const MIN_GC_INTERVAL: Duration = Duration::from_secs(60);

/// The download caps: each key, when set, must be above zero, since a cap
/// of nothing would refuse every download.
fn parse_limits(file: &ConfigFile) -> Result<Limits, InvalidConfig> {
    let mut limits = Limits::default();
    let sizes = [
        (
            "max_provider_package_size",
            &file.max_provider_package_size,
            &mut limits.provider_package_size,
        ),
        (
            "max_module_archive_size",
            &file.max_module_archive_size,
            &mut limits.module_archive_size,
        ),
        (
            "max_module_unpacked_size",
            &file.max_module_unpacked_size,
            &mut limits.module_unpacked_size,
        ),
        (
            "max_metadata_size",
            &file.max_metadata_size,
            &mut limits.metadata_size,
        ),
    ];
    for (key, value, limit) in sizes {
        if let Some(value) = value {
            *limit = positive(key, value, parse_size_key(key, value)?)?;
        }
    }
    if let Some(entries) = file.max_module_archive_entries {
        limits.module_archive_entries =
            positive("max_module_archive_entries", &entries.to_string(), entries)?;
    }
    if let Some(value) = &file.download_stall_timeout {
        let stall = parse_duration("download_stall_timeout", value)?;
        if stall.is_zero() {
            return Err(InvalidConfig::bad_value(
                "download_stall_timeout",
                value,
                Why::Zero,
            ));
        }
        limits.download_stall = stall;
    }
    Ok(limits)
}

/// `true` or `false`, else refused with the key named.
fn parse_bool(key: &'static str, value: &toml::Value) -> Result<bool, InvalidConfig> {
    value.as_bool().ok_or_else(|| {
        let text = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        InvalidConfig::bad_value(key, &text, Why::NotABool)
    })
}

fn positive(key: &'static str, text: &str, value: u64) -> Result<u64, InvalidConfig> {
    if value == 0 {
        return Err(InvalidConfig::bad_value(key, text, Why::Zero));
    }
    Ok(value)
}

fn parse_size_key(key: &'static str, value: &str) -> Result<u64, InvalidConfig> {
    parse_size(value).map_err(|e| InvalidConfig::bad_value(key, value, Why::Size(e)))
}

fn parse_duration(key: &'static str, value: &str) -> Result<Duration, InvalidConfig> {
    humantime::parse_duration(value)
        .map_err(|e| InvalidConfig::bad_value(key, value, Why::Duration(e)))
}

/// A limit of zero would stop the server serving anything at all.
fn at_least_one(key: &'static str, value: usize) -> Result<usize, InvalidConfig> {
    if value == 0 {
        Err(InvalidConfig::NoneAllowed { key })
    } else {
        Ok(value)
    }
}

/// `10GB`, `500 MiB`, `1.5G`, `123` (bytes): decimal units for `kB`/`MB`/
/// `GB`/`TB` and their one-letter forms, binary for `KiB`/`MiB`/`GiB`/`TiB`.
pub fn parse_size(text: &str) -> Result<u64, BadSize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| BadSize::NotANumber)?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(BadSize::UnknownUnit(other.to_owned())),
    };
    Ok((number * factor as f64) as u64)
}

/// Registry hostnames are case-insensitive; keep one spelling so cache keys
/// and config lookups agree.
fn normalize_host(host: &str) -> Result<String, InvalidConfig> {
    let lower = host.trim().to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= 253
        && lower
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !lower.starts_with(['.', '-']);
    if valid {
        Ok(lower)
    } else {
        Err(InvalidConfig::NotAHostname(host.to_owned()))
    }
}

/// An upstream base must be http(s) and end in `/` so that relative paths
/// join below it rather than replacing its last segment.
fn parse_upstream(host: &str, base: &str) -> Result<Url, InvalidConfig> {
    let mut url = Url::parse(base).map_err(|source| InvalidConfig::UpstreamNotAUrl {
        host: host.to_owned(),
        base: base.to_owned(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(InvalidConfig::UpstreamNotHttp {
            host: host.to_owned(),
            base: base.to_owned(),
        });
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The cache directory: `--cache-dir`, else `TFMIRROR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/tfmirror`, else `~/.cache/tfmirror`.
pub fn cache_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    if let Some(dir) = non_empty_env("TFMIRROR_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(xdg) = non_empty_env("XDG_CACHE_HOME") {
        return Ok(xdg.join("tfmirror"));
    }
    match home_dir() {
        Some(home) => Ok(home.join(".cache").join("tfmirror")),
        None => anyhow::bail!(
            "cannot find a cache directory: set --cache-dir, TFMIRROR_CACHE_DIR or HOME"
        ),
    }
}

/// The config file: `--config`, else `TFMIRROR_CONFIG`, else
/// `$XDG_CONFIG_HOME/tfmirror/config.toml` (or `~/.config/...`) if present.
pub fn config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    if let Some(path) = non_empty_env("TFMIRROR_CONFIG") {
        return Some(path);
    }
    let config_home =
        non_empty_env("XDG_CONFIG_HOME").or_else(|| home_dir().map(|h| h.join(".config")))?;
    let path = config_home.join("tfmirror").join("config.toml");
    path.is_file().then_some(path)
}

/// tfmirror's own files that hold secrets and belong to this user alone:
/// `$XDG_RUNTIME_DIR/tfmirror` (a tmpfs only the user can enter), else
/// `$XDG_CONFIG_HOME/tfmirror` (or `~/.config/tfmirror`), else the
/// system's temporary directory.
pub fn private_dir() -> PathBuf {
    let base = non_empty_env("XDG_RUNTIME_DIR")
        .or_else(|| non_empty_env("XDG_CONFIG_HOME"))
        .or_else(|| home_dir().map(|home| home.join(".config")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tfmirror")
}

pub fn home_dir() -> Option<PathBuf> {
    non_empty_env("HOME")
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message a user sees for a config text that is refused.
    fn refused(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.metadata_ttl, Duration::from_secs(3600));
        assert_eq!(
            config.stale_while_revalidate,
            Duration::from_secs(168 * 3600)
        );
        assert_eq!(config.registries, DEFAULT_REGISTRIES);
        assert!(config.update_lock);
    }

    #[test]
    fn reads_every_key() {
        let config = Config::parse(
            r#"
            metadata_ttl = "5m"
            stale_while_revalidate = "2h"
            registries = ["Registry.Terraform.io"]
            listen = "127.0.0.1:9999"
            idle_timeout = "90s"
            update_lock = false
            max_connections = 100
            header_read_timeout = "2s"
            git_max_processes = 3
            git_timeout = "1m"
            max_provider_package_size = "3GB"
            max_module_archive_size = "200MB"
            max_module_unpacked_size = "2GiB"
            max_module_archive_entries = 5000
            download_stall_timeout = "90s"
            max_metadata_size = "64MiB"
            upstream_retry_after = "5s"
            [upstream]
            "registry.terraform.io" = "http://127.0.0.1:9000"
            "#,
        )
        .unwrap();
        assert_eq!(config.metadata_ttl, Duration::from_secs(300));
        assert_eq!(config.registries, ["registry.terraform.io"]);
        assert_eq!(config.listen, Some("127.0.0.1:9999".parse().unwrap()));
        let named = Config::parse("listen = \"localhost:8443\"").unwrap();
        assert_eq!(named.listen, Some("localhost:8443".parse().unwrap()));
        assert_eq!(config.idle_timeout, Duration::from_secs(90));
        assert_eq!(config.upstream_retry_after, Duration::from_secs(5));
        assert!(!config.update_lock);
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.git_max_processes, 3);
        assert_eq!(config.git_timeout, Duration::from_secs(60));
        let limits = &config.limits;
        assert_eq!(limits.provider_package_size, 3_000_000_000);
        assert_eq!(limits.module_archive_size, 200_000_000);
        assert_eq!(limits.module_unpacked_size, 2 << 30);
        assert_eq!(limits.module_archive_entries, 5000);
        assert_eq!(limits.download_stall, Duration::from_secs(90));
        assert_eq!(limits.metadata_size, 64 << 20);
        assert_eq!(
            config.discovery_url("registry.terraform.io").as_str(),
            "http://127.0.0.1:9000/.well-known/terraform.json"
        );
        assert_eq!(
            config.discovery_url("registry.opentofu.org").as_str(),
            "https://registry.opentofu.org/.well-known/terraform.json"
        );
    }

    #[test]
    fn download_caps_default_to_the_issue_s_sizes_and_refuse_zero() {
        let limits = Config::parse("").unwrap().limits;
        assert_eq!(limits.provider_package_size, 2_000_000_000);
        assert_eq!(limits.module_unpacked_size, 1_000_000_000);
        assert_eq!(limits.module_archive_entries, 100_000);
        assert_eq!(limits.download_stall, Duration::from_secs(60));
        let err = refused("max_module_unpacked_size = \"0\"");
        assert_eq!(err, "max_module_unpacked_size = \"0\": must be above zero");
        let err = refused("download_stall_timeout = \"0s\"");
        assert!(err.starts_with("download_stall_timeout"), "{err}");
        let err = refused("max_provider_package_size = \"lots\"");
        assert!(err.starts_with("max_provider_package_size"), "{err}");
    }

    #[test]
    fn a_size_as_shown_reads_back_as_a_config_size() {
        use crate::human_size::human_bytes;
        for (bytes, shown) in [
            (1_000_000_000, 1_000_000_000),
            (50_000_000, 50_000_000),
            (52_428_800, 52_000_000),
            (4_000, 4_000),
            (999, 999),
        ] {
            assert_eq!(parse_size(&human_bytes(bytes)), Ok(shown), "{bytes}");
        }
    }

    #[test]
    fn a_gc_interval_under_a_minute_is_refused() {
        let message = refused("gc_interval = \"0s\"");
        assert_eq!(
            message,
            "gc_interval = \"0s\": at least 1m (a collection walks the whole cache)"
        );
        assert!(Config::parse("gc_interval = \"59s\"").is_err());
        let config = Config::parse("gc_interval = \"1m\"").unwrap();
        assert_eq!(config.gc.interval, Duration::from_secs(60));
    }

    #[test]
    fn reads_sizes() {
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("500 MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5g"), Ok(1_500_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("ten"), Err(BadSize::NotANumber));
        assert_eq!(parse_size("10XB"), Err(BadSize::UnknownUnit("xb".into())));
        let config = Config::parse("gc_max_size = \"2GB\"\ngc_unused_for = \"7d\"").unwrap();
        assert_eq!(config.gc.max_size, Some(2_000_000_000));
        assert!(config.gc.is_automatic());
    }

    #[test]
    fn rejects_bad_values_with_the_key_named() {
        let err = refused(r#"metadata_ttl = "soon""#);
        assert!(err.contains("metadata_ttl"), "{err}");
        let err = refused(r#"registries = ["../etc"]"#);
        assert!(err.contains("not a registry hostname"), "{err}");
        let err = refused("[upstream]\n\"a.b\" = \"ftp://x/\"");
        assert!(err.contains("http or https"), "{err}");
        let err = refused(r#"listen = "localhost""#);
        assert!(err.contains("listen"), "{err}");
        let err = refused("max_connections = 0");
        assert!(err.contains("max_connections"), "{err}");
        let err = refused("metdata_ttl = \"1h\"");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn reads_the_audit_section() {
        use crate::audit::{AuditConfig, AuditTarget};
        let config = Config::parse(
            "[audit]\npath = \"/var/log/tfmirror.jsonl\"\nmax_size = \"1MB\"\nkeep = 2\n",
        )
        .unwrap();
        assert_eq!(
            config.audit,
            AuditConfig {
                path: Some(AuditTarget::File("/var/log/tfmirror.jsonl".into())),
                max_size: 1_000_000,
                keep: 2,
            }
        );
        let stderr = Config::parse("[audit]\npath = \"-\"\n").unwrap();
        assert_eq!(stderr.audit.path, Some(AuditTarget::Stderr));
        assert_eq!(Config::parse("").unwrap().audit, AuditConfig::default());
        let relative = refused("[audit]\npath = \"audit.jsonl\"\n");
        assert!(relative.contains("[audit] path"), "{relative}");
        assert!(relative.contains("absolute"), "{relative}");
        let zero = refused("[audit]\nmax_size = \"0\"\n");
        assert!(zero.contains("[audit] max_size"), "{zero}");
    }

    #[test]
    fn reads_the_shared_section() {
        assert_eq!(Config::parse("").unwrap().shared, None);
        let config = Config::parse(
            "[shared]\nurl = \"s3://team-cache/tfmirror\"\nendpoint = \"http://127.0.0.1:3900\"\n\
             region = \"garage\"\nallow_http = true\ntimeout = \"3s\"\nupload = false",
        )
        .unwrap();
        let shared = config.shared.unwrap();
        assert_eq!(shared.url.as_str(), "s3://team-cache/tfmirror");
        assert_eq!(shared.endpoint.unwrap().as_str(), "http://127.0.0.1:3900/");
        assert_eq!(shared.region.as_deref(), Some("garage"));
        assert!(shared.allow_http);
        assert_eq!(shared.timeout, Duration::from_secs(3));
        assert!(!shared.upload);
        let defaults = Config::parse("[shared]\nurl = \"file:///srv/cache\"").unwrap();
        let shared = defaults.shared.unwrap();
        assert_eq!(shared.timeout, DEFAULT_SHARED_TIMEOUT);
        assert!(shared.upload && !shared.allow_http && shared.endpoint.is_none());
    }

    #[test]
    fn a_bad_shared_section_is_refused_with_the_key_named() {
        let cases = [
            ("", "[shared] url is required"),
            (
                "url = \"ftp://b/p\"",
                "[shared] url = \"ftp://b/p\": expected s3://",
            ),
            (
                "url = \"bucket/prefix\"",
                "[shared] url = \"bucket/prefix\"",
            ),
            (
                "url = \"s3:///prefix\"",
                "expected <scheme>://<bucket>/<prefix>",
            ),
            ("url = \"s3://key:secret@b/p\"", "without credentials"),
            ("url = \"az://c/p?sig=secret\"", "without credentials"),
            ("url = \"file:///\"", "expected file:///absolute/directory"),
            (
                "url = \"s3://b\"\nendpoint = \"ftp://x\"",
                "[shared] endpoint",
            ),
            ("url = \"s3://b\"\ntimeout = \"soon\"", "[shared] timeout"),
            ("url = \"s3://b\"\ntimeout = \"0s\"", "must be above zero"),
            ("url = \"s3://b\"\nbucket = \"x\"", "unknown field"),
        ];
        for (section, expected) in cases {
            let err = refused(&format!("[shared]\n{section}"));
            assert!(err.contains(expected), "{section}: {err}");
        }
    }

    #[test]
    fn git_mirror_prefixes_are_parsed_and_matched_by_parts() {
        let defaults = Config::parse("").unwrap();
        let github = RepoId::from_url("https://github.com/org/infra.git").unwrap();
        assert!(defaults.is_git_mirrored(&github));
        let config = Config::parse("[git]\nmirror = [\"https://git.example.org/team\"]").unwrap();
        assert!(!config.is_git_mirrored(&github));
        let ours = RepoId::from_url("https://git.example.org/team/infra.git").unwrap();
        let theirs = RepoId::from_url("https://git.example.org/team-evil/infra.git").unwrap();
        assert!(config.is_git_mirrored(&ours));
        assert!(!config.is_git_mirrored(&theirs));
    }

    #[test]
    fn a_git_mirror_that_is_no_url_prefix_is_refused_with_the_key_named() {
        let err = refused("[git]\nmirror = [\"https://github.com/\", \"\"]");
        assert!(
            err.starts_with(r#"[git] mirror: "" is not a git URL prefix"#)
                && err.ends_with(r#"(expected e.g. "https://github.com/" or "git@github.com:")"#),
            "{err}"
        );
        let err = refused("[git]\nmirror = [\"github.com\"]");
        assert!(err.starts_with(r#"[git] mirror: "github.com""#), "{err}");
    }

    /// Every refusal, word for word as users (and scripts grepping for
    /// them) have seen it; a library's own part is taken from the library.
    fn pinned_refusals() -> Vec<(String, String)> {
        let duration = humantime::parse_duration("soon").unwrap_err();
        let address = "localhost".parse::<SocketAddr>().unwrap_err();
        let no_base = Url::parse("nope").unwrap_err();
        vec![
            (
                r#"metadata_ttl = "soon""#.to_owned(),
                format!(r#"metadata_ttl = "soon": {duration}"#),
            ),
            (
                r#"gc_max_size = "ten""#.into(),
                r#"gc_max_size = "ten": expected a size such as 10GB or 500MiB"#.into(),
            ),
            (
                r#"max_metadata_size = "10XB""#.into(),
                r#"max_metadata_size = "10XB": unknown size unit "xb""#.into(),
            ),
            (
                "max_module_archive_entries = 0".into(),
                r#"max_module_archive_entries = "0": must be above zero"#.into(),
            ),
            (
                r#"upstream_retry_after = "0s""#.into(),
                r#"upstream_retry_after = "0s": must be above zero"#.into(),
            ),
            (
                r#"listen = "localhost""#.into(),
                format!(r#"listen = "localhost": {address} (expected e.g. "127.0.0.1:7878")"#),
            ),
            (
                r#"public_url = "nope""#.into(),
                format!(
                    r#"public_url = "nope": {no_base} (expected e.g. "https://tfmirror.example.com:8443")"#
                ),
            ),
            (
                "git_max_processes = 0".into(),
                "git_max_processes = 0: must be at least 1".into(),
            ),
            (
                r#"registries = ["../etc"]"#.into(),
                r#""../etc" is not a registry hostname"#.into(),
            ),
            (
                "[upstream]\n\"-bad\" = \"http://x/\"".into(),
                r#""-bad" is not a registry hostname"#.into(),
            ),
            (
                "[upstream]\n\"A.b\" = \"nope\"".into(),
                format!(r#"upstream for a.b: "nope" is not a URL: {no_base}"#),
            ),
            (
                "[upstream]\n\"a.b\" = \"ftp://x/\"".into(),
                r#"upstream for a.b: "ftp://x/" must be http or https"#.into(),
            ),
            (
                "[shared]".into(),
                r#"[shared] url is required (e.g. "s3://bucket/prefix")"#.into(),
            ),
            (
                "[shared]\nurl = \"nope\"".into(),
                format!(r#"[shared] url = "nope": {no_base}"#),
            ),
            (
                "[shared]\nurl = \"ftp://b/p\"".into(),
                r#"[shared] url = "ftp://b/p": expected s3://, gs://, az:// or file://"#.into(),
            ),
            (
                "[shared]\nurl = \"s3://k:s@b/p\"".into(),
                r#"[shared] url = "s3://k:s@b/p": expected <scheme>://<bucket>/<prefix>, without credentials or a query"#.into(),
            ),
            (
                "[shared]\nurl = \"file:///\"".into(),
                r#"[shared] url = "file:///": expected file:///absolute/directory"#.into(),
            ),
            (
                "[shared]\nurl = \"s3://b\"\nendpoint = \"ftp://x\"".into(),
                r#"[shared] endpoint = "ftp://x": must be http or https"#.into(),
            ),
            (
                "[shared]\nurl = \"s3://b\"\nendpoint = \"nope\"".into(),
                format!(r#"[shared] endpoint = "nope": {no_base}"#),
            ),
            (
                "[shared]\nurl = \"s3://b\"\ntimeout = \"0s\"".into(),
                r#"[shared] timeout = "0s": must be above zero"#.into(),
            ),
        ]
    }

    #[test]
    fn each_refusal_keeps_its_message() {
        for (text, expected) in pinned_refusals() {
            assert_eq!(refused(&text), expected, "{text}");
        }
    }

    /// From a file, each refusal keeps its words after the file's name
    /// and the line and column of what it refuses.
    #[test]
    fn each_refusal_from_a_file_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for (text, expected) in pinned_refusals() {
            std::fs::write(&path, &text).unwrap();
            let message = Config::from_file(&path).unwrap_err().to_string();
            let prefix = format!("invalid config {}:", path.display());
            let position = message
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(&format!(": {expected}")))
                .unwrap_or_else(|| panic!("{text}: {message}"));
            let (line, column) = position.split_once(':').expect("line:column");
            let (line, column): (usize, usize) = (line.parse().unwrap(), column.parse().unwrap());
            assert!(
                line >= 1 && line <= text.lines().count().max(1),
                "{text}: {message}"
            );
            assert!(column >= 1, "{text}: {message}");
        }
    }

    #[test]
    fn refusals_say_what_failed_in_their_variant() {
        assert!(matches!(
            Config::parse("max_connections = 0"),
            Err(InvalidConfig::NoneAllowed {
                key: "max_connections"
            })
        ));
        assert!(matches!(
            Config::parse(r#"gc_interval = "30s""#),
            Err(InvalidConfig::BadValue { key: "gc_interval", value, why: Why::GcTooOften })
                if value == "30s"
        ));
        assert!(matches!(
            Config::parse(r#"gc_max_size = "1QB""#),
            Err(InvalidConfig::BadValue {
                why: Why::Size(BadSize::UnknownUnit(unit)),
                ..
            }) if unit == "qb"
        ));
        assert!(matches!(
            Config::parse("[upstream]\n\"a.b\" = \"ftp://x/\""),
            Err(InvalidConfig::UpstreamNotHttp { host, .. }) if host == "a.b"
        ));
        assert!(matches!(
            Config::parse("[git]\nmirror = [\"\"]"),
            Err(InvalidConfig::BadMirrorPrefix(_))
        ));
        assert!(matches!(
            Config::parse("nonsense"),
            Err(InvalidConfig::Toml(_))
        ));
    }

    /// The parser's own `Display` quotes the file over several lines; the
    /// one-line message is what a user has always been shown.
    #[test]
    fn a_toml_error_is_one_line() {
        let message = refused("metdata_ttl = \"1h\"");
        assert!(
            message.starts_with("unknown field `metdata_ttl`"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    /// `offline` is a boolean; the file it came from is named in refusals.
    #[test]
    fn offline_seals_the_server_and_names_its_file() {
        assert_eq!(Config::parse("").unwrap().offline, None);
        assert_eq!(Config::parse("offline = false").unwrap().offline, None);
        assert_eq!(
            Config::parse("offline = true").unwrap().offline,
            Some(Sealed::ConfigKey(None))
        );
        assert_eq!(
            refused("offline = \"yes\""),
            "offline = \"yes\": expected true or false"
        );
        assert!(matches!(
            Config::parse("offline = 1"),
            Err(InvalidConfig::BadValue {
                key: "offline",
                why: Why::NotABool,
                ..
            })
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "offline = true\n").unwrap();
        assert_eq!(
            Config::from_file(&path).unwrap().offline,
            Some(Sealed::ConfigKey(Some(path)))
        );
    }

    /// A file's errors name the file, then what is wrong in it, once: the
    /// cause chain holds the details without repeating them.
    #[test]
    fn a_bad_file_is_named_with_its_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# limits\nmax_connections = 0\n").unwrap();
        let err = Config::from_file(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid config {}:2:19: max_connections = 0: must be at least 1",
                path.display()
            )
        );
        let cause = std::error::Error::source(&err).expect("the refusal is the cause");
        assert_eq!(cause.to_string(), "max_connections = 0: must be at least 1");
        let missing = Config::from_file(&dir.path().join("absent.toml")).unwrap_err();
        assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    }
}
