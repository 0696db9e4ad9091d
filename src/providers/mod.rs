//! The provider registry protocol, proxied and cached.
//!
//! Terraform asks for version lists and download answers here; the answers
//! are cached as metadata, and the download answer is rewritten so the zip,
//! SHA256SUMS and signature are fetched through tfmirror too. Terraform still
//! verifies the signature itself from the unchanged `signing_keys`.

mod checksums;
mod download_answer;
mod package;
mod route;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::StatusCode;

use crate::config::Config;
use crate::response::{self, Response};
use crate::store::{FetchError, Freshness, KeyedLocks, Served, Source, Store};
use crate::upstream::{Discovery, Forwarded, Upstream};

pub use checksums::checksum_path;
use download_answer::DownloadAnswer;
use route::{Artifact, Package, ProviderAddr, Route, RouteError};

/// Terraform gives up on a registry API call after 10 s; a slow upstream
/// must not turn a cached answer into a timeout, so past this a stale copy
/// is served and the fetch finishes in the background.
const API_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Providers {
    config: Arc<Config>,
    store: Arc<Store>,
    upstream: Upstream,
    discovery: Discovery,
    locks: KeyedLocks,
}

/// What a request brings besides its path.
pub struct RequestContext {
    /// tfmirror's own URL, without a trailing slash.
    pub base_url: String,
    pub forwarded: Forwarded,
    /// A HEAD request: headers only, and never a reason to download.
    pub head: bool,
}

