//! `/_tfmirror/...`: listing and shrinking the cache, done by the server
//! because it owns the cache and knows what is in use.
//!
//! The endpoints that change things take a `POST` (or `DELETE`) with a
//! JSON body; the router lets only the owner's bearer secret reach them
//! (see `access`).

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use super::App;
use crate::catalog::{self, Entry};
use crate::git::RepoId;
use crate::metrics;
use crate::protocol::admin::{
    Artifacts, DeleteRequest, GcRequest, KeptYoung, PruneRequest, Pruned, Removed, RemovedEntry,
};
use crate::protocol::closure::ClosureItem;
use crate::protocol::git_local::LocalRequest;
use crate::protocol::prepare::PrepareRequest;
use crate::protocol::{Ack, Endpoint, RunStart};
use crate::response::{self, HandlerError, Response};
use crate::store::{gc_plan, now_ms, GcRules, Reason, Removal, Store, StoredArtifact};
use crate::upstream::Forwarded;

/// Metadata that cannot be fetched again once dropped, or never changes.
const KEPT_METADATA: [&str; 6] = [
    "providers/download/",
    "modules/download/",
    "modules/archive-origin/",
    "providers/h1/",
    "providers/verified/",
    "providers/tree-h1/",
];

impl App {
    /// `GET /_tfmirror/artifacts`: what `tfmirror cache list` and `stats`
    /// show.
    pub(super) async fn artifacts(&self) -> Response {
        let store = self.store.clone();
        // Naming a module archive reads its origin record, maybe from disk.
        let named = self.inventory().await.map(|artifacts| {
            tokio::task::spawn_blocking(move || {
                artifacts
                    .iter()
                    .map(|artifact| Entry::new(artifact, &store))
                    .collect::<Vec<_>>()
            })
        });
        let entries = match named {
            Ok(naming) => naming.await,
            Err(failure) => return failure.into_response(),
        };
        match entries {
            Ok(artifacts) => json_ok(&Artifacts {
                cache_dir: self.cache_dir.clone(),
                artifacts,
                metadata_entries: self.store.metadata_entries(),
            }),
            Err(e) => {
                HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
            }
        }
    }

    /// `GET /_tfmirror/metrics`, with the cache sizes read at scrape time.
    pub(super) async fn metrics(&self) -> Response {
        if let Ok(artifacts) = self.inventory().await {
            let mut by_kind = std::collections::BTreeMap::<&str, i64>::new();
            for artifact in &artifacts {
                let kind = catalog::describe(&artifact.key).0.as_str();
                *by_kind.entry(kind).or_default() += artifact.size as i64;
            }
            for kind in ["providers", "modules", "git", "other"] {
                let bytes = by_kind.get(kind).copied().unwrap_or(0);
                metrics::CACHE_BYTES.with_label_values(&[kind]).set(bytes);
            }
        }
        response::full(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::render(),
        )
    }

    /// `GET /_tfmirror/runs/<id>`: what one `exec` run took from the cache
    /// and from upstream so far.
    pub(super) fn run_counters(&self, id: &str) -> Response {
        json_ok(&self.runs.peek(id, &self.journal))
    }

    /// `DELETE /_tfmirror/runs/<id>`: the run is over; its counters are
    /// answered one last time and forgotten.
    pub(super) async fn end_run(&self, id: &str) -> Response {
        self.modules.end_run(id);
        self.git.end_run(id).await;
        self.routes.end_run(id);
        json_ok(&self.runs.take(id, &self.journal))
    }

    /// `POST /_tfmirror/runs/<id>` with `{"workdir": ..., "routes": ...}`:
    /// an `exec` begins; its requests go by its user's `host` blocks, and
    /// for an `init` in `workdir` the module version lists its last run
    /// asked for are fetched ahead.
    pub(super) async fn begin_run(&self, id: &str, request: Request<Incoming>) -> Response {
        let begin = match admin_body(request).await {
            Ok(body) => parse::<RunStart>(&body),
            Err(failure) => Err(failure),
        };
        match begin {
            Ok(begin) => {
                // First: the prefetch below goes through the run's routes.
                self.routes.begin_run(id, &begin.routes);
                if let Some(workdir) = &begin.workdir {
                    self.modules.begin_run(id, workdir);
                }
                json_ok(&Ack {})
            }
            Err(failure) => failure.into_response(),
        }
    }

    /// `POST /_tfmirror/providers/prepare`: the locked providers made ready
    /// in the unpacked tree (see `providers::prepare`).
    pub(super) async fn prepare_providers(
        &self,
        request: Request<Incoming>,
        forwarded: &Forwarded,
    ) -> Response {
        let parsed = match bounded_body(request, MAX_PREPARE_BODY).await {
            Ok(body) => parse::<PrepareRequest>(&body),
            Err(failure) => Err(failure),
        };
        let prepare = match parsed {
            Ok(prepare) => prepare,
            Err(failure) => return failure.into_response(),
        };
        let started = Instant::now();
        let run = prepare.run.clone();
        let forwarded = Forwarded {
            run: run.clone(),
            ..forwarded.clone()
        };
        match self.providers.prepare(prepare, &forwarded).await {
            Ok(prepared) => {
                // Terraform will not ask for these zips: they count for
                // the run here (see `Runs::prepared`).
                if let Some(run) = &run {
                    for zip in &prepared.zips {
                        self.runs.prepared(run, zip, started);
                    }
                }
                json_ok(&prepared.answer)
            }
            Err(bad) => HandlerError::new(bad.status(), bad.to_string()).into_response(),
        }
    }

