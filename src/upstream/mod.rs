//! HTTP requests to upstream registries and download hosts.
//!
//! Knows how to reach an upstream and how to tell a failure worth hiding
//! behind a stale copy (connection refused, timeout, 5xx) from an answer the
//! client must see (404); knows nothing of what the answers mean.

mod access;
mod body;
mod breaker;
mod credentials;
mod discovery;
mod network_env;
mod registry;
mod routes;

use std::time::Duration;

use url::Url;

pub use body::{Body, BodyError, BodyLimits};
pub use breaker::DEFAULT_PERIOD as DEFAULT_RETRY_AFTER;
use breaker::{Breakers, Permit, NOT_ANSWERING_AFTER};
pub use credentials::{token_variable, Credential, EnvTokens};
pub use discovery::Discovery;
pub use network_env::{network_hint, NetworkEnv};
pub use registry::{ApiRequest, RegistryClient};
pub use routes::{HostRoute, UserRoutes};

use crate::audit::{AuditLog, Record, Requester};
use crate::sealed::{Offline, Sealed};
use crate::store::FetchError;

/// Registry API answers are small JSON documents (the largest provider
/// version lists are around a megabyte); the default `max_metadata_size`
/// is far above that, and more than it is not one.
const DEFAULT_METADATA_LIMIT: usize = 32 << 20;

/// How long a registry API request waits for the upstream's answer to
/// begin. Terraform gives up on a registry call after 10 s; a request with
/// nothing cached must get tfmirror's error, which says why, before that.
const API_FIRST_BYTE_DEADLINE: Duration = Duration::from_secs(8);

/// Headers a client request contributes to the upstream request it causes.
#[derive(Clone, Debug, Default)]
pub struct Forwarded {
    pub authorization: Option<Credential>,
    pub user_agent: Option<String>,
    /// The run of `tfmirror exec` the request belongs to (`/run/<id>/`):
    /// its user's `host` blocks decide where the request goes (see
    /// [`UserRoutes`]), and the audit log names it. Never sent upstream.
    pub run: Option<String>,
}

impl Forwarded {
    /// The same request without its registry credential, for downloads.
    pub fn without_credential(&self) -> Forwarded {
        Forwarded {
            authorization: None,
            ..self.clone()
        }
    }

    /// Who the audit log records a fetch for: the run and the client.
    pub fn requester(&self) -> Requester {
        Requester {
            run: self.run.clone(),
            client: self.user_agent.clone(),
        }
    }
}

/// A registry API answer that is not an error.
#[derive(Debug, Clone)]
pub struct ApiAnswer {
    pub body: String,
    /// The module protocol's download location, sent in a header.
    pub terraform_get: Option<String>,
}

#[derive(Clone)]
pub struct Upstream {
    http: reqwest::Client,
    env_tokens: EnvTokens,
    breakers: Breakers,
    /// `max_metadata_size`: registry answers and checksum files are read
    /// whole, so this bounds the memory one of them takes.
    metadata_limit: usize,
    /// Set on a sealed server: every request is refused before it is
    /// made. All upstream HTTP goes through [`Upstream::get_api`] and
    /// [`Upstream::get_artifact`], so this is the one check for HTTP.
    sealed: Option<Sealed>,
    /// Where the fetches made through this upstream are recorded, by the
    /// callers that know what was fetched and how it was verified.
    audit: AuditLog,
}

impl Upstream {
    /// The token for `host` from `TF_TOKEN_`/`TOFU_TOKEN_` variables.
    pub fn env_token(&self, host: &str) -> Option<&Credential> {
        self.env_tokens.get(host)
    }

    /// The credential a request's registry API calls to `host` carry: the
    /// client's own `Authorization`, else the server's token for the host.
    /// It is also what decides which private documents the request may
    /// read, so both follow this one definition.
    pub fn effective_credential<'a>(
        &'a self,
        host: &str,
        forwarded: &'a Forwarded,
    ) -> Option<&'a Credential> {
        forwarded
            .authorization
            .as_ref()
            .or_else(|| self.env_token(host))
    }
}

impl Upstream {
    pub fn new(env_tokens: EnvTokens) -> Upstream {
        let http = client(DEFAULT_STALL_TIMEOUT);
        Upstream {
            http,
            env_tokens,
            breakers: Breakers::new(DEFAULT_RETRY_AFTER),
            metadata_limit: DEFAULT_METADATA_LIMIT,
            sealed: None,
            audit: AuditLog::default(),
        }
    }

    /// The same upstream, its fetches recorded in `audit`.
    pub fn with_audit(self, audit: AuditLog) -> Upstream {
        Upstream { audit, ..self }
    }

