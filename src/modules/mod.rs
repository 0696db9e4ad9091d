//! The module registry protocol, proxied and cached, and the HTTP archives
//! its download locations point at.
//!
//! Terraform has no module cache of its own: every root module downloads
//! every module again. Version lists and download locations are cached as
//! metadata; a location that is an HTTP archive is rewritten to a copy
//! stored here; other sources (`git::`, `s3::`, ...) pass through unchanged.

mod http_archives;
mod location;
mod prefetch;
mod route;
mod source;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hyper::header::HeaderValue;
use hyper::StatusCode;

use crate::audit::Kind;
use crate::config::Config;
use crate::policy::{self, Artifact};
use crate::protocol::closure::ClosureItem;
use crate::response::{self, HandlerError, Response};
use crate::store::{now_ms, Document, FetchError, Freshness, IndexError, Served, Store};
use crate::upstream::{ApiRequest, Credential, Forwarded, RegistryClient, Upstream};
use http_archives::ArchiveName;
pub use http_archives::{origin_key, ArchiveOrigin};
use prefetch::RunPlans;
use route::{ModuleAddr, ModuleRoute};
use source::{split_subdir, subdir_is_safe, ArchiveSource, GitSource};

use crate::git::{GitMirrors, RepoId};

use crate::request::{own_url, unproxied, RequestContext};

/// Terraform reads a module's version list before it picks a version, and
/// fails if the list lacks the one its constraint asks for; the proxy never
/// sees the constraint. So a cached list is revalidated on every request
/// (within an `exec` run: fetched since the run began, see [`prefetch`]),
/// and served as it is when the upstream fails or takes longer than this.
const VERSIONS_REVALIDATE: Freshness = Freshness::within(Some(Duration::ZERO), Duration::ZERO);
const VERSIONS_DEADLINE: Duration = Duration::from_secs(2);
/// Download locations of a published version do not change.
const LOCATION_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Modules {
    config: Arc<Config>,
    /// `[policy]` as in effect now (the config's is read at start only).
    policy: policy::LivePolicy,
    store: Arc<Store>,
    upstream: Upstream,
    registry: RegistryClient,
    git: GitMirrors,
    /// Tokens of the requests that resolved each archive's location, by
    /// archive URL, for an archive on the registry's own host. Memory only.
    credentials: Arc<Mutex<HashMap<String, Credential>>>,
    plans: RunPlans,
}

impl Modules {
    pub fn new(
        config: Arc<Config>,
        policy: policy::LivePolicy,
        store: Arc<Store>,
        upstream: Upstream,
        registry: RegistryClient,
        git: GitMirrors,
    ) -> Modules {
        Modules {
            config,
            policy,
            store,
            upstream,
            registry,
            git,
            credentials: Arc::default(),
            plans: RunPlans::default(),
        }
    }