    /// `POST /_tfmirror/git/local`: mirrors made ready to clone by path
    /// for one run (see `protocol::git_local`).
    pub(super) async fn local_clones(&self, request: Request<Incoming>) -> Response {
        let parsed = match bounded_body(request, MAX_LOCAL_BODY).await {
            Ok(body) => parse::<LocalRequest>(&body),
            Err(failure) => Err(failure),
        };
        let local = match parsed {
            Ok(local) => local,
            Err(failure) => return failure.into_response(),
        };
        let run = local.run.clone();
        // The run is named in the body, not the path: its fetches and
        // problems are the run's (see `run_journal`), and the audit log's
        // record of a clone this causes names it from here.
        let span = super::run_journal::run_span(&run);
        let requester = crate::audit::Requester {
            run: Some(run.clone()),
            ..crate::audit::current_requester()
        };
        let planned = tracing::Instrument::instrument(self.git.local_clones(local), span);
        match crate::audit::serving(requester, planned).await {
            Ok(answer) => {
                // The run clones these by path, never over smart HTTP.
                let cloned: Vec<ClosureItem> = answer
                    .repos
                    .iter()
                    .filter(|repo| repo.path.is_some())
                    .filter_map(|repo| RepoId::from_url(&repo.url))
                    .map(|repo| ClosureItem::GitMirror(repo.mirror_dir().key()))
                    .collect();
                self.runs.closures.add(&run, &cloned);
                json_ok(&answer)
            }
            Err(bad) => HandlerError::new(bad.status(), bad.to_string()).into_response(),
        }
    }

    /// `POST /_tfmirror/{gc,delete,prune}`; `None` for an action the
    /// router does not know.
    pub(super) async fn admin(
        &self,
        action: Option<Endpoint<'_>>,
        request: Request<Incoming>,
    ) -> Response {
        let body = match admin_body(request).await {
            Ok(body) => body,
            Err(failure) => return failure.into_response(),
        };
        let result = match action {
            Some(Endpoint::Gc) => match parse(&body) {
                Ok(request) => self.gc(request).await,
                Err(failure) => Err(failure),
            },
            Some(Endpoint::Delete) => match parse(&body) {
                Ok(request) => self.delete(request).await,
                Err(failure) => Err(failure),
            },
            Some(Endpoint::Prune) => match parse(&body) {
                Ok(request) => self.prune(request).await,
                Err(failure) => Err(failure),
            },
            _ => Err(HandlerError::new(
                StatusCode::NOT_FOUND,
                "not found".to_owned(),
            )),
        };
        result.unwrap_or_else(HandlerError::into_response)
    }

    async fn gc(&self, request: GcRequest) -> Result<Response, HandlerError> {
        let rules = GcRules {
            unused_for: request.unused_for_secs.map(Duration::from_secs),
            max_size: request.max_size,
            min_age: Duration::from_secs(request.min_age_secs),
        };
        let removed = self.run_gc(&rules, request.dry_run).await?;
        Ok(json_ok(&removed))
    }

