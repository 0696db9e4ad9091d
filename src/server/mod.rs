//! The HTTP server: accepts connections, routes requests, and shuts down
//! without cutting off requests in flight.

mod access;
mod activity;
mod admin;
mod bundle;
mod bundle_import;
mod closures;
mod limits;
mod metering;
mod problems;
mod router;
pub mod run_journal;
pub mod state_file;
mod tls;

pub use access::{MemberTokens, Secret};
pub use tls::TlsFiles;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::git::GitMirrors;
use crate::modules::Modules;
use crate::policy::LivePolicy;
use crate::protocol::{Endpoint, Health};
use crate::providers::Providers;
use crate::response::Response;
use crate::server_key::ServerKey;
use crate::shared::{SharedStore, SharedTier};
use crate::store::Store;
use crate::upstream::{Discovery, EnvTokens, RegistryClient, Upstream, UserRoutes};
use access::AccessPolicy;
use activity::{Activity, ConnectionGuard};
use limits::{Admission, ConnectionLimits};

/// How long shutdown waits for requests in flight before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler may need, shared by all connections.
pub struct App {
    /// Where the server is reached from this machine, without the secret.
    url: String,
    /// The address a team's clients use; set for a team server.
    public_url: Option<String>,
    access: AccessPolicy,
    config: Arc<Config>,
    /// `[policy]`, kept current as the config file changes; the router
    /// has it look at the file before each request.
    policy: LivePolicy,
    runs: Arc<metering::Runs>,
    /// What happened while serving each run (see `run_journal`).
    journal: Arc<run_journal::RunJournal>,
    cache_dir: PathBuf,
    started: Instant,
    store: Arc<Store>,
    providers: Providers,
    modules: Modules,
    git: GitMirrors,
    /// The tier on object storage, when `[shared]` is set.
    shared: Option<SharedTier>,
    /// Whether the port was picked by the system (port 0 asked for).
    random_port: bool,
    /// Set once the server is told to stop when idle ([`Server::idle_for`]).
    idle_timeout: std::sync::OnceLock<Duration>,
    /// The user's own `host` blocks, as upstream for the hosts they name.
    routes: UserRoutes,
    /// The log of upstream fetches, flushed at shutdown.
    audit: AuditLog,
}

impl App {
    /// What the owner's URLs start with: the server's own address and its
    /// secret.
    fn owner_url(&self) -> String {
        format!("{}/{}", self.url, self.access.secret().as_str())
    }

    /// What a team member's URLs start with: the public URL (else this
    /// machine's address) and the member's capability.
    fn member_url(&self, capability: &access::Capability) -> String {
        let base = self.public_url.as_deref().unwrap_or(&self.url);
        format!("{base}/{}", capability.as_str())
    }

    fn health(&self) -> Response {
        let answer = Health {
            status: "ok".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            url: self.url.clone(),
            public_url: self.public_url.clone(),
            cache_dir: self.cache_dir.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            shared: self.shared.as_ref().map(SharedTier::health),
            offline: self.config.offline.as_ref().map(ToString::to_string),
            idle_timeout_secs: self.idle_timeout.get().map(Duration::as_secs),
            random_port: self.random_port,
        };
        admin::json_ok(&answer)
    }
}

/// Who besides the owner may use the server: a team server's public URL
/// (every URL its answers carry starts with it) and its clients' tokens.
#[derive(Default)]
pub struct Team {
    pub public_url: Option<url::Url>,
    pub members: Option<MemberTokens>,
}

pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
}