impl Providers {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        upstream: Upstream,
        discovery: Discovery,
    ) -> Providers {
        Providers {
            config,
            store,
            upstream,
            discovery,
            locks: KeyedLocks::default(),
        }
    }

    /// Handles `/v1/providers/<segments...>`.
    pub async fn handle(&self, segments: &[String], ctx: &RequestContext) -> Response {
        let route = match Route::parse(segments) {
            Ok(route) => route,
            Err(RouteError::BadName(e)) => {
                return response::error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid name in path: {e}"),
                )
            }
            Err(RouteError::NotFound) => {
                return response::error(StatusCode::NOT_FOUND, "no such provider endpoint")
            }
        };
        let host = match &route {
            Route::Versions(addr) => &addr.host,
            Route::Download(p) | Route::Artifact(p, _) => &p.addr.host,
        };
        if !self.config.is_proxied(host.as_str()) {
            let message = format!("{host} is not one of the registries tfmirror proxies");
            return response::error(StatusCode::NOT_FOUND, &message);
        }
        match route {
            Route::Versions(addr) => self.versions(&addr, ctx).await,
            Route::Download(package) => {
                match self.download_answer(&package, &ctx.forwarded).await {
                    Ok(answer) => {
                        response::json(StatusCode::OK, answer.rewritten(&ctx.base_url, &package))
                    }
                    Err(response) => response,
                }
            }
            Route::Artifact(package, artifact) => self.artifact(&package, artifact, ctx).await,
        }
    }

    fn metadata_freshness(&self) -> Freshness {
        Freshness {
            ttl: Some(self.config.metadata_ttl),
            stale_while_revalidate: self.config.stale_while_revalidate,
        }
    }

    async fn versions(&self, addr: &ProviderAddr, ctx: &RequestContext) -> Response {
        let key = format!("providers/versions/{addr}");
        let path = format!("{}/{}/versions", addr.namespace, addr.kind);
        let served = self
            .fetch_api(
                &key,
                addr,
                path,
                self.metadata_freshness(),
                &ctx.forwarded,
                |body, _| match serde_json::from_str::<serde_json::Value>(body) {
                    Ok(v) if v.get("versions").is_some_and(|v| v.is_array()) => Ok(body.to_owned()),
                    _ => Err(
                        "the version list is not a JSON object with a versions array".to_owned(),
                    ),
                },
            )
            .await;
        match served {
            Ok(served) => api_response(&key, served),
            Err(e) => fetch_error_response(addr, e),
        }
    }

    /// The upstream's download answer for a package, cached for good: a
    /// published package does not change.
    async fn download_answer(
        &self,
        package: &Package,
        forwarded: &Forwarded,
    ) -> Result<DownloadAnswer, Response> {
        let addr = &package.addr;
        let key = format!(
            "providers/download/{package}",
            package = download_key(package)
        );
        let path = format!(
            "{}/{}/{}/download/{}/{}",
            addr.namespace, addr.kind, package.version, package.os, package.arch
        );
        let checked = package.clone();
        let served = self
            .fetch_api(
                &key,
                addr,
                path,
                Freshness::IMMUTABLE,
                forwarded,
                move |body, url| DownloadAnswer::from_upstream(body, url, &checked),
            )
            .await
            .map_err(|e| fetch_error_response(addr, e))?;
        log_source(&key, &served.source);
        DownloadAnswer::from_stored(&served.doc.body).map_err(|e| {
            let message = format!("the stored download answer for {package} is unreadable: {e}");
            response::error(StatusCode::BAD_GATEWAY, &message)
        })
    }

    async fn artifact(
        &self,
        package: &Package,
        artifact: Artifact,
        ctx: &RequestContext,
    ) -> Response {
        let forwarded = &ctx.forwarded;
        let answer = match self.download_answer(package, forwarded).await {
            Ok(answer) => answer,
            Err(response) => return response,
        };
        match artifact {
            Artifact::Zip => self.serve_zip(package, &answer, ctx).await,
            Artifact::Checksums | Artifact::Signature => {
                if let Err(e) = self.verified_checksums(package, &answer, forwarded).await {
                    return package::refuse(package, &e.to_string());
                }
                let rel = checksum_path(package, artifact);
                match self.store.open_artifact(&rel).await {
                    Some((file, size)) => response::file(file, size, "application/octet-stream"),
                    None => response::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "verified checksums vanished",
                    ),
                }
            }
        }
    }

    /// Fetches a registry API document below the host's `providers.v1`
    /// service through the metadata cache. `prepare` checks the upstream's
    /// answer (given the URL it came from) and returns what to store.
    async fn fetch_api(
        &self,
        key: &str,
        addr: &ProviderAddr,
        path: String,
        freshness: Freshness,
        forwarded: &Forwarded,
        prepare: impl Fn(&str, &url::Url) -> Result<String, String> + Send + 'static,
    ) -> Result<Served, FetchError> {
        let discovery = self.discovery.clone();
        let upstream = self.upstream.clone();
        let host = addr.host.to_string();
        let forwarded = forwarded.clone();
        let fetch = move || async move {
            let base = discovery
                .service_url(&host, "providers.v1", &forwarded)
                .await?;
            let url = base.join(&path).map_err(|e| {
                FetchError::Unavailable(format!("cannot build the upstream URL: {e}"))
            })?;
            let body = upstream.get_api(&url, &forwarded).await?;
            prepare(&body, &url)
                .map_err(|e| FetchError::Unavailable(format!("{url}: malformed answer: {e}")))
        };
        self.store
            .documents()
            .get(key, freshness, API_DEADLINE, fetch)
            .await
    }
}

fn download_key(package: &Package) -> String {
    format!(
        "{}/{}/{}/{}",
        package.addr, package.version, package.os, package.arch
    )
}

fn log_source(key: &str, source: &Source) {
    if let Source::StaleFallback(why) = source {
        tracing::warn!("serving a stale copy of {key}: {why}");
    }
}

/// A registry answer, marked with a `Warning` header when it is a stale
/// copy served because the upstream failed.
fn api_response(key: &str, served: Served) -> Response {
    log_source(key, &served.source);
    let mut response = response::json(StatusCode::OK, served.doc.body);
    if let Source::StaleFallback(_) = served.source {
        response.headers_mut().insert(
            "Warning",
            HeaderValue::from_static("111 tfmirror \"Revalidation Failed\""),
        );
    }
    response
}

fn fetch_error_response(addr: &ProviderAddr, error: FetchError) -> Response {
    match error {
        FetchError::Answer { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            response::json(status, body)
        }
        FetchError::Unavailable(why) => {
            tracing::error!("cannot reach the registry for {addr}, and nothing is cached: {why}");
            let message = format!("registry unavailable for {addr} and nothing cached: {why}");
            response::error(StatusCode::BAD_GATEWAY, &message)
        }
    }
}