    /// The audit log the fetches made through this upstream go to.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The same upstream, refusing every request when `sealed` is set
    /// (see `crate::sealed`).
    pub fn with_sealed(self, sealed: Option<Sealed>) -> Upstream {
        Upstream { sealed, ..self }
    }

    /// The same upstream, reading registry answers and checksum files of
    /// at most `limit` bytes (`max_metadata_size`).
    pub fn with_metadata_limit(self, limit: u64) -> Upstream {
        Upstream {
            metadata_limit: usize::try_from(limit).unwrap_or(usize::MAX),
            ..self
        }
    }

    /// The same upstream, whose hosts, once not answering, are left alone
    /// for `period` (`upstream_retry_after`) before one request tries again.
    pub fn with_retry_after(self, period: Duration) -> Upstream {
        Upstream {
            breakers: Breakers::new(period),
            ..self
        }
    }

    /// The same upstream, waiting at most `stall` for any read: the
    /// client's own read timeout must not cut a download off before the
    /// `download_stall_timeout` a user raised has passed.
    pub fn with_stall_timeout(self, stall: Duration) -> Upstream {
        Upstream {
            http: client(stall),
            ..self
        }
    }

    /// GETs a registry API document with `credential` (see
    /// [`Upstream::effective_credential`]) and the client's User-Agent.
    /// `has_fallback` says the caller has a cached copy to serve if this
    /// fails: while the host is not answering, such a request fails at
    /// once (see [`breaker`]).
    ///
    /// `line` is the audit line of the fetch: a request that was made and
    /// failed is recorded here, where it is known that it was made (not
    /// refused by a sealed server or an open breaker); an answer comes
    /// back with the line, its body measured, for the caller to record
    /// once it has checked the answer.
    pub async fn get_api(
        &self,
        url: &Url,
        credential: Option<&Credential>,
        forwarded: &Forwarded,
        has_fallback: bool,
        line: Record,
    ) -> Result<(ApiAnswer, Record), FetchError> {
        if let Some(sealed) = &self.sealed {
            return Err(FetchError::Offline(sealed.clone()));
        }
        let host = host_key(url);
        let permit = self
            .breakers
            .check(&host, has_fallback)
            .map_err(|e| FetchError::Unavailable(e.to_string()))?;
        if permit == Permit::Probe {
            tracing::info!("trying upstream {host} again: {url}");
        }
        match self
            .request_api(url, credential, forwarded, &host, permit)
            .await
        {
            Ok(answer) => {
                let line = line.body(answer.body.as_bytes());
                Ok((answer, line))
            }
            Err(e) => {
                self.audit.write(line.failed(&e));
                Err(e)
            }
        }
    }

