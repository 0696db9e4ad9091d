//! The provider registry protocol, proxied and cached.
//!
//! Terraform asks for version lists and download answers here; the answers
//! are cached as metadata, and the download answer is rewritten so the zip,
//! SHA256SUMS and signature are fetched through tfmirror too. Terraform still
//! verifies the signature itself from the unchanged `signing_keys`.

mod checksums;
mod download_answer;
pub mod hashes;
mod import;
mod network_mirror;
mod package;
mod prepare;
mod route;
pub mod signature;
mod unpacked;
mod unzip;
mod verified;

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;

use crate::audit::Kind;
use crate::config::Config;
use crate::policy;
use crate::protocol::closure::ClosureItem;
use crate::request::{unproxied, RequestContext};
use crate::response::{self, Response};
use crate::store::{FetchError, Freshness, Segment, Served, Store};
use crate::upstream::{ApiRequest, Forwarded, RegistryClient, Upstream};

pub use checksums::{checksum_path, expected_sha256};
pub use download_answer::DownloadAnswer;
pub use import::LockHashes;
pub use prepare::PreparedZip;
pub use route::Artifact;
use route::{Package, ProviderAddress, ProviderRoute};

/// Terraform gives up on a registry API call after 10 s; a slow upstream
/// must not turn a cached answer into a timeout, so past this a stale copy
/// is served and the fetch finishes in the background.
const API_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Providers {
    config: Arc<Config>,
    /// `[policy]` as in effect now (the config's is read at start only).
    policy: policy::LivePolicy,
    store: Arc<Store>,
    upstream: Upstream,
    registry: RegistryClient,
}

impl Providers {
    fn api_request(
        &self,
        key: String,
        addr: &ProviderAddress,
        path: Vec<String>,
        freshness: Freshness,
        what: (Kind, String),
    ) -> ApiRequest {
        ApiRequest {
            key,
            host: addr.host.to_string(),
            service: "providers.v1",
            path,
            freshness,
            deadline: API_DEADLINE,
            grant: None,
            what,
        }
    }

    pub fn new(
        config: Arc<Config>,
        policy: policy::LivePolicy,
        store: Arc<Store>,
        upstream: Upstream,
        registry: RegistryClient,
    ) -> Providers {
        Providers {
            config,
            policy,
            store,
            upstream,
            registry,
        }
    }

    /// Handles `/v1/providers/<segments...>`.
    pub async fn handle(&self, segments: &[String], ctx: &RequestContext) -> Response {
        let route = match ProviderRoute::parse(segments) {
            Ok(route) => route,
            Err(e) => return e.response("provider"),
        };
        let host = match &route {
            ProviderRoute::Versions(addr) => &addr.host,
            ProviderRoute::Download(p) | ProviderRoute::Artifact(p, ..) => &p.address.host,
        };
        if let Some(refusal) = unproxied(&self.config, host) {
            return refusal;
        }
        if let Some(refusal) = policy::check::refused(&self.policy, route.artifact()) {
            return refusal;
        }
        match route {
            ProviderRoute::Versions(addr) => self.versions(&addr, ctx).await,
            ProviderRoute::Download(package) => {
                match self.download_answer(&package, &ctx.forwarded).await {
                    Ok(answer) => response::touched(
                        response::json(StatusCode::OK, answer.rewritten(&ctx.base_url, &package)),
                        [ClosureItem::Document(download_key(&package))],
                    ),
                    Err(response) => response,
                }
            }
            ProviderRoute::Artifact(package, artifact, grant) => {
                self.artifact(&package, artifact, grant.as_ref(), ctx).await
            }
        }
    }

    async fn versions(&self, addr: &ProviderAddress, ctx: &RequestContext) -> Response {
        let listed = self.version_list(addr, ctx).await;
        let listed = policy::check::provider_versions(&self.policy, &addr.to_string(), listed);
        let served = response::document(&addr.to_string(), listed);
        response::touched(served, [ClosureItem::Document(versions_key(addr))])
    }

    /// The registry's version list, by the metadata freshness rules.
    async fn version_list(
        &self,
        addr: &ProviderAddress,
        ctx: &RequestContext,
    ) -> Result<Served, FetchError> {
        let key = versions_key(addr);
        let path = vec![
            addr.namespace.to_string(),
            addr.kind.to_string(),
            "versions".to_owned(),
        ];
        let freshness = self.config.metadata_freshness().shared();
        let what = (Kind::VersionList, addr.to_string());
        let request = self.api_request(key, addr, path, freshness, what);
        self.registry
            .get(request, &ctx.forwarded, |answer, _| {
                check_version_list(&answer.body).map(|()| answer.body.clone())
            })
            .await
    }

    /// The upstream's download answer for a package, if this request's
    /// credential may have it.
    async fn download_answer(
        &self,
        package: &Package,
        forwarded: &Forwarded,
    ) -> Result<DownloadAnswer, Response> {
        self.granted_download_answer(package, forwarded, None).await
    }

    /// [`Providers::download_answer`] for a request that may also hold the
    /// grant of a private answer, from one of tfmirror's artifact URLs.
    async fn granted_download_answer(
        &self,
        package: &Package,
        forwarded: &Forwarded,
        grant: Option<&Segment>,
    ) -> Result<DownloadAnswer, Response> {
        self.fetch_download_answer(package, forwarded, grant)
            .await
            .map_err(|e| e.response(package))
    }