impl Server {
    /// Binds the listener to the first of `addrs` (what `listen` resolved
    /// to) that works; the URL is known from here on (port 0 picks one).
    /// `config_file` is where `config` was read from: its `[policy]` is
    /// read again when it changes (the one live setting; see
    /// [`LivePolicy`]).
    pub async fn bind(
        listen: &crate::listen_addr::ListenAddr,
        addrs: &[SocketAddr],
        tls: Option<&TlsFiles>,
        team: Team,
        mut config: Config,
        config_file: Option<PathBuf>,
        store: Store,
    ) -> anyhow::Result<Server> {
        let tls = tls.map(TlsFiles::acceptor).transpose()?;
        let listener = listen_on_first(addrs)
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", reachable(local));
        let key = ServerKey::generate()?;
        let access = AccessPolicy::new(
            &key,
            local,
            tls.is_some(),
            team.public_url.as_ref(),
            team.members,
        );
        let public_url = team
            .public_url
            .map(|url| url.as_str().trim_end_matches('/').to_owned());
        let limits = ConnectionLimits::new(config.max_connections);
        // A sealed server opens no bucket: no request to the shared tier,
        // for documents, artifacts or git mirrors, can then be made.
        let shared = config
            .shared
            .as_ref()
            .filter(|_| config.offline.is_none())
            .map(|shared| SharedTier::from_config(shared, config.upstream_retry_after))
            .transpose()?;
        if let Some(sealed) = &config.offline {
            let unused = if config.shared.is_some() {
                ", and the [shared] tier is not used"
            } else {
                ""
            };
            tracing::info!("offline ({sealed}): no upstream is contacted{unused}");
        } else {
            // So that the log says how upstreams are reached (proxy, CA
            // certificates) before the first request needs them. Reads a
            // file: off the runtime.
            let network =
                tokio::task::spawn_blocking(|| crate::upstream::NetworkEnv::from_env().summary())
                    .await?;
            tracing::info!("{network}");
        }
        let shelf = shared.clone().map(|tier| {
            // So that `status` tells whether the bucket answers before the
            // first lookup, and a broken setup warns at start.
            let probing = tier.clone();
            tokio::spawn(async move {
                let _ = probing.probe().await;
            });
            Arc::new(SharedStore::new(tier, config.limits.metadata_size))
        });
        let store = match &shelf {
            Some(shelf) => store.with_second_tier(shelf.clone()),
            None => store,
        };
        let store = store.with_sealed(config.offline.clone());
        let audit = AuditLog::start(&config.audit, store.root())
            .map_err(|e| anyhow::anyhow!("cannot start the audit log's writer: {e}"))?;
        // The policy lives in one place from here on: handlers ask it, not
        // the config, whose copy would go stale.
        let policy = LivePolicy::watch(config_file, config.policy.take()).await;
        policy.record_refusals_in(audit.clone());
        let config = Arc::new(config);
        let store = Arc::new(store);
        let upstream = Upstream::new(EnvTokens::from_env())
            .with_audit(audit.clone())
            .with_sealed(config.offline.clone())
            .with_stall_timeout(config.limits.download_stall)
            .with_retry_after(config.upstream_retry_after)
            .with_metadata_limit(config.limits.metadata_size);
        let discovery = Discovery::new(config.clone(), upstream.clone(), store.documents().clone());
        let routes = discovery.routes().clone();
        let registry = RegistryClient::new(
            upstream.clone(),
            discovery,
            store.documents().clone(),
            key.clone(),
        );
        let mut git = GitMirrors::new(config.clone(), policy.clone(), store.clone())
            .with_audit(audit.clone());
        if let Some(shelf) = shelf {
            git = git.with_bundle_shelf(shelf);
        }
        let modules = Modules::new(
            config.clone(),
            policy.clone(),
            store.clone(),
            upstream.clone(),
            registry.clone(),
            git.clone(),
        );
        let providers = Providers::new(
            config.clone(),
            policy.clone(),
            store.clone(),
            upstream,
            registry,
        );
        let app = App {
            url,
            public_url,
            access,
            config,
            policy,
            runs: Arc::default(),
            journal: run_journal::RunJournal::global(),
            cache_dir: store.root().to_owned(),
            started: Instant::now(),
            store,
            providers,
            modules,
            git,
            shared,
            random_port: listen.port() == 0,
            idle_timeout: std::sync::OnceLock::new(),
            routes,
            audit,
        };
        Ok(Server {
            listener,
            tls,
            app: Arc::new(app),
            activity: Activity::new(),
            limits,
        })
    }

    /// The server's address from this machine, without the secret.
    pub fn url(&self) -> &str {
        &self.app.url
    }

    /// The user's own `host` blocks the server sends requests by; the
    /// server's starter sets those of the user's config.
    pub fn user_routes(&self) -> &UserRoutes {
        &self.app.routes
    }

    /// The secret the owner's requests carry; for `server.json` only.
    pub fn secret(&self) -> &Secret {
        self.app.access.secret()
    }

    /// Completes once no client has been connected for `timeout`; pass it
    /// to [`Server::run`] to stop an unused server. The health answer then
    /// says the server exits when idle.
    pub fn idle_for(&self, timeout: Duration) -> impl Future<Output = ()> + use<> {
        let _ = self.app.idle_timeout.set(timeout);
        self.activity.clone().idle_for(timeout)
    }

