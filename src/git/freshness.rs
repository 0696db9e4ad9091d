//! Keeping mirrors fresh: the freshness rules of registry metadata applied
//! to a whole repository, with one fetch per mirror at a time.
//!
//! gix's network code blocks, so every mirror operation runs on tokio's
//! blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::bundle::BundleShelf;
use super::bundle_sharing::BundleSharing;
use super::mirror::{GitError, Mirror, Updated};
use super::refcheck;
use super::refs;
use super::repack;
use super::repo_id::RepoId;
use crate::audit::{AuditLog, Kind, Record};
use crate::config::Config;
use crate::response::{self, Response};
use crate::sealed::Sealed;
use crate::store::freshness::Age;
use crate::store::{KeyedLocks, OncePerKey, Store};

#[derive(Clone)]
pub struct GitMirrors {
    pub(super) config: Arc<Config>,
    /// `[policy]` as in effect now (the config's is read at start only).
    pub(super) policy: crate::policy::LivePolicy,
    pub(super) store: Arc<Store>,
    /// Mirrors with a background refresh under way.
    refreshing: OncePerKey,
    /// One upstream ref check per mirror at a time.
    checks: KeyedLocks,
    /// When each mirror's last ref check ended, by upstream URL: a request
    /// that arrived while a check ran takes that check's outcome.
    checked: Arc<Mutex<HashMap<String, (Instant, Checked)>>>,
    /// `git upload-pack` processes serving clients at once
    /// (`git_max_processes`): each is a process with its own memory, so a
    /// burst of fetches queues here instead of starting one per request.
    upload_packs: Arc<Semaphore>,
    /// The shared tier for whole mirrors, when there is one: new mirrors
    /// are seeded from it, changed ones shared to it.
    bundles: Option<Arc<BundleSharing>>,
    /// Where each fetch from an upstream is recorded.
    audit: AuditLog,
}

/// How long a ref check may take before the mirror is served as it is: a
/// slow or unreachable upstream costs each clone this much at most.
const CHECK_BUDGET: Duration = Duration::from_secs(2);

/// What a ref check found out about a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// The mirror has the upstream's refs as of now, fetched if needed.
    Current,
    /// The upstream could not be asked; the mirror is as it was.
    Unknown,
}

/// A ref resolved in a mirror.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub commit: gix::ObjectId,
    /// The tree has a `.gitmodules`: git must clone it, an archive would
    /// lack the submodules.
    pub has_submodules: bool,
}

impl GitMirrors {
    pub fn new(
        config: Arc<Config>,
        policy: crate::policy::LivePolicy,
        store: Arc<Store>,
    ) -> GitMirrors {
        GitMirrors {
            policy,
            store,
            refreshing: OncePerKey::default(),
            checks: KeyedLocks::default(),
            checked: Arc::default(),
            upload_packs: Arc::new(Semaphore::new(config.git_max_processes)),
            bundles: None,
            audit: AuditLog::default(),
            config,
        }
    }

