//! The Provider Network Mirror Protocol, under `/providers/`.
//!
//! A `network_mirror` in a CLI config's `provider_installation` makes
//! Terraform read every provider from one URL, with no registry, no
//! signature and no service discovery: the mirror is trusted, and its
//! hashes go into the lock file. So the answers are made from the same
//! verified cache as the registry proxy's, and when the upstream is down
//! (or was never there: a directory imported with `tfmirror cache import`)
//! from the zips on disk alone.
//!
//! - `<host>/<ns>/<type>/index.json` → `{"versions":{"1.2.0":{}}}`
//! - `<host>/<ns>/<type>/<version>.json` → `{"archives":{"linux_amd64":
//!   {"url":"terraform-provider-..._linux_amd64.zip","hashes":[...]}}}`
//! - `<host>/<ns>/<type>/terraform-provider-<type>_<version>_<os>_<arch>.zip`,
//!   the file name the packed layout and `terraform providers mirror` use.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use hyper::StatusCode;
use serde_json::json;

use super::hashes;
use super::package::zip_path;
use super::route::{Package, ProviderAddress};
use super::verified;
use super::{AnswerError, Providers};
use crate::policy;
use crate::request::{unproxied, validate_segments, RequestContext, RouteError};
use crate::response::{self, HandlerError, Response};
use crate::store::{Bucket, Document, FetchError, Freshness, Provenance, RelPath, Segment};

/// Download answers fetched at once for a `<version>.json`: one per
/// platform, and a provider may have a dozen.
const PLATFORM_CONCURRENCY: usize = 8;

/// `(os, arch)` pairs a version is built for.
type Platforms = Vec<(Segment, Segment)>;

enum NetworkMirrorRoute {
    Index(ProviderAddress),
    Version(ProviderAddress, Segment),
    Zip(Package),
}

impl NetworkMirrorRoute {
    fn parse(segments: &[String]) -> Result<NetworkMirrorRoute, RouteError> {
        let valid = validate_segments(segments)?;
        let [host, namespace, kind, file] = valid.as_slice() else {
            return Err(RouteError::NotFound);
        };
        let addr = ProviderAddress {
            host: host.clone(),
            namespace: namespace.clone(),
            kind: kind.clone(),
        };
        let file = file.as_str();
        if file == "index.json" {
            return Ok(NetworkMirrorRoute::Index(addr));
        }
        if let Some(version) = file.strip_suffix(".json") {
            let version = Segment::new(version).map_err(RouteError::BadName)?;
            return Ok(NetworkMirrorRoute::Version(addr, version));
        }
        let package = Package::from_zip_name(&addr, file).ok_or(RouteError::NotFound)?;
        Ok(NetworkMirrorRoute::Zip(package))
    }

    /// What `[policy]` judges: the provider, and the version when the
    /// request names one.
    fn artifact(&self) -> policy::Artifact {
        match self {
            NetworkMirrorRoute::Index(addr) => policy::Artifact::provider(addr, None),
            NetworkMirrorRoute::Version(addr, version) => {
                policy::Artifact::provider(addr, Some(version.as_str()))
            }
            NetworkMirrorRoute::Zip(p) => {
                policy::Artifact::provider(&p.address, Some(p.version.as_str()))
            }
        }
    }
}

/// The route of a zip: what a `PUT` may name.
pub(super) fn zip_route(segments: &[String]) -> Result<Package, RouteError> {
    match NetworkMirrorRoute::parse(segments)? {
        NetworkMirrorRoute::Zip(package) => Ok(package),
        NetworkMirrorRoute::Index(_) | NetworkMirrorRoute::Version(..) => Err(RouteError::NotFound),
    }
}

/// Index key prefix of a cached zip's `h1:` values, followed by the zip's
/// key.
pub(super) const H1_KEY_PREFIX: &str = "providers/h1/";

impl Providers {
    /// Handles `/providers/<segments...>`.
    pub async fn handle_mirror(&self, segments: &[String], ctx: &RequestContext) -> Response {
        let route = match NetworkMirrorRoute::parse(segments) {
            Ok(route) => route,
            Err(e) => return e.response("network mirror"),
        };
        let host = match &route {
            NetworkMirrorRoute::Index(addr) | NetworkMirrorRoute::Version(addr, _) => &addr.host,
            NetworkMirrorRoute::Zip(package) => &package.address.host,
        };
        if let Some(refusal) = unproxied(&self.config, host) {
            return refusal;
        }
        if let Some(refusal) = policy::check::refused(&self.policy, route.artifact()) {
            return refusal;
        }
        match route {
            NetworkMirrorRoute::Index(addr) => self.mirror_index(&addr, ctx).await,
            NetworkMirrorRoute::Version(addr, version) => {
                self.mirror_version(&addr, &version, ctx).await
            }
            NetworkMirrorRoute::Zip(package) => self.mirror_zip(&package, ctx).await,
        }
    }

