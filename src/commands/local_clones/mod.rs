//! `exec` of `init` or `get`: the git repositories the working directory's
//! module calls use are cloned by local path from snapshots of their
//! mirrors, not over smart HTTP (see `protocol::git_local`). A clone of a
//! 45 MB repository by path takes a fraction of a second where smart HTTP
//! takes seconds, and Terraform clones once per (repository, ref).
//!
//! Repositories the server cannot make ready (not mirrored, a missing ref,
//! submodules) and those no call names go through smart HTTP as before.

pub(super) mod sources;

use std::collections::BTreeMap;
use std::path::Path;

use super::owner_call::CallError;
use super::{Health, UrlRewrite};
use crate::protocol::git_local::{
    LocalAnswer, LocalItem, LocalRepo, LocalRequest, MAX_LOCAL_REPOS,
};
use crate::protocol::Endpoint;
use sources::GitCall;

/// What `exec` learnt before running the command.
#[derive(Debug, Default)]
pub struct LocalClones {
    /// `url.<snapshot>.insteadOf=<url>` for each repository cloned by path.
    pub rewrites: Vec<UrlRewrite>,
    /// Refs a call names that its repository does not have.
    missing: Vec<MissingRef>,
}

#[derive(Debug, PartialEq, Eq)]
struct MissingRef {
    url: String,
    reference: String,
    checked: bool,
}

/// Asks the server to make the repositories of `workdir`'s calls ready to
/// clone by path for `run`. Best effort: whatever fails leaves those
/// repositories to smart HTTP, with one debug line.
pub async fn plan(server: &Health, run: &str, workdir: &Path, data_dir: &Path) -> LocalClones {
    let (workdir, data_dir) = (workdir.to_owned(), data_dir.to_owned());
    let Ok(found) = tokio::task::spawn_blocking(move || sources::find(&workdir, &data_dir)).await
    else {
        return LocalClones::default();
    };
    if found.calls.is_empty() {
        return LocalClones::default();
    }
    let request = request(run, &found.calls);
    match ask(server, &request).await {
        Ok(answer) => LocalClones::from_answer(&found, answer),
        Err(e) => {
            tracing::debug!("no clones by path this run: {e}");
            LocalClones::default()
        }
    }
}

/// One item per URL, with every ref its calls name.
fn request(run: &str, calls: &[GitCall]) -> LocalRequest {
    let mut by_url: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    for call in calls {
        by_url
            .entry(&call.url)
            .or_default()
            .push(call.reference.clone());
    }
    LocalRequest {
        run: run.to_owned(),
        repos: by_url
            .into_iter()
            .take(MAX_LOCAL_REPOS)
            .map(|(url, refs)| LocalItem {
                url: url.to_owned(),
                refs,
            })
            .collect(),
    }
}

async fn ask(server: &Health, request: &LocalRequest) -> Result<LocalAnswer, CallError> {
    // No timeout: a repository never mirrored is cloned from its upstream
    // first, which takes as long as that takes (the clone would otherwise
    // wait for the same work over smart HTTP).
    let answer: LocalAnswer = server.post(Endpoint::LocalClones, request, None).await?;
    let in_order = answer.repos.len() == request.repos.len()
        && answer
            .repos
            .iter()
            .zip(&request.repos)
            .all(|(repo, item)| repo.url == item.url);
    if !in_order {
        return Err(CallError::Answer("repositories out of order".into()));
    }
    Ok(answer)
}

impl LocalClones {
    fn from_answer(found: &sources::Found, answer: LocalAnswer) -> LocalClones {
        let mut clones = LocalClones::default();
        let by_path: Vec<(&LocalRepo, String)> = answer
            .repos
            .iter()
            .filter_map(|repo| Some((repo, usable_path(repo)?)))
            .collect();
        let over_http: Vec<&str> = answer
            .repos
            .iter()
            .filter(|repo| !by_path.iter().any(|(mapped, _)| mapped.url == repo.url))
            .map(|repo| repo.url.as_str())
            .collect();
        for (repo, path) in &by_path {
            if is_safe_prefix(&repo.url, found.last_run_listed, &over_http) {
                clones.rewrites.push(UrlRewrite {
                    base: path.clone(),
                    instead_of: repo.url.clone(),
                });
            }
        }
        for repo in &answer.repos {
            clones
                .missing
                .extend(repo.missing.iter().map(|reference| MissingRef {
                    url: repo.url.clone(),
                    reference: reference.clone(),
                    checked: repo.checked,
                }));
        }
        clones
    }

    /// One line per ref that a call names and its repository lacks: git
    /// itself says only that a pathspec did not match. `offline` is why the
    /// server is sealed, if it is (its health answer says).
    pub fn report_missing(&self, offline: Option<&str>) {
        for line in self.missing.iter().map(|missing| missing.line(offline)) {
            eprintln!("tfmirror: {line}");
        }
    }
}