    /// [`Upstream::get_api`]'s request, once it may be made.
    async fn request_api(
        &self,
        url: &Url,
        credential: Option<&Credential>,
        forwarded: &Forwarded,
        host: &str,
        permit: Permit,
    ) -> Result<ApiAnswer, FetchError> {
        let mut request = self
            .http
            .get(url.clone())
            .timeout(Duration::from_secs(30))
            .header("Accept", "application/json");
        if let Some(credential) = credential {
            request = request.header("Authorization", credential.header_value());
        }
        if let Some(agent) = &forwarded.user_agent {
            request = request.header("User-Agent", agent);
        }
        let response = self
            .first_answer(host, permit, timed("api", request.send()))
            .await
            .map_err(|e| FetchError::Unavailable(format!("{url}: {e}")))?;
        let status = response.status().as_u16();
        let terraform_get = response
            .headers()
            .get("X-Terraform-Get")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(response, self.metadata_limit)
            .await
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8))
            .map_err(|e| FetchError::Unavailable(format!("{url}: {e}")))?;
        classify(url, status, body).map(|body| ApiAnswer {
            body,
            terraform_get,
        })
    }

    /// Waits for the answer to a request to `host` to begin, within
    /// [`API_FIRST_BYTE_DEADLINE`], and tells the host's breaker how it went:
    /// an answer closes it; no answer for [`NOT_ANSWERING_AFTER`], a refused
    /// connection or a timeout opens it. A probe that fails in any way
    /// opens it again, so that a later request probes once more.
    async fn first_answer(
        &self,
        host: &str,
        permit: Permit,
        send: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    ) -> Result<reqwest::Response, NoAnswer> {
        let started = std::time::Instant::now();
        tokio::pin!(send);
        let early = tokio::select! {
            result = &mut send => Some(result),
            () = tokio::time::sleep(NOT_ANSWERING_AFTER) => None,
        };
        let result = match early {
            Some(result) => result,
            None => {
                let slow = format!("no answer for {}s", NOT_ANSWERING_AFTER.as_secs());
                self.breakers.not_answering(host, &slow, false, started);
                let rest = API_FIRST_BYTE_DEADLINE - NOT_ANSWERING_AFTER;
                match tokio::time::timeout(rest, send).await {
                    Ok(result) => result,
                    Err(_) => {
                        let why = NoAnswer::Deadline(API_FIRST_BYTE_DEADLINE);
                        self.breakers
                            .not_answering(host, &why.to_string(), true, started);
                        return Err(why);
                    }
                }
            }
        };
        match result {
            Ok(response) => {
                self.breakers.answered(host);
                Ok(response)
            }
            Err(e) => {
                if e.is_connect() || e.is_timeout() || permit == Permit::Probe {
                    let why = if e.is_connect() {
                        "connection failed"
                    } else if e.is_timeout() {
                        "timed out"
                    } else {
                        "request failed"
                    };
                    self.breakers.not_answering(host, why, true, started);
                }
                Err(NoAnswer::Failed(describe(&e)))
            }
        }
    }

    /// Starts downloading an artifact. Artifacts carry no registry
    /// credential unless the caller passes one on purpose (an archive on
    /// the registry's own host), as Terraform's own downloads do not.
    pub async fn get_artifact(
        &self,
        url: &Url,
        forwarded: &Forwarded,
    ) -> Result<reqwest::Response, ArtifactError> {
        if let Some(sealed) = &self.sealed {
            return Err(ArtifactError::Offline(sealed.refuse(url.as_str())));
        }
        let mut request = self.http.get(url.clone());
        if let Some(agent) = &forwarded.user_agent {
            request = request.header("User-Agent", agent);
        }
        if let Some(credential) = &forwarded.authorization {
            request = request.header("Authorization", credential.header_value());
        }
        let response =
            timed("artifact", request.send())
                .await
                .map_err(|e| ArtifactError::Failed {
                    url: url.to_string(),
                    cause: describe(&e),
                })?;
        if !response.status().is_success() {
            return Err(ArtifactError::Status {
                url: url.to_string(),
                status: response.status(),
            });
        }
        Ok(response)
    }

    /// Starts downloading a large artifact within `limits`: the answer must
    /// come within the stall timeout and announce no more than the cap, and
    /// its body ends with an error at the cap or the first stall.
    pub async fn get_bounded_artifact(
        &self,
        url: &Url,
        forwarded: &Forwarded,
        limits: BodyLimits,
    ) -> Result<Body, BodyError> {
        let response = limits
            .first_answer(self.get_artifact(url, forwarded))
            .await?
            .map_err(BodyError::Unavailable)?;
        limits.check_announced(&response)?;
        Ok(body::bounded_body(response, limits))
    }

    /// Downloads a small artifact whole.
    pub async fn get_small_artifact(
        &self,
        url: &Url,
        forwarded: &Forwarded,
    ) -> Result<Vec<u8>, ArtifactError> {
        let response = self.get_artifact(url, forwarded).await?;
        read_limited(response, self.metadata_limit)
            .await
            .map_err(|cause| ArtifactError::Read {
                url: url.to_string(),
                cause,
            })
    }
}

/// The read timeout before the config is applied, the default
/// `download_stall_timeout`.
const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The client to registries and download hosts. Like gix's and
/// object_store's, it takes its proxies (`HTTPS_PROXY`, `NO_PROXY`, ...)
/// and its CA certificates (the system's, or `SSL_CERT_FILE`'s) from the
/// environment, the conventional way: see [`network_env`].
fn client(read_timeout: Duration) -> reqwest::Client {
    let builder = || {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .user_agent(concat!("tfmirror/", env!("CARGO_PKG_VERSION")))
    };
    builder().build().unwrap_or_else(|e| {
        // Only the CA certificates can fail to load: a file in
        // SSL_CERT_FILE or SSL_CERT_DIR of nothing but certificates rustls
        // refuses. Every HTTPS upstream then fails its certificate check,
        // with the hint that names the variable, rather than the server.
        tracing::error!("cannot load the CA certificates: {}", describe(&e));
        builder()
            .tls_built_in_root_certs(false)
            .build()
            .expect("a client without CA certificates loads none")
    })
}

/// Runs an upstream request, recording how long the upstream took to
/// answer (successfully or not) in the latency histogram.
async fn timed<T>(kind: &str, request: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let result = request.await;
    crate::metrics::UPSTREAM_LATENCY
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The breaker key of `url`'s host: name and port, so two upstreams on one
/// machine (or two fake registries on loopback) are told apart.
fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn classify(url: &Url, status: u16, body: String) -> Result<String, FetchError> {
    match status {
        200..=299 => Ok(body),
        // Rate limits and server errors are passing troubles: a stale copy
        // serves the user better than the error.
        429 | 500..=599 => Err(FetchError::Unavailable(format!(
            "{url}: upstream answered {status}"
        ))),
        _ => Err(FetchError::Answer { status, body }),
    }
}

/// Reads a whole body, refusing one larger than `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Broken(describe(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why an upstream request had no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoAnswer {
    #[error("no answer within {}s", .0.as_secs())]
    Deadline(Duration),
    /// The request failed; the cause's chain, [`describe`]d.
    #[error("{0}")]
    Failed(String),
}