    /// Removes what the pattern names (see `catalog::Pattern`), derived
    /// trees first: the listing sorts them before the zips they come from
    /// only by chance.
    async fn delete(&self, request: DeleteRequest) -> Result<Response, HandlerError> {
        let pattern = catalog::Pattern::parse(&request.pattern)
            .map_err(|e| HandlerError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let artifacts = self.inventory().await?;
        // Naming a module archive reads its origin record: blocking work.
        let store = self.store.clone();
        let plan = tokio::task::spawn_blocking(move || {
            let derived_first = artifacts
                .iter()
                .filter(|a| a.derived)
                .chain(artifacts.iter().filter(|a| !a.derived));
            derived_first
                .filter(|a| pattern.matches(&catalog::describe_in(&store, &a.key).1, &a.key))
                .map(|a| Removal {
                    key: a.key.clone(),
                    size: a.size,
                    reason: Reason::Requested,
                })
                .collect::<Vec<Removal>>()
        })
        .await
        .map_err(|e| HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Ok(json_ok(&self.carry_out(plan, request.dry_run).await))
    }

    async fn prune(&self, request: PruneRequest) -> Result<Response, HandlerError> {
        let window = match request.older_than_secs {
            Some(secs) => Duration::from_secs(secs),
            None => self.config.metadata_ttl + self.config.stale_while_revalidate,
        };
        let before = now_ms().saturating_sub(window.as_millis() as u64);
        let keep = |key: &str| KEPT_METADATA.iter().any(|prefix| key.starts_with(prefix));
        // A scan of the index, file removals, and a wait for queued
        // document writes: blocking work.
        let store = self.store.clone();
        let dry_run = request.dry_run;
        let pruned = tokio::task::spawn_blocking(move || {
            if dry_run {
                store.count_stale_metadata(before, keep)
            } else {
                store.prune_metadata(before, keep)
            }
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|pruned| pruned)
        .map_err(|e| HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
        if !request.dry_run && pruned > 0 {
            tracing::info!(
                "pruned {pruned} metadata entries older than {}",
                humantime::format_duration(window)
            );
        }
        Ok(json_ok(&Pruned {
            pruned,
            dry_run: request.dry_run,
        }))
    }

    /// Plans by `rules` and removes (unless `dry_run`); also what the
    /// periodic collection runs.
    pub(super) async fn run_gc(
        &self,
        rules: &GcRules,
        dry_run: bool,
    ) -> Result<Removed, HandlerError> {
        let artifacts = self.inventory().await?;
        let plan = gc_plan(&artifacts, rules, now_ms());
        let mut removed = self.carry_out(plan.removals, dry_run).await;
        removed.kept_young = Some(KeptYoung {
            entries: plan.young.entries,
            bytes: plan.young.bytes,
            min_age_secs: rules.min_age.as_secs(),
        });
        if !dry_run {
            metrics::GC_RUNS.inc();
            metrics::GC_BYTES_FREED.inc_by(removed.bytes_freed);
        }
        Ok(removed)
    }

    /// The server's own collection, at start and every `gc_interval`, when
    /// the config sets `gc_unused_for` or `gc_max_size`.
    pub(super) async fn collect_periodically(self: std::sync::Arc<Self>) {
        let gc = &self.config.gc;
        if !gc.is_automatic() {
            return;
        }
        let rules = GcRules {
            unused_for: gc.unused_for,
            max_size: gc.max_size,
            min_age: gc.min_age,
        };
        loop {
            match self.run_gc(&rules, false).await {
                Ok(removed) if !removed.removed.is_empty() => tracing::info!(
                    "garbage collection freed {} bytes in {} artifacts",
                    removed.bytes_freed,
                    removed.removed.len()
                ),
                Ok(_) => {}
                Err(_) => tracing::warn!("garbage collection could not list the cache"),
            }
            tokio::time::sleep(gc.interval).await;
        }
    }

    /// Removes what `plan` names on the blocking pool: a git mirror or an
    /// unpacked tree is a directory tree to delete.
    async fn carry_out(&self, plan: Vec<Removal>, dry_run: bool) -> Removed {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || carry_out(&store, plan, dry_run))
            .await
            .expect("the removal task panicked")
    }

    async fn inventory(&self) -> Result<Vec<StoredArtifact>, HandlerError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.inventory()).await {
            Ok(Ok(artifacts)) => Ok(artifacts),
            Ok(Err(e)) => Err(HandlerError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot list the cache: {e}"),
            )),
            Err(e) => Err(HandlerError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
            )),
        }
    }
}

fn carry_out(store: &Store, plan: Vec<Removal>, dry_run: bool) -> Removed {
    let mut removed = Vec::new();
    for removal in plan {
        if !dry_run {
            if let Err(e) = store.remove(&removal.key) {
                tracing::warn!("cannot remove {}: {e}", removal.key);
                continue;
            }
            tracing::info!(
                "removed {} ({} bytes, {:?})",
                removal.key,
                removal.size,
                removal.reason
            );
        }
        removed.push(RemovedEntry {
            name: catalog::describe_in(store, &removal.key).1,
            path: removal.key,
            size: removal.size,
            reason: removal.reason.into(),
        });
    }
    let bytes_freed = removed.iter().map(|r| r.size).sum();
    Removed {
        removed,
        bytes_freed,
        dry_run,
        kept_young: None,
    }
}

/// Admin requests are a few hundred bytes of JSON.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// A prepare request names up to 1000 providers, each with the hashes of
/// every platform its lock file holds (a dozen lines of 70 bytes).
const MAX_PREPARE_BODY: usize = 4 << 20;

/// A request for local clones names up to 100 repositories, each with a
/// URL and the refs its calls use.
const MAX_LOCAL_BODY: usize = 1 << 20;

/// The body of an admin request, bounded.
async fn admin_body(request: Request<Incoming>) -> Result<bytes::Bytes, HandlerError> {
    bounded_body(request, MAX_ADMIN_BODY).await
}

pub(super) async fn bounded_body(
    request: Request<Incoming>,
    limit: usize,
) -> Result<bytes::Bytes, HandlerError> {
    let limited = http_body_util::Limited::new(request.into_body(), limit);
    match limited.collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) => Err(HandlerError::new(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, HandlerError> {
    serde_json::from_slice(body)
        .map_err(|e| HandlerError::new(StatusCode::BAD_REQUEST, format!("bad request: {e}")))
}

pub(super) fn json_ok(value: &impl Serialize) -> Response {
    response::json(
        StatusCode::OK,
        serde_json::to_string(value).expect("serializes"),
    )
}