    async fn mirror_index(&self, addr: &ProviderAddress, ctx: &RequestContext) -> Response {
        let listed = self.upstream_versions(addr, ctx).await;
        let mut versions: BTreeMap<String, serde_json::Value> = match listed {
            Ok(list) => list.into_iter().map(|(v, _)| (v, json!({}))).collect(),
            Err(failure) if failure.denies_access() => {
                return response::fetch_error(&addr.to_string(), failure)
            }
            Err(failure) => match self.local_packages(addr).await {
                Some(local) => local.into_keys().map(|v| (v, json!({}))).collect(),
                None => return response::fetch_error(&addr.to_string(), failure),
            },
        };
        policy::check::mirror_versions(&self.policy, &addr.to_string(), &mut versions);
        response::json(StatusCode::OK, json!({ "versions": versions }).to_string())
    }

    async fn mirror_version(
        &self,
        addr: &ProviderAddress,
        version: &Segment,
        ctx: &RequestContext,
    ) -> Response {
        let platforms = match self.upstream_versions(addr, ctx).await {
            Ok(list) => match list.into_iter().find(|(v, _)| v == version.as_str()) {
                Some((_, platforms)) => platforms,
                None => return not_found(&format!("{addr} has no version {version}")),
            },
            // The zips on disk stand in for an unreachable upstream, never
            // for a list this request may not read.
            Err(failure) if failure.denies_access() => {
                return response::fetch_error(&addr.to_string(), failure)
            }
            Err(failure) => match self.local_packages(addr).await {
                Some(mut local) => match local.remove(version.as_str()) {
                    Some(platforms) => platforms,
                    None => return not_found(&format!("no cached {addr} {version}")),
                },
                None => return response::fetch_error(&addr.to_string(), failure),
            },
        };
        let archives: BTreeMap<String, serde_json::Value> = futures_util::stream::iter(platforms)
            .map(|(os, arch)| {
                let package = Package {
                    address: addr.clone(),
                    version: version.clone(),
                    os,
                    arch,
                };
                async move { self.archive_entry(&package, ctx).await }
            })
            .buffer_unordered(PLATFORM_CONCURRENCY)
            .filter_map(|entry| async move { entry })
            .collect()
            .await;
        response::json(StatusCode::OK, json!({ "archives": archives }).to_string())
    }

    /// One platform's entry: the zip's relative URL and the hashes known
    /// for it, `zh:` from the registry's answer (offline, from the cached
    /// zip), `h1:` once the zip is cached. Only a verified cached zip
    /// counts: Terraform writes what is listed here into the lock file
    /// without checking any signature. A platform whose answer cannot be
    /// had is left out rather than failing the whole version.
    async fn archive_entry(
        &self,
        package: &Package,
        ctx: &RequestContext,
    ) -> Option<(String, serde_json::Value)> {
        let rel = zip_path(package);
        let verified = verified::verification(&self.store, package).await.is_some();
        let sha256 = match self.download_answer(package, &ctx.forwarded).await {
            Ok(answer) => answer.shasum,
            Err(_) if verified => self.store.sha256(&rel).await?,
            Err(_) => {
                tracing::warn!("leaving {package} out of the mirror's answer: no download answer");
                return None;
            }
        };
        let mut hashes = Vec::new();
        if verified {
            hashes.extend(self.h1(package, &rel).await);
        }
        hashes.push(format!("zh:{sha256}"));
        let platform = package.platform();
        // Absolute, with the caller's credential in the path: Terraform
        // downloads the archive without the token it sent for this answer.
        let url =
            crate::request::own_url(&ctx.base_url, rel.segments().iter().map(Segment::as_str));
        Some((platform, json!({ "url": url, "hashes": hashes })))
    }

    /// The zip's `h1:` hashes (see [`hashes::ZipH1`]), computed once and
    /// kept in the index: a cached zip never changes, and hashing means
    /// unpacking it.
    pub(super) async fn h1(&self, package: &Package, rel: &RelPath) -> Vec<String> {
        let key = format!("{H1_KEY_PREFIX}{}", rel.key());
        let path = self.store.path(rel);
        let served = self
            .store
            .documents()
            .get(
                &key,
                Freshness::IMMUTABLE,
                HASH_DEADLINE,
                move || async move {
                    let h1 = tokio::task::spawn_blocking(move || hashes::zip_h1(&path))
                        .await
                        .map_err(|e| FetchError::Unavailable(e.to_string()))?
                        .map_err(|e| FetchError::Unavailable(e.to_string()))?;
                    Ok(h1.values().join(" "))
                },
            )
            .await;
        match served {
            Ok(served) => served.doc.body.split(' ').map(str::to_owned).collect(),
            Err(e) => {
                tracing::warn!("cannot compute the h1 hash of {package}: {e}");
                Vec::new()
            }
        }
    }

