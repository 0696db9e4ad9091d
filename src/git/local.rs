//! `POST /_tfmirror/git/local`: mirrors made ready for `exec` to clone by
//! path (see `protocol::git_local` for why, and `snapshot` for how).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use hyper::StatusCode;

use super::freshness::{blocking_resolve, Checked, GitMirrors};
use super::mirror::GitError;
use super::repo_id::RepoId;
use super::snapshot;
use crate::protocol::git_local::{
    LocalAnswer, LocalItem, LocalRepo, LocalRequest, MAX_LOCAL_REPOS,
};
use crate::store::Segment;

/// Repositories checked and snapshotted at once; each check is one small
/// upstream request, each snapshot a few dozen links.
const CONCURRENCY: usize = 4;

/// The most refs one repository may list in a request.
const MAX_REFS: usize = 200;

/// Snapshots of a run whose end never came are removed after this.
pub const FORGET_RUN_AFTER: Duration = Duration::from_secs(6 * 3600);

/// A request the server refuses as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BadLocalRequest {
    #[error("{0:?} is not a run id")]
    Run(String),
    #[error("{count} repositories in one request; at most {MAX_LOCAL_REPOS}")]
    TooMany { count: usize },
    #[error("{count} refs for {url}; at most {MAX_REFS}")]
    TooManyRefs { url: String, count: usize },
}

impl BadLocalRequest {
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

impl GitMirrors {
    /// Each repository of `request` brought up to date with its upstream,
    /// its refs resolved and, when all resolve, snapshotted for the run.
    /// Repositories are answered in the request's order; one that cannot
    /// be cloned by path says why, and git reaches it over smart HTTP.
    pub async fn local_clones(
        &self,
        request: LocalRequest,
    ) -> Result<LocalAnswer, BadLocalRequest> {
        let run = Segment::new(&request.run).map_err(|_| BadLocalRequest::Run(request.run))?;
        if request.repos.len() > MAX_LOCAL_REPOS {
            return Err(BadLocalRequest::TooMany {
                count: request.repos.len(),
            });
        }
        if let Some(item) = request.repos.iter().find(|i| i.refs.len() > MAX_REFS) {
            return Err(BadLocalRequest::TooManyRefs {
                url: item.url.clone(),
                count: item.refs.len(),
            });
        }
        let repos = stream::iter(request.repos)
            .map(|item| self.local_clone(&run, item))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        Ok(LocalAnswer { repos })
    }

    async fn local_clone(&self, run: &Segment, item: LocalItem) -> LocalRepo {
        let Some(repo) = RepoId::from_url(&item.url) else {
            return LocalRepo::refused(&item.url, "not a repository URL tfmirror can mirror");
        };
        if let Err(refused) = self.check_mirrored(&repo) {
            return LocalRepo::refused(&item.url, refused.to_string());
        }
        let artifact = crate::policy::Artifact::Git(repo.upstream_url());
        if let Err(refused) = crate::policy::check::enforce(&self.policy, artifact) {
            return LocalRepo::refused(&item.url, refused.to_string());
        }
        let (_, checked) = match self.current(&repo).await {
            Ok(current) => current,
            Err(e) => return LocalRepo::refused(&item.url, e.to_string()),
        };
        let refs: BTreeSet<Option<String>> = item.refs.into_iter().collect();
        let mut answer = LocalRepo {
            url: item.url,
            path: None,
            missing: Vec::new(),
            checked: checked == Checked::Current,
            reason: None,
        };
        match self.resolve_all(&repo, checked, &refs).await {
            Ok(Resolution::Missing(missing)) => {
                answer.reason = Some("a ref is missing".to_owned());
                answer.missing = missing;
                return answer;
            }
            Ok(Resolution::Submodules) => {
                answer.reason = Some("a ref has submodules, which git fetches by URL".to_owned());
                return answer;
            }
            Ok(Resolution::All) => {}
            Err(e) => {
                answer.reason = Some(e.to_string());
                return answer;
            }
        }
        let target = repo.mirror_dir().to_path(&self.store.run_snapshots(run));
        let worker = self.mirror(&repo);
        let taken = tokio::task::spawn_blocking({
            let target = target.clone();
            move || {
                if target.exists() {
                    return Ok(());
                }
                let parent = target.parent().expect("a mirror path has a parent");
                std::fs::create_dir_all(parent)
                    .map_err(GitError::io(format!("cannot create {}", parent.display())))?;
                snapshot::take(&worker, &target)
            }
        })
        .await
        .map_err(|e| GitError::Repo(format!("snapshot task failed: {e}")))
        .and_then(|taken| taken);
        match taken {
            Ok(()) => {
                self.record_use(&repo);
                answer.path = Some(target);
            }
            Err(e) => answer.reason = Some(e.to_string()),
        }
        answer
    }

    /// Resolves every ref in the mirror; when one is missing and the
    /// upstream could not be asked before, fetches once more and retries.
    async fn resolve_all(
        &self,
        repo: &RepoId,
        checked: Checked,
        refs: &BTreeSet<Option<String>>,
    ) -> Result<Resolution, GitError> {
        let mut fetched = checked == Checked::Current;
        loop {
            let mirror = self.mirror(repo);
            let mut missing = Vec::new();
            let mut submodules = false;
            for reference in refs {
                match blocking_resolve(&mirror, reference.as_deref()).await? {
                    Some(resolved) => submodules |= resolved.has_submodules,
                    None => missing.push(reference.as_deref().unwrap_or("HEAD").to_owned()),
                }
            }
            if missing.is_empty() {
                return Ok(if submodules {
                    Resolution::Submodules
                } else {
                    Resolution::All
                });
            }
            if fetched {
                return Ok(Resolution::Missing(missing));
            }
            self.update_now(repo, None).await?;
            fetched = true;
        }
    }

    /// The run is over: its snapshots go, with those of runs long begun
    /// whose end never came.
    pub async fn end_run(&self, run: &str) {
        let Ok(run) = Segment::new(run) else {
            return;
        };
        let store = self.store.clone();
        let removed =
            tokio::task::spawn_blocking(move || store.remove_run_snapshots(&run, FORGET_RUN_AFTER))
                .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cannot remove a run's git mirror snapshots: {e}"),
            Err(e) => tracing::warn!("the task removing a run's git snapshots failed: {e}"),
        }
    }
}

/// What resolving a repository's refs found.
enum Resolution {
    /// Every ref resolved, and none has submodules.
    All,
    /// Every ref resolved; at least one has submodules.
    Submodules,
    /// These refs are not in the mirror.
    Missing(Vec<String>),
}