    /// Records every fetch of a mirror from its upstream in `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> GitMirrors {
        self.audit = audit;
        self
    }

    /// Seeds new mirrors from `shelf`'s bundles and offers it a bundle of
    /// each mirror whose refs changed (see `bundle_sharing`). Without one,
    /// mirrors are cloned from and kept with their upstreams alone.
    #[allow(
        dead_code,
        reason = "the shared tier (issue 18) will construct the shelf; until then, tests do"
    )]
    pub fn with_bundle_shelf(mut self, shelf: Arc<dyn BundleShelf>) -> GitMirrors {
        self.bundles = Some(Arc::new(BundleSharing::new(shelf)));
        self
    }

    /// Waits for a place among the `git upload-pack` processes allowed at
    /// once; dropping the permit gives it back.
    pub(super) async fn upload_pack_slot(&self) -> OwnedSemaphorePermit {
        self.upload_packs
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Refuses a repository outside the `[git] mirror` prefixes. Every route
    /// asks this before it touches a mirror, and [`Self::update_now`] again
    /// before any fetch: a client names the repository in its request, and
    /// must not make the server clone what the config does not name.
    pub(super) fn check_mirrored(&self, repo: &RepoId) -> Result<(), GitError> {
        if self.config.is_git_mirrored(repo) {
            Ok(())
        } else {
            Err(GitError::NotMirrored {
                repo: repo.upstream_url(),
            })
        }
    }

    /// A route's answer for a repository outside the prefixes: 403, saying
    /// which key to change; `None` when the repository is mirrored.
    pub(super) fn refuse_unmirrored(&self, repo: &RepoId) -> Option<Response> {
        let refused = self.check_mirrored(repo).err()?;
        Some(response::error(StatusCode::FORBIDDEN, &refused.to_string()))
    }

    pub fn mirror(&self, repo: &RepoId) -> Mirror {
        Mirror::new(self.store.path(&repo.mirror_dir()), repo.upstream_url())
    }

    /// The mirror, created or refreshed as its age requires. A refresh that
    /// fails leaves the existing mirror in use, with one log line.
    pub async fn fresh(&self, repo: &RepoId) -> Result<Mirror, GitError> {
        let mirror = self.mirror(repo);
        let ttl = self.config.metadata_ttl;
        match self.age_class(&mirror).await {
            Some(Age::Fresh) => Ok(mirror),
            Some(Age::Revalidate) => {
                self.refresh_in_background(repo);
                Ok(mirror)
            }
            Some(Age::Expired) | None => {
                self.update_now(repo, SystemTime::now().checked_sub(ttl))
                    .await
            }
        }
    }

    /// The mirror, made current with its upstream: created when missing,
    /// else its refs checked against the upstream's and fetched when they
    /// differ, so that a tag pushed a moment ago is served at once rather
    /// than after `metadata_ttl`. When the upstream cannot be asked within
    /// [`CHECK_BUDGET`], the mirror is served as it is, and `metadata_ttl`
    /// still bounds its age: past it, a refresh runs in the background.
    ///
    /// Single flight: requests that arrive while a check of the mirror runs
    /// wait for it and take its outcome, fetch included.
    pub(super) async fn current(&self, repo: &RepoId) -> Result<(Mirror, Checked), GitError> {
        let mirror = self.mirror(repo);
        if !exists(&mirror).await {
            return Ok((self.fresh(repo).await?, Checked::Current));
        }
        if self.sealed().is_some() {
            return Ok((mirror, Checked::Unknown));
        }
        let key = repo.upstream_url();
        let asked = Instant::now();
        let _turn = self.checks.lock(&key).await;
        if let Some(outcome) = self.checked_since(&key, asked) {
            return Ok((mirror, outcome));
        }
        let outcome = self.check_and_fetch(repo, &mirror).await;
        self.checked
            .lock()
            .expect("check times poisoned")
            .insert(key, (Instant::now(), outcome));
        Ok((mirror, outcome))
    }

    /// The outcome of a check of `key` that ended after `asked`.
    fn checked_since(&self, key: &str, asked: Instant) -> Option<Checked> {
        let checked = self.checked.lock().expect("check times poisoned");
        let (ended, outcome) = checked.get(key)?;
        (*ended >= asked).then_some(*outcome)
    }

    /// Checks the mirror's refs against the upstream's and fetches when
    /// they differ. Failures leave the mirror as it is, with one log line.
    async fn check_and_fetch(&self, repo: &RepoId, mirror: &Mirror) -> Checked {
        let failure = match self.upstream_matches(mirror).await {
            Ok(true) => return Checked::Current,
            Ok(false) => match self.fetch_now(repo, None).await {
                Ok(()) => return Checked::Current,
                Err(e) => e,
            },
            Err(e) => e,
        };
        tracing::warn!(
            "cannot bring the mirror of {repo} up to date, using it as it is: {failure}"
        );
        if self.is_older_than_ttl(mirror).await {
            self.refresh_in_background(repo);
        }
        Checked::Unknown
    }

    /// Whether the upstream's refs are the mirror's, asked on the blocking
    /// pool and given up after [`CHECK_BUDGET`]. A check given up on may
    /// run on until its connection fails; nobody waits for it.
    async fn upstream_matches(&self, mirror: &Mirror) -> Result<bool, GitError> {
        if let Some(sealed) = self.sealed() {
            return Err(GitError::Offline(sealed.refuse(&mirror.upstream)));
        }
        let worker = mirror.clone();
        let check =
            tokio::task::spawn_blocking(move || refcheck::matches_upstream(&worker, CHECK_BUDGET));
        match tokio::time::timeout(CHECK_BUDGET, check).await {
            Ok(joined) => {
                joined.map_err(|e| GitError::Fetch(format!("ref check task failed: {e}")))?
            }
            Err(_) => Err(GitError::Fetch(format!(
                "{} did not list its refs within {CHECK_BUDGET:?}",
                mirror.upstream
            ))),
        }
    }

    async fn is_older_than_ttl(&self, mirror: &Mirror) -> bool {
        self.age_class(mirror).await != Some(Age::Fresh)
    }

    /// The mirror's age by the metadata freshness rules; `None` when it
    /// was never fetched. On a sealed server a mirror never ages.
    async fn age_class(&self, mirror: &Mirror) -> Option<Age> {
        let (ttl, window) = (self.config.metadata_ttl, self.config.stale_while_revalidate);
        let age = age(mirror).await?;
        Some(match self.sealed() {
            Some(_) => Age::Fresh,
            None => Age::classify(age, ttl, window),
        })
    }

    /// Why the upstreams may not be asked, on a sealed server.
    fn sealed(&self) -> Option<&Sealed> {
        self.config.offline.as_ref()
    }

    /// The refusal of `what` of `repo` on a sealed server; `Ok` when the
    /// server is not sealed.
    pub(super) fn refuse_if_sealed(
        &self,
        repo: &RepoId,
        what: Option<&str>,
    ) -> Result<(), GitError> {
        let Some(sealed) = self.sealed() else {
            return Ok(());
        };
        let named = match what {
            Some(what) => format!("{} {what}", repo.upstream_url()),
            None => repo.upstream_url(),
        };
        Err(GitError::Offline(sealed.refuse(named)))
    }

    /// Records one use of the mirror in the store's usage index, under the
    /// key the inventory lists it by, so that `cache list` shows it and gc
    /// keeps a mirror clients rely on. Called once per client operation
    /// that reads the mirror (a clone or fetch's `info/refs`, a resolution,
    /// an archive build), not per request nor per upstream fetch, which
    /// always serves one of those. A mirror's size is read from its files,
    /// so none is given.
    pub(super) fn record_use(&self, repo: &RepoId) {
        self.store.record_use(&repo.mirror_dir(), 0);
    }

    /// Resolves `reference` (default branch when `None`), fetching once
    /// more if the mirror does not have it yet, and counts the use.
    pub async fn resolve(
        &self,
        repo: &RepoId,
        reference: Option<&str>,
    ) -> Result<Resolved, GitError> {
        let resolved = self.resolve_in_mirror(repo, reference).await?;
        self.record_use(repo);
        Ok(resolved)
    }

    async fn resolve_in_mirror(
        &self,
        repo: &RepoId,
        reference: Option<&str>,
    ) -> Result<Resolved, GitError> {
        let asked = SystemTime::now();
        let (mirror, checked) = self.current(repo).await?;
        if let Some(resolved) = blocking_resolve(&mirror, reference).await? {
            return Ok(resolved);
        }
        if checked == Checked::Current {
            // The mirror has every ref the upstream has right now.
            return Err(GitError::NotUpstream {
                reference: reference.unwrap_or("HEAD").to_owned(),
                repo: repo.upstream_url(),
            });
        }
        self.refuse_if_sealed(repo, Some(reference.unwrap_or("HEAD")))?;
        // Concurrent requests for a ref just pushed share one fetch.
        let mirror = self.update_now(repo, Some(asked)).await?;
        blocking_resolve(&mirror, reference)
            .await?
            .ok_or_else(|| GitError::NoSuchRef {
                reference: reference.unwrap_or("HEAD").to_owned(),
                repo: repo.upstream_url(),
            })
    }

    /// Fetches now, under the mirror's lock, unless the mirror was fetched
    /// at or after `unless_fetched_since`: a caller that waited for someone
    /// else's fetch does not fetch again.
    pub(super) async fn update_now(
        &self,
        repo: &RepoId,
        unless_fetched_since: Option<SystemTime>,
    ) -> Result<Mirror, GitError> {
        let mirror = self.mirror(repo);
        match self.fetch_now(repo, unless_fetched_since).await {
            Ok(()) => Ok(mirror),
            // Sealed, a mirror is used as it is without a word.
            Err(GitError::Offline(_)) if exists(&mirror).await => Ok(mirror),
            Err(e) if exists(&mirror).await => {
                tracing::warn!("cannot refresh the mirror of {repo}, using it as it is: {e}");
                Ok(mirror)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Self::update_now`] without the fallback: fetch failures are the
    /// caller's to report.
    async fn fetch_now(
        &self,
        repo: &RepoId,
        unless_fetched_since: Option<SystemTime>,
    ) -> Result<(), GitError> {
        self.check_mirrored(repo)?;
        // Every clone and fetch of a mirror, seeding from the shared tier
        // included, starts here: the one refusal of a sealed server's.
        self.refuse_if_sealed(repo, None)?;
        let worker = self.mirror(repo);
        let seeding = self
            .bundles
            .clone()
            .map(|bundles| (bundles, tokio::runtime::Handle::current(), repo.clone()));
        let (audit, requester) = (self.audit.clone(), crate::audit::current_requester());
        let (updated, fetched_bytes, secs) = tokio::task::spawn_blocking(move || {
            worker.with_lock(|| {
                let fresh_enough = unless_fetched_since
                    .zip(worker.last_fetch())
                    .is_some_and(|(since, fetched)| fetched >= since);
                if fresh_enough {
                    let unchanged = Updated {
                        changed: false,
                        seeded: false,
                    };
                    return Ok::<_, GitError>((unchanged, 0, 0.0));
                }
                let (before, started) = (worker.object_bytes(), Instant::now());
                let tips_before = refcheck::tips_of(&worker.dir);
                let updated = match &seeding {
                    Some((bundles, runtime, repo)) => {
                        let mut seed =
                            |staging: &std::path::Path| bundles.seed(runtime, repo, staging);
                        worker.update_seeded(Some(&mut seed))
                    }
                    None => worker.update(),
                };
                let grown = worker.object_bytes().saturating_sub(before);
                let line =
                    Record::new(&requester, Kind::GitFetch, &worker.upstream).url(&worker.upstream);
                audit.write(match &updated {
                    Ok(_) => {
                        let moved = refcheck::moves(&tips_before, &refcheck::tips_of(&worker.dir));
                        let line = line.received(grown);
                        if moved.is_empty() {
                            line.verified("no ref moved")
                        } else {
                            line.verified(format!("refs {moved}"))
                        }
                    }
                    Err(e) => line.failed(e),
                });
                Ok((updated?, grown, started.elapsed().as_secs_f64()))
            })?
        })
        .await
        .map_err(|e| GitError::Fetch(format!("fetch task failed: {e}")))??;
        if fetched_bytes > 0 {
            report_fetched(&repo.mirror_dir().key(), fetched_bytes, secs);
        }
        let mirror = self.mirror(repo);
        if let Some(bundles) = &self.bundles {
            bundles.after_update(repo, &mirror, updated);
        }
        // Each fetch may add a pack; past a handful, one repack in the
        // background, off this request's path.
        repack::spawn_if_needed(&mirror);
        Ok(())
    }

    /// One refresh per mirror at a time; the mirror is free for the next
    /// when this one ends, however it ends.
    fn refresh_in_background(&self, repo: &RepoId) {
        let Some(refreshing) = self.refreshing.claim(&repo.upstream_url()) else {
            return;
        };
        let this = self.clone();
        let repo = repo.clone();
        tokio::spawn(async move {
            let since = SystemTime::now().checked_sub(this.config.metadata_ttl);
            let _ = this.update_now(&repo, since).await;
            drop(refreshing);
        });
    }
}

/// Tells the run being served (through its tracing span, see
/// `server::run_journal`) that its request made the mirror at
/// `mirror_key` download `bytes` in `secs`: the run counts them as
/// downloaded, and the server's log has the line.
pub fn report_fetched(mirror_key: &str, bytes: u64, secs: f64) {
    tracing::info!(
        git_mirror = mirror_key,
        git_fetched_bytes = bytes,
        git_fetch_secs = secs,
        "fetched {bytes} bytes into the mirror {mirror_key} in {secs:.1}s"
    );
}

/// How long ago the mirror was last fetched; `None` when never. Reads a
/// file, so on the blocking pool.
async fn age(mirror: &Mirror) -> Option<Duration> {
    let probe = mirror.clone();
    tokio::task::spawn_blocking(move || probe.last_fetch())
        .await
        .ok()
        .flatten()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
}

/// [`Mirror::exists`] on the blocking pool.
pub(super) async fn exists(mirror: &Mirror) -> bool {
    let probe = mirror.clone();
    tokio::task::spawn_blocking(move || probe.exists())
        .await
        .unwrap_or(false)
}

pub(super) async fn blocking_resolve(
    mirror: &Mirror,
    reference: Option<&str>,
) -> Result<Option<Resolved>, GitError> {
    let dir = mirror.dir.clone();
    let reference = reference.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let Some(commit) = refs::resolve(&dir, reference.as_deref())? else {
            return Ok(None);
        };
        let has_submodules = refs::has_gitmodules(&dir, &commit)?;
        Ok(Some(Resolved {
            commit,
            has_submodules,
        }))
    })
    .await
    .map_err(|e| GitError::Fetch(format!("resolve task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::super::mirror::tests::Upstream;
    use super::*;

    /// A sealed server's mirrors of `repo_url`, whose every metadata
    /// copy would be expired were it online.
    fn sealed_mirrors(cache: &std::path::Path, repo_url: &str) -> GitMirrors {
        let prefix = repo_url.rsplit_once("org/").unwrap().0;
        let config = Config {
            metadata_ttl: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            git_mirror: vec![prefix.parse().unwrap()],
            offline: Some(Sealed::Environment),
            ..Config::default()
        };
        let store = Store::open(cache).unwrap();
        let policy = crate::policy::LivePolicy::fixed(None);
        GitMirrors::new(Arc::new(config), policy, Arc::new(store))
    }

    /// Sealed, a mirror is read as it is, and what it lacks is refused by
    /// name; the upstream (a listener here) is never connected to.
    #[tokio::test]
    async fn a_sealed_server_neither_checks_nor_fetches() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}/git/org/infra.git",
            listener.local_addr().unwrap()
        );
        let repo = RepoId::from_url(&url).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mirrors = sealed_mirrors(cache.path(), &url);
        let bounded = |what| tokio::time::timeout(Duration::from_secs(10), what);

        let never_cloned = bounded(mirrors.resolve(&repo, Some("v1")))
            .await
            .expect("a refusal is immediate")
            .unwrap_err();
        assert!(
            matches!(&never_cloned, GitError::Offline(offline) if offline.what == url),
            "{never_cloned}"
        );

        // A mirror made earlier (here from a local upstream), long expired.
        let upstream = Upstream::new();
        let dir = mirrors.mirror(&repo).dir;
        let seeded = Mirror::new(dir, upstream.url.clone());
        seeded.with_lock(|| seeded.update()).unwrap().unwrap();
        let v1 = bounded(mirrors.resolve(&repo, Some("v1")))
            .await
            .expect("served from the mirror at once")
            .unwrap();
        assert_eq!(v1.commit, upstream.rev("v1^{commit}"));
        let missing = bounded(mirrors.resolve(&repo, Some("v9")))
            .await
            .expect("a refusal is immediate")
            .unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!(
                "{url} v9 is not in the cache, and tfmirror is offline (sealed: \
                 TFMIRROR_OFFLINE=1, as `tfmirror exec --offline` sets)"
            )
        );
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the upstream was connected to: {accepted:?}"
        );
    }
}