    /// Only a verified zip, and through the package's download answer like
    /// the registry route, so a zip fetched for a private answer goes only
    /// to whom that answer may go. With no answer on record and the
    /// upstream unreachable, a verified zip on disk (one `tfmirror cache
    /// import` stored) is served as it is.
    async fn mirror_zip(&self, package: &Package, ctx: &RequestContext) -> Response {
        let rel = zip_path(package);
        let cached = self.store.has_file(&rel).await;
        if cached && verified::verification(&self.store, package).await.is_none() {
            return unverified(package);
        }
        let served = match self
            .fetch_download_answer(package, &ctx.forwarded, None)
            .await
        {
            Ok(answer) => self.serve_zip(package, &answer, ctx).await,
            Err(AnswerError::Fetch(failure @ FetchError::Unavailable(_))) => {
                match self.store.open_artifact(&rel).await {
                    Some((file, size)) => response::file(file, size, "application/zip"),
                    None => response::fetch_error(&package.to_string(), failure),
                }
            }
            Err(failure) => failure.response(package),
        };
        response::touched(served, super::package_closure(package))
    }

    /// The upstream's versions of a provider with their platforms.
    async fn upstream_versions(
        &self,
        addr: &ProviderAddress,
        ctx: &RequestContext,
    ) -> Result<Vec<(String, Platforms)>, FetchError> {
        let served = self.version_list(addr, ctx).await?;
        if let Provenance::StaleFallback(why) = &served.provenance {
            tracing::warn!("serving a cached version list for {addr}: {why}");
        }
        parse_versions(&served.doc)
            .map_err(|e| FetchError::Unavailable(format!("the version list of {addr}: {e}")))
    }

    /// Versions and platforms of the zips on disk, or `None` when there
    /// are none.
    async fn local_packages(&self, addr: &ProviderAddress) -> Option<BTreeMap<String, Platforms>> {
        let dir = self.store.path(&Bucket::Providers.join([
            addr.host.clone(),
            addr.namespace.clone(),
            addr.kind.clone(),
        ]));
        let mut entries = tokio::fs::read_dir(dir).await.ok()?;
        let mut found: BTreeMap<String, Platforms> = BTreeMap::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            if let Some(package) = Package::from_zip_name(addr, &name.to_string_lossy()) {
                found
                    .entry(package.version.to_string())
                    .or_default()
                    .push((package.os, package.arch));
            }
        }
        (!found.is_empty()).then_some(found)
    }
}

/// Hashing a zip is local work; it gets as long as it takes.
const HASH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// A cached zip with no verification record is not served: this protocol
/// has no signature for Terraform to check.
fn unverified(package: &Package) -> Response {
    let message = format!(
        "the cached {package} was never verified against the registry's signature or a lock \
         file, so it is not served; delete it (`tfmirror cache delete '{package}'`) to fetch it \
         from the registry again, or import it again with `tfmirror cache import DIR --lock-file FILE`"
    );
    HandlerError::new(StatusCode::NOT_FOUND, message).into_response()
}

fn not_found(message: &str) -> Response {
    response::error(StatusCode::NOT_FOUND, message)
}

/// Why a registry's version list cannot be read.
#[derive(Debug, thiserror::Error)]
enum BadVersionList {
    #[error("{0}")]
    NotJson(serde_json::Error),
    #[error("{0}")]
    BadPlatform(crate::store::SegmentError),
}

/// The registry's `{"versions":[{"version":..,"platforms":[{"os","arch"}]}]}`.
fn parse_versions(doc: &Document) -> Result<Vec<(String, Platforms)>, BadVersionList> {
    #[derive(serde::Deserialize)]
    struct List {
        versions: Vec<Version>,
    }
    #[derive(serde::Deserialize)]
    struct Version {
        version: String,
        #[serde(default)]
        platforms: Vec<Platform>,
    }
    #[derive(serde::Deserialize)]
    struct Platform {
        os: String,
        arch: String,
    }
    let list: List = serde_json::from_str(&doc.body).map_err(BadVersionList::NotJson)?;
    let segment = |s: &str| Segment::new(s).map_err(BadVersionList::BadPlatform);
    list.versions
        .into_iter()
        .map(|v| {
            let platforms = v
                .platforms
                .iter()
                .map(|p| Ok((segment(&p.os)?, segment(&p.arch)?)))
                .collect::<Result<_, BadVersionList>>()?;
            Ok((v.version, platforms))
        })
        .collect()
}