impl MissingRef {
    fn line(&self, offline: Option<&str>) -> String {
        if let Some(sealed) = offline {
            let what = format!("{} {}", self.url, self.reference);
            return crate::sealed::refusal(&what, &sealed);
        }
        let why = if self.checked {
            "its refs were checked against the upstream just now"
        } else {
            "the upstream could not be asked, and the mirror does not have it"
        };
        format!(
            "{} has no branch, tag or commit {:?}: {why}",
            self.url, self.reference
        )
    }
}

/// The snapshot's path, if git can be pointed at it: absolute, present,
/// and spelt in a way a git config value carries intact.
fn usable_path(repo: &LocalRepo) -> Option<String> {
    let path = repo.path.as_deref()?;
    let text = path.to_str()?;
    let ok = path.is_absolute() && !text.contains(char::is_control) && path.join("HEAD").is_file();
    ok.then(|| text.to_owned())
}

/// Whether `url` may be an `insteadOf` value. git matches `insteadOf` as a
/// plain string prefix, so `https://h/org/vpc` would also rewrite
/// `https://h/org/vpc-endpoints` into a path that does not exist. A URL
/// ending in `.git` cannot be the start of another repository's; one
/// without is used only when the last run's record lists every source of
/// the directory (nested modules included) and none of those that go over
/// smart HTTP extends it.
fn is_safe_prefix(url: &str, last_run_listed: bool, over_http: &[&str]) -> bool {
    url.ends_with(".git")
        || (last_run_listed
            && !over_http
                .iter()
                .any(|other| *other != url && other.starts_with(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(url: &str, reference: Option<&str>) -> GitCall {
        GitCall {
            url: url.into(),
            reference: reference.map(Into::into),
        }
    }

    #[test]
    fn one_item_per_url_with_every_ref() {
        let request = request(
            "run-1",
            &[
                call("https://h/o/a.git", Some("v1")),
                call("https://h/o/a.git", None),
                call("https://h/o/b.git", Some("v2")),
            ],
        );
        assert_eq!(request.run, "run-1");
        assert_eq!(
            request.repos,
            [
                LocalItem {
                    url: "https://h/o/a.git".into(),
                    refs: vec![Some("v1".into()), None]
                },
                LocalItem {
                    url: "https://h/o/b.git".into(),
                    refs: vec![Some("v2".into())]
                },
            ]
        );
    }

    #[test]
    fn a_url_without_git_is_used_only_when_nothing_known_extends_it() {
        assert!(is_safe_prefix("https://h/o/vpc.git", false, &[]));
        assert!(!is_safe_prefix("https://h/o/vpc", false, &[]));
        assert!(is_safe_prefix(
            "https://h/o/vpc",
            true,
            &["https://h/o/dns"]
        ));
        assert!(!is_safe_prefix(
            "https://h/o/vpc",
            true,
            &["https://h/o/vpc-endpoints"]
        ));
    }

    #[test]
    fn answers_become_rewrites_and_missing_refs() {
        let snapshot = tempfile::tempdir().unwrap();
        std::fs::write(snapshot.path().join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let ready = LocalRepo {
            url: "https://h/o/a.git".into(),
            path: Some(snapshot.path().to_owned()),
            missing: vec![],
            checked: true,
            reason: None,
        };
        let gone = LocalRepo {
            path: Some("/nonexistent/snapshot.git".into()),
            url: "https://h/o/gone.git".into(),
            ..ready.clone()
        };
        let lacking = LocalRepo {
            url: "https://h/o/b".into(),
            path: None,
            missing: vec!["v9.9.9".into()],
            checked: true,
            reason: Some("a ref is missing".into()),
        };
        let found = sources::Found::default();
        let clones = LocalClones::from_answer(
            &found,
            LocalAnswer {
                repos: vec![ready, gone, lacking],
            },
        );
        assert_eq!(
            clones.rewrites,
            [UrlRewrite {
                base: snapshot.path().to_str().unwrap().into(),
                instead_of: "https://h/o/a.git".into()
            }]
        );
        let lines = |offline| {
            clones
                .missing
                .iter()
                .map(|missing| missing.line(offline))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(None),
            [
                "https://h/o/b has no branch, tag or commit \"v9.9.9\": its refs were checked \
              against the upstream just now"
            ]
        );
        assert_eq!(
            lines(Some("TFMIRROR_OFFLINE=1")),
            [
                "https://h/o/b v9.9.9 is not in the cache, and tfmirror is offline (sealed: \
              TFMIRROR_OFFLINE=1)"
            ]
        );
    }
}
