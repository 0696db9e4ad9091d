//! The HTTP server: accepts connections, routes requests, and shuts down
//! without cutting off requests in flight.

mod activity;
mod admin;
mod metering;
mod router;
pub mod state_file;
mod tls;

pub use metering::RunCounters;
pub use tls::TlsFiles;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::git::GitMirrors;
use crate::modules::Modules;
use crate::providers::Providers;
use crate::response::{self, Response};
use crate::store::Store;
use crate::upstream::{Discovery, EnvTokens, RegistryClient, Upstream};
use activity::{Activity, ConnectionGuard};

/// How long shutdown waits for requests in flight before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler may need, shared by all connections.
pub struct App {
    url: String,
    config: Arc<Config>,
    runs: Arc<metering::Runs>,
    cache_dir: PathBuf,
    started: Instant,
    store: Arc<Store>,
    providers: Providers,
    modules: Modules,
    git: GitMirrors,
}

impl App {
    fn health(&self) -> Response {
        let body = serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "url": self.url,
            "cache_dir": self.cache_dir,
            "uptime_secs": self.started.elapsed().as_secs(),
        });
        response::json(StatusCode::OK, body.to_string())
    }
}

pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Arc<App>,
    activity: Arc<Activity>,
}

impl Server {
    /// Binds the listener; the URL is known from here on (port 0 picks one).
    pub async fn bind(
        listen: SocketAddr,
        tls: Option<&TlsFiles>,
        config: Config,
        store: Store,
    ) -> anyhow::Result<Server> {
        let tls = tls.map(TlsFiles::acceptor).transpose()?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{local}");
        let config = Arc::new(config);
        let store = Arc::new(store);
        let upstream = Upstream::new(EnvTokens::from_env());
        let discovery = Discovery::new(config.clone(), upstream.clone(), store.documents().clone());
        let registry = RegistryClient::new(upstream.clone(), discovery, store.documents().clone());
        let git = GitMirrors::new(config.clone(), store.clone());
        let modules = Modules::new(
            config.clone(),
            store.clone(),
            upstream.clone(),
            registry.clone(),
            git.clone(),
        );
        let providers = Providers::new(config.clone(), store.clone(), upstream, registry);
        let app = App {
            url,
            config,
            runs: Arc::default(),
            cache_dir: store.root().to_owned(),
            started: Instant::now(),
            store,
            providers,
            modules,
            git,
        };
        Ok(Server {
            listener,
            tls,
            app: Arc::new(app),
            activity: Activity::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.app.url
    }

    /// Completes once no client has been connected for `timeout`; pass it
    /// to [`Server::run`] to stop an unused server.
    pub fn idle_for(&self, timeout: Duration) -> impl Future<Output = ()> + use<> {
        self.activity.clone().idle_for(timeout)
    }

    /// Serves until `shutdown` completes, then lets requests in flight
    /// finish and flushes the index.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let collector = tokio::spawn(self.app.clone().collect_periodically());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
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
    }
}

/// One accepted client connection.
struct Connection {
    app: Arc<App>,
    /// Keeps the server from counting as idle while the client is connected.
    in_use: ConnectionGuard,
    watcher: Watcher,
}

/// A client that connects but never finishes the TLS handshake must not
/// hold a task (and the idle timer) forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Connection {
    async fn serve(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let Some(tls) = tls else {
            return self.serve_http(stream).await;
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_http(stream).await,
            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve_http<IO>(self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app;
        let service = service_fn(move |request| {
            let app = app.clone();
            async move {
                let started = Instant::now();
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                let routed = router::route(&app, request).await;
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
        let connection = http1::Builder::new().serve_connection(TokioIo::new(io), service);
        if let Err(e) = self.watcher.watch(connection).await {
            tracing::debug!("connection ended with an error: {e}");
        }
        drop(self.in_use);
    }
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