/// Why a small upstream body could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Broken(String),
    #[error("the answer is larger than {} (max_metadata_size)", crate::human_size::human_bytes(*.0))]
    TooLarge(u64),
    #[error("answer is not UTF-8 text")]
    NotUtf8,
}

/// Why an artifact could not be had from its upstream; names its URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArtifactError {
    #[error("{url}: {cause}")]
    Failed { url: String, cause: String },
    #[error("{url}: upstream answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: {cause}")]
    Read { url: String, cause: ReadError },
    /// The server is sealed; the request was not made.
    #[error("{0}")]
    Offline(Offline),
}

impl ArtifactError {
    /// Whether a request was made: a sealed server makes none, and a
    /// refusal that made none is no fetch for the audit log.
    pub fn was_requested(&self) -> bool {
        !matches!(self, ArtifactError::Offline(_))
    }
}

impl BodyError {
    /// See [`ArtifactError::was_requested`].
    pub fn was_requested(&self) -> bool {
        !matches!(self, BodyError::Unavailable(e) if !e.was_requested())
    }
}

/// reqwest's own message hides the cause ("error sending request"); the
/// chain of sources says what actually went wrong, and a certificate or
/// proxy failure gets the hint that fixes it.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(hint) = network_hint(&message) {
        message.push_str(" (");
        message.push_str(hint);
        message.push(')');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed upstream refuses API requests and downloads alike without
    /// opening a connection: the listener they name is never reached.
    #[tokio::test]
    async fn a_sealed_upstream_opens_no_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let url = Url::parse(&format!("{base}/v1/providers/hashicorp/aws/versions")).unwrap();
        let zip = Url::parse(&format!("{base}/aws.zip")).unwrap();
        let audit_dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::start(&Default::default(), audit_dir.path()).unwrap();
        let upstream = Upstream::new(EnvTokens::default())
            .with_sealed(Some(Sealed::Environment))
            .with_audit(audit.clone());
        let forwarded = Forwarded::default();
        let bounded = async {
            let line = Record::new(&forwarded.requester(), crate::audit::Kind::Discovery, "x");
            let api = upstream.get_api(&url, None, &forwarded, false, line).await;
            let artifact = upstream.get_small_artifact(&zip, &forwarded).await;
            (api, artifact)
        };
        let (api, artifact) = tokio::time::timeout(Duration::from_secs(5), bounded)
            .await
            .expect("a refusal is immediate");
        assert!(
            matches!(api, Err(FetchError::Offline(Sealed::Environment))),
            "{api:?}"
        );
        let refused = artifact.unwrap_err();
        assert!(
            matches!(&refused, ArtifactError::Offline(offline) if offline.what == zip.as_str()),
            "{refused:?}"
        );
        assert!(
            refused.to_string().contains("tfmirror is offline"),
            "{refused}"
        );
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection was opened: {accepted:?}"
        );
        audit.flush();
        let log = audit_dir.path().join(crate::audit::DEFAULT_FILE);
        assert!(!log.exists(), "a request not made is no fetch to record");
    }

    /// A registry request that was made and failed is one line, saying so.
    #[tokio::test]
    async fn a_failed_api_request_is_recorded_once() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/x/versions")).unwrap();
        let audit_dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::start(&Default::default(), audit_dir.path()).unwrap();
        let upstream = Upstream::new(EnvTokens::default()).with_audit(audit.clone());
        let forwarded = Forwarded {
            run: Some("r1".to_owned()),
            ..Forwarded::default()
        };
        let line = Record::new(&forwarded.requester(), crate::audit::Kind::VersionList, "x")
            .url(url.as_str());
        let fetched = tokio::time::timeout(
            Duration::from_secs(20),
            upstream.get_api(&url, None, &forwarded, false, line),
        )
        .await
        .expect("a refused connection fails at once");
        assert!(fetched.is_err());
        audit.flush();
        let text =
            std::fs::read_to_string(audit_dir.path().join(crate::audit::DEFAULT_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["outcome"], "failed");
        assert_eq!(lines[0]["run"], "r1");
        assert!(lines[0]["reason"].as_str().unwrap().contains(url.as_str()));
    }
}
