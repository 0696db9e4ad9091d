//! `/git-archive/<scheme>/<host>/<path>.git/<commit>.tar.gz`: the whole tree
//! of one commit as a tar.gz, built once from the mirror and then served
//! from disk like any immutable artifact. A commit never changes, so
//! neither does its archive.

use hyper::StatusCode;

use super::commit_archive::write_tar_gz;
use super::freshness::GitMirrors;
use super::mirror::GitError;
use super::repo_id::RepoId;
use crate::protocol::closure::ClosureItem;
use crate::response::{self, HandlerError, Response};
use crate::store::{BlobWriter, FromTier, ProduceError, Segment};

const CONTENT_TYPE: &str = "application/gzip";

impl GitMirrors {
    /// tfmirror's URL for the archive of `commit`, to put in a module location.
    pub fn archive_url(base_url: &str, repo: &RepoId, commit: &gix::ObjectId) -> String {
        format!(
            "{base_url}/git-archive/{}/{commit}.tar.gz",
            repo.proxy_path()
        )
    }

    /// Handles `/git-archive/<segments...>`.
    pub async fn serve_archive(&self, segments: &[String]) -> Response {
        let Some((file, repo_segments)) = segments.split_last() else {
            return response::error(StatusCode::NOT_FOUND, "no such archive");
        };
        let commit = file
            .strip_suffix(".tar.gz")
            .and_then(|hex| gix::ObjectId::from_hex(hex.as_bytes()).ok());
        let (Some(commit), Some(repo)) = (commit, RepoId::from_proxy_segments(repo_segments))
        else {
            return response::error(
                StatusCode::BAD_REQUEST,
                "not an archive path tfmirror serves",
            );
        };
        if let Some(refused) = self.refuse_unmirrored(&repo) {
            return refused;
        }
        let artifact = crate::policy::Artifact::Git(repo.upstream_url());
        if let Some(refused) = crate::policy::check::refused(&self.policy, artifact) {
            return refused;
        }
        let rel = repo.archive_path(Segment::new(file).expect("hex and .tar.gz form a valid name"));
        let build = {
            let (this, repo) = (self.clone(), repo.clone());
            move |mut writer: BlobWriter| async move {
                let bytes = this.build_archive(&repo, &commit).await?;
                // The archive counts its own uses as it is opened; building
                // it is a use of the mirror.
                this.record_use(&repo);
                writer
                    .write(&bytes)
                    .await
                    .map_err(ArchiveBuildError::Store)?;
                Ok::<_, ArchiveBuildError>(writer)
            }
        };
        // Not read from a second tier: the mirror it is made from is
        // verified by git, the tarball could not be.
        match self
            .store
            .get_or_produce(&rel, FromTier::Never, build)
            .await
        {
            Ok(opened) => response::touched(
                response::file(opened.file, opened.size, CONTENT_TYPE),
                [ClosureItem::Artifact(rel.key())],
            ),
            Err(ProduceError::Store(e) | ProduceError::Produce(ArchiveBuildError::Store(e))) => {
                let what = format!("the archive of {repo} at {commit}");
                response::store_failed(&self.store.write_error(what, e))
            }
            Err(e) => {
                let message = format!("cannot archive {repo} at {commit}: {e}");
                HandlerError::new(StatusCode::BAD_GATEWAY, message).into_response()
            }
        }
    }

    /// Archives of module repositories are small enough to build in
    /// memory; the store then writes them atomically.
    async fn build_archive(
        &self,
        repo: &RepoId,
        commit: &gix::ObjectId,
    ) -> Result<Vec<u8>, ArchiveBuildError> {
        let mut mirror = self.mirror(repo);
        // Opening the repository reads its files: off the runtime threads.
        let (probe, commit_id) = (mirror.clone(), *commit);
        let has_commit = tokio::task::spawn_blocking(move || {
            probe.exists() && super::refs::has_commit(&probe.dir, &commit_id)
        })
        .await?;
        if !has_commit {
            self.refuse_if_sealed(repo, Some(&commit.to_string()))?;
            mirror = self.fresh(repo).await?;
        }
        let dir = mirror.dir.clone();
        let commit_id = *commit;
        tokio::task::spawn_blocking(move || {
            let mut bytes = Vec::new();
            write_tar_gz(&dir, &commit_id, &mut bytes).map(|()| bytes)
        })
        .await?
        .map_err(ArchiveBuildError::from)
    }
}

/// Why the archive of a commit could not be built.
#[derive(Debug, thiserror::Error)]
enum ArchiveBuildError {
    #[error("archive task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot store it: {0}")]
    Store(std::io::Error),
}