    /// [`Self::granted_download_answer`], with the failure told apart for
    /// callers that act on it rather than pass it on.
    async fn fetch_download_answer(
        &self,
        package: &Package,
        forwarded: &Forwarded,
        grant: Option<&Segment>,
    ) -> Result<DownloadAnswer, AnswerError> {
        let served = self
            .download_document(package, forwarded, grant)
            .await
            .map_err(AnswerError::Fetch)?;
        self.read_download_answer(package, &served)
    }

    /// The stored download answer, cached for good (a published package
    /// does not change), gated like every registry document: a private one
    /// goes only to a credential that may read it, or to a valid grant.
    async fn download_document(
        &self,
        package: &Package,
        forwarded: &Forwarded,
        grant: Option<&Segment>,
    ) -> Result<Served, FetchError> {
        let addr = &package.address;
        let path = vec![
            addr.namespace.to_string(),
            addr.kind.to_string(),
            package.version.to_string(),
            "download".to_owned(),
            package.os.to_string(),
            package.arch.to_string(),
        ];
        let checked = package.clone();
        let what = (Kind::DownloadAnswer, package.to_string());
        let key = download_key(package);
        let mut request = self.api_request(key, addr, path, Freshness::IMMUTABLE, what);
        request.grant = grant.map(Segment::to_string);
        self.registry
            .get(request, forwarded, move |answer, url| {
                DownloadAnswer::from_upstream(&answer.body, url, &checked)
            })
            .await
    }

    /// Reads a served download answer; a private one gets the grant that
    /// tfmirror's URLs for its files will carry. The error is a message for
    /// a 502: what is stored cannot be used.
    fn read_download_answer(
        &self,
        package: &Package,
        served: &Served,
    ) -> Result<DownloadAnswer, AnswerError> {
        response::log_stale(&package.to_string(), &served.provenance);
        let mut answer = DownloadAnswer::from_stored(&served.doc.body).map_err(|e| {
            AnswerError::Unreadable(format!(
                "the stored download answer for {package} is unreadable: {e}"
            ))
        })?;
        answer.grant = self.registry.grant_for(&download_key(package), &served.doc);
        Ok(answer)
    }

    /// A zip, SHA256SUMS or signature: served only to a request that may
    /// have the package's download answer. Terraform sends no credential
    /// for these, so for a private package that is the grant in the URL.
    async fn artifact(
        &self,
        package: &Package,
        artifact: Artifact,
        grant: Option<&Segment>,
        ctx: &RequestContext,
    ) -> Response {
        let forwarded = &ctx.forwarded;
        let answer = match self
            .granted_download_answer(package, forwarded, grant)
            .await
        {
            Ok(answer) => answer,
            Err(response) => return response,
        };
        match artifact {
            Artifact::Zip => response::touched(
                self.serve_zip(package, &answer, ctx).await,
                package_closure(package),
            ),
            Artifact::Checksums | Artifact::Signature => {
                let rel = checksum_path(package, artifact);
                let was_cached = self.store.has_file(&rel).await;
                if let Err(e) = self.verified_checksums(package, &answer, forwarded).await {
                    return self.refuse_checksums(package, e);
                }
                match self.store.open_artifact(&rel).await {
                    Some((file, size)) => {
                        let served = response::file(file, size, "application/octet-stream");
                        let served = response::touched(served, [ClosureItem::Artifact(rel.key())]);
                        if was_cached {
                            served
                        } else {
                            response::downloaded(served)
                        }
                    }
                    None => response::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "verified checksums vanished",
                    ),
                }
            }
        }
    }
}

/// Why a package's download answer cannot be had.
#[derive(Debug)]
enum AnswerError {
    /// The registry said no (a 404), or could not be reached.
    Fetch(FetchError),
    /// The stored answer does not read as one: the message says so.
    Unreadable(String),
}

impl AnswerError {
    fn response(self, package: &Package) -> Response {
        match self {
            AnswerError::Fetch(e) => response::fetch_error(&package.address.to_string(), e),
            AnswerError::Unreadable(message) => response::error(StatusCode::BAD_GATEWAY, &message),
        }
    }
}

/// Terraform needs the `versions` array; anything else is not a version
/// list, whatever the status code said.
fn check_version_list(body: &str) -> Result<(), NotAVersionList> {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) if v.get("versions").is_some_and(|v| v.is_array()) => Ok(()),
        _ => Err(NotAVersionList),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the version list is not a JSON object with a versions array")]
struct NotAVersionList;

/// What a package's zip needs beside it to be verified again: its
/// version's SHA256SUMS and signature, and its download answer (which
/// holds the signing keys). A run served the zip is served all of them.
pub fn package_closure(package: &Package) -> [ClosureItem; 4] {
    [
        ClosureItem::Artifact(package::zip_path(package).key()),
        ClosureItem::Artifact(checksum_path(package, Artifact::Checksums).key()),
        ClosureItem::Artifact(checksum_path(package, Artifact::Signature).key()),
        ClosureItem::Document(download_key(package)),
    ]
}

/// Index key of a provider's version list.
fn versions_key(addr: &ProviderAddress) -> String {
    format!("providers/versions/{addr}")
}

/// Index key of a package's download answer, and the scope of its grant.
pub fn download_key(package: &Package) -> String {
    format!(
        "providers/download/{}/{}/{}/{}",
        package.address, package.version, package.os, package.arch
    )
}