    /// Waits for a place under the connection limit, then for a client.
    /// Both are cancel-safe: an unused place is simply given back.
    async fn admit_and_accept(&self) -> (Admission, std::io::Result<(TcpStream, SocketAddr)>) {
        let admission = self.limits.admit().await;
        (admission, self.listener.accept().await)
    }

    /// Serves until `shutdown` completes, then lets requests in flight
    /// finish and flushes the index.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let collector = tokio::spawn(self.app.clone().collect_periodically());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                (admission, accepted) = self.admit_and_accept() => {
                    let (stream, _) = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // hyper writes a streamed body's head and its chunks separately; with
                    // Nagle on, the second write waits for the client's delayed ACK, 40 ms
                    // per response on Linux, which a warm `init` of 20 providers paid
                    // about 25 times.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY: {e}");
                    }
                    let connection = Connection {
                        app: self.app.clone(),
                        in_use: self.activity.connection(),
                        watcher: graceful.watcher(),
                        admission,
                    };
                    tokio::spawn(connection.serve(stream, self.tls.clone()));
                }
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        collector.abort();
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still running after {}s; stopping anyway",
                DRAIN_TIMEOUT.as_secs()
            );
        }
        self.app.store.flush();
        let audit = self.app.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    }
}

/// Connections the kernel queues for `accept`. The standard 128 overflows
/// under a burst of connections, and a client whose SYN is dropped retries
/// only after a second; the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// The first of `addrs` that binds, or the last one's error.
fn listen_on_first(addrs: &[SocketAddr]) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for &address in addrs {
        match listen_on(address) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn listen_on(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// An address this machine can connect to: a server listening on every
/// address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(local: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, local.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, local.port()).into(),
        _ => local,
    }
}

/// One accepted client connection.
struct Connection {
    app: Arc<App>,
    /// Keeps the server from counting as idle while the client is connected.
    in_use: ConnectionGuard,
    watcher: Watcher,
    /// Its place under the connection limit, held until it closes.
    admission: Admission,
}

/// A client that connects but never finishes the TLS handshake must not
/// hold a task (and the idle timer) forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Connection {
    async fn serve(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(tls) = tls else {
            return self.serve_http(stream).await;
        };
        let timeout = match self.admission {
            Admission::Served(_) => HANDSHAKE_TIMEOUT,
            Admission::Overflow(_) => limits::OVERFLOW_HANDSHAKE_TIMEOUT,
        };
        match tokio::time::timeout(timeout, tls.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_http(stream).await,
            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve_http<IO>(self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let builder = self.http1_builder();
        let app = self.app;
        let overflow = matches!(self.admission, Admission::Overflow(_));
        let service = service_fn(move |request| {
            let app = app.clone();
            async move {
                let started = Instant::now();
                let method = request.method().clone();
                let routed = if overflow && !is_health(request.uri().path()) {
                    router::busy(app.config.max_connections)
                } else {
                    router::route(&app, request).await
                };
                let path = routed.path;
                tracing::debug!("{method} {path} -> {}", routed.response.status().as_u16());
                let metered = metering::Metered {
                    route: routed.route,
                    run: routed.run.map(|run| (run, path)),
                    head: method == hyper::Method::HEAD,
                    started,
                };
                let response = metering::meter(routed.response, metered, app.runs.clone());
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(io), service);
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!("connection ended with an error: {e}");
        }
        drop(self.in_use);
        drop(self.admission);
    }

    /// hyper's header timer starts whenever the connection waits for a
    /// request, so it closes both slow-header and idle keep-alive
    /// connections. An overflow connection gets one quick request only.
    fn http1_builder(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new());
        match self.admission {
            Admission::Served(_) => {
                builder.header_read_timeout(self.app.config.header_read_timeout);
            }
            Admission::Overflow(_) => {
                let timeout =
                    limits::OVERFLOW_HEADER_TIMEOUT.min(self.app.config.header_read_timeout);
                builder.header_read_timeout(timeout).keep_alive(false);
            }
        }
        builder
    }
}

/// Whether a request path is a health check, with or without a secret in
/// front: the one request a connection past the limit is served.
fn is_health(path: &str) -> bool {
    Endpoint::is_health_path(path)
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed
/// here, not when the future is first polled: a signal sent the moment the
/// server is seen (its `server.json`, a health answer) must never meet the
/// default action, an exit that skips the drain and leaves `server.json`.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