    /// An `exec` run of `init` from `workdir` begins: the version lists the
    /// last run from there asked for are fetched now, all at once, instead
    /// of one at a time as Terraform gets to them.
    pub fn begin_run(&self, run: &str, workdir: &str) {
        let (key, started_ms) = self.plans.begin(run, workdir);
        let wanted: Vec<ModuleAddr> = self
            .store
            .documents()
            .cached(&key)
            .map(|doc| prefetch::parse_remembered(&doc.body))
            .unwrap_or_default()
            .iter()
            .filter_map(|addr| ModuleAddr::parse(addr))
            .filter(|addr| self.config.is_proxied(addr.host.as_str()))
            .filter(|addr| policy::check::allows(&self.policy, &Artifact::module(addr, None)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        tracing::debug!(
            "run {run}: fetching {} module version lists ahead",
            wanted.len()
        );
        let freshness = Freshness::fetched_since(started_ms);
        let this = self.clone();
        // Fetched as the run: through its user's `host` blocks, and the
        // audit log names it.
        let forwarded = Forwarded {
            run: Some(run.to_owned()),
            ..Forwarded::default()
        };
        tokio::spawn(async move {
            futures_util::stream::iter(wanted)
                .for_each_concurrent(prefetch::CONCURRENCY, |addr| {
                    let (this, forwarded) = (this.clone(), forwarded.clone());
                    async move {
                        let _ = this.fetch_versions(&addr, &forwarded, freshness).await;
                    }
                })
                .await;
        });
    }

    /// The run's counters were collected: its plan is done.
    pub fn end_run(&self, run: &str) {
        self.plans.end(run);
    }

    /// Handles `/v1/modules/<segments...>`.
    pub async fn handle(&self, segments: &[String], ctx: &RequestContext) -> Response {
        let route = match ModuleRoute::parse(segments) {
            Ok(route) => route,
            Err(e) => return e.response("module"),
        };
        let (ModuleRoute::Versions(addr) | ModuleRoute::Download(addr, _)) = &route;
        if let Some(refusal) = unproxied(&self.config, &addr.host) {
            return refusal;
        }
        if let Some(refusal) = policy::check::refused(&self.policy, route.artifact()) {
            return refusal;
        }
        match &route {
            ModuleRoute::Versions(addr) => self.versions(addr, ctx).await,
            ModuleRoute::Download(addr, version) => {
                self.download(addr, version.as_str(), ctx).await
            }
        }
    }

    /// Handles `/modules/archives/<file>`.
    pub async fn handle_archive(&self, file_name: &str, ctx: &RequestContext) -> Response {
        self.archive(file_name, &ctx.forwarded).await
    }

    async fn versions(&self, addr: &ModuleAddr, ctx: &RequestContext) -> Response {
        let run = ctx.run.as_deref();
        let freshness = self.plans.freshness(run).unwrap_or(VERSIONS_REVALIDATE);
        let served = self.fetch_versions(addr, &ctx.forwarded, freshness).await;
        let served = policy::check::module_versions(&self.policy, &addr.to_string(), served);
        // A list that needed a token, or that failed, is not worth fetching
        // early next time: the early fetch has no token, and a 404 is not
        // cached, so Terraform would ask again anyway.
        if served.is_ok() && ctx.forwarded.authorization.is_none() {
            self.remember(run, addr);
        }
        response::touched(
            response::document(&addr.to_string(), served),
            [ClosureItem::Document(versions_key(addr))],
        )
    }

    async fn fetch_versions(
        &self,
        addr: &ModuleAddr,
        forwarded: &Forwarded,
        freshness: Freshness,
    ) -> Result<Served, FetchError> {
        let request = self.api_request(
            versions_key(addr),
            addr,
            addr.registry_path(&["versions"]),
            freshness.shared(),
            VERSIONS_DEADLINE,
            (Kind::VersionList, addr.to_string()),
        );
        self.registry
            .get(request, forwarded, |answer, _| {
                match serde_json::from_str::<serde_json::Value>(&answer.body) {
                    Ok(v) if v.get("modules").is_some_and(|m| m.is_array()) => {
                        Ok(answer.body.clone())
                    }
                    _ => {
                        Err("the version list is not a JSON object with a modules array".to_owned())
                    }
                }
            })
            .await
    }

    /// Keeps the list of addresses this run asked for, for the next run
    /// from the same directory.
    fn remember(&self, run: Option<&str>, addr: &ModuleAddr) {
        let Some(remembered) = self.plans.record(run, &addr.to_string()) else {
            return;
        };
        let doc = Document::public(now_ms(), remembered.body);
        if let Err(e) = self.store.documents().put(&remembered.key, &doc) {
            tracing::warn!("cannot remember the module lists of this run: {e}");
        }
    }

    async fn download(&self, addr: &ModuleAddr, version: &str, ctx: &RequestContext) -> Response {
        let what = format!("{addr} {version}");
        let key = format!("modules/download/{addr}/{version}");
        let request = self.api_request(
            key.clone(),
            addr,
            addr.registry_path(&[version, "download"]),
            Freshness::IMMUTABLE,
            LOCATION_DEADLINE,
            (Kind::DownloadAnswer, what.clone()),
        );
        let served = self
            .registry
            .get(request, &ctx.forwarded, |answer, url| {
                location::from_upstream(answer, url)
            })
            .await;
        let served = match served {
            Ok(served) => served,
            Err(e) => return response::fetch_error(&what, e),
        };
        response::log_stale(&what, &served.provenance);
        let source = match location::from_stored(&served.doc.body) {
            Ok(source) => source,
            Err(e) => return response::error(StatusCode::BAD_GATEWAY, &e.to_string()),
        };
        match self.rewrite(addr, &source, &served.doc, ctx).await {
            Ok(location) => {
                response::touched(terraform_get(&location), [ClosureItem::Document(key)])
            }
            Err(RewriteRefusal::Policy(refusal)) => policy::check::response(&refusal),
            Err(reason) => HandlerError::new(
                StatusCode::BAD_GATEWAY,
                format!("refusing {what}: {reason}"),
            )
            .into_response(),
        }
    }

    /// What Terraform is told to fetch: tfmirror's copy of an HTTP archive,
    /// or the upstream source unchanged. `answer` is the stored download
    /// answer `source` came from: when it is private, so is the archive.
    async fn rewrite(
        &self,
        addr: &ModuleAddr,
        source: &str,
        answer: &Document,
        ctx: &RequestContext,
    ) -> Result<String, RewriteRefusal> {
        if let (_, Some(subdir)) = split_subdir(source) {
            if !subdir_is_safe(&subdir) {
                return Err(RewriteRefusal::SubdirLeaves(subdir));
            }
        }
        if let Some(git) = GitSource::parse(source) {
            policy::check::enforce(&self.policy, Artifact::Git(git.url.clone()))?;
            return self.rewrite_git(addr, git, ctx).await;
        }
        let Some(archive) = ArchiveSource::parse(source) else {
            tracing::debug!("{addr}: passing source {source} through unchanged");
            return Ok(source.to_owned());
        };
        policy::check::enforce(&self.policy, Artifact::Archive(archive.url.to_string()))?;
        let key = archive.key();
        self.remember_origin(&key, &archive, addr, answer, ctx)?;
        let file_name = ArchiveName::url_name(
            &key,
            archive.extension,
            self.registry
                .grant_for(&origin_key(&key), answer)
                .as_deref(),
        );
        let mut location = own_url(&ctx.base_url, ["modules", "archives", &file_name]);
        if let Some(subdir) = &archive.subdir {
            location.push_str("//");
            location.push_str(subdir);
        }
        Ok(location)
    }

    /// A `git::` source under a mirrored prefix is served from the mirror:
    /// as a tar.gz of the resolved commit, or, when the repository has
    /// submodules that an archive would lack, over smart HTTP so git's own
    /// submodule handling runs.
    async fn rewrite_git(
        &self,
        addr: &ModuleAddr,
        git: GitSource,
        ctx: &RequestContext,
    ) -> Result<String, RewriteRefusal> {
        let repo = match RepoId::from_url(&git.url) {
            Some(repo) if self.config.is_git_mirrored(&repo) => repo,
            _ => {
                tracing::debug!("{addr}: {} is not mirrored; passing it through", git.url);
                return Ok(format_git_source(&format!("git::{}", git.url), &git));
            }
        };
        let resolved = self.git.resolve(&repo, git.reference.as_deref()).await?;
        if resolved.has_submodules {
            let smart = format!("git::{}/git/{}", ctx.base_url, repo.proxy_path());
            return Ok(format_git_source(&smart, &git));
        }
        let mut location = GitMirrors::archive_url(&ctx.base_url, &repo, &resolved.commit);
        if let Some(subdir) = &git.subdir {
            location.push_str("//");
            location.push_str(subdir);
        }
        Ok(location)
    }

    /// Records where the archive comes from, and, with the hash of the
    /// credential that fetched `answer`, that it is private. A record once
    /// written stays, except that a public answer naming the same archive
    /// makes it public.
    fn remember_origin(
        &self,
        key: &str,
        archive: &ArchiveSource,
        addr: &ModuleAddr,
        answer: &Document,
        ctx: &RequestContext,
    ) -> Result<(), RewriteRefusal> {
        if let Some(credential) = &ctx.forwarded.authorization {
            self.credentials
                .lock()
                .expect("credential map poisoned")
                .insert(archive.url.to_string(), credential.clone());
        }
        let doc_key = origin_key(key);
        let recorded = self.store.documents().cached(&doc_key);
        if recorded
            .is_some_and(|r| r.credential_sha256.is_none() || answer.credential_sha256.is_some())
        {
            return Ok(());
        }
        let origin = ArchiveOrigin {
            url: archive.url.to_string(),
            registry_host: addr.host.to_string(),
            module: Some(addr.to_string()),
        };
        let doc = Document {
            fetched_at_ms: 0,
            body: serde_json::to_string(&origin)
                .expect("origins serialize")
                .into(),
            credential_sha256: answer.credential_sha256.clone(),
        };
        self.store
            .documents()
            .put(&doc_key, &doc)
            .map_err(RewriteRefusal::Origin)
    }

    fn api_request(
        &self,
        key: String,
        addr: &ModuleAddr,
        path: Vec<String>,
        freshness: Freshness,
        deadline: Duration,
        what: (Kind, String),
    ) -> ApiRequest {
        ApiRequest {
            key,
            host: addr.host.to_string(),
            service: "modules.v1",
            path,
            freshness,
            deadline,
            grant: None,
            what,
        }
    }
}

/// `<package>//<subdir>?<query>`, the order go-getter reads.
fn format_git_source(package: &str, git: &GitSource) -> String {
    let mut source = package.to_owned();
    if let Some(subdir) = &git.subdir {
        source.push_str("//");
        source.push_str(subdir);
    }
    let query = git.query();
    if !query.is_empty() {
        source.push('?');
        source.push_str(&query);
    }
    source
}

/// The 204 answer with `X-Terraform-Get`, which Terraform and OpenTofu both read.
fn terraform_get(location: &str) -> Response {
    let mut response = response::full(StatusCode::NO_CONTENT, "text/plain", bytes::Bytes::new());
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert("X-Terraform-Get", value);
            response
        }
        Err(_) => response::error(
            StatusCode::BAD_GATEWAY,
            "the download location is not a valid header value",
        ),
    }
}

/// Why a module's download location is not rewritten to tfmirror's copy;
/// the client is refused with it.
#[derive(Debug, thiserror::Error)]
enum RewriteRefusal {
    #[error("its subdirectory {0:?} leaves the package")]
    SubdirLeaves(String),
    #[error(transparent)]
    Git(#[from] crate::git::mirror::GitError),
    #[error("cannot record the archive's origin: {0}")]
    Origin(IndexError),
    #[error(transparent)]
    Policy(#[from] crate::policy::Refusal),
}

/// Index key of a module's version list.
fn versions_key(addr: &ModuleAddr) -> String {
    format!("modules/versions/{addr}")
}
