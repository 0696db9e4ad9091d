//! The wire types of `POST /_tfmirror/git/local`
//! ([`Endpoint::LocalClones`](super::Endpoint::LocalClones)), shared by the server
//! (which makes mirrors ready to clone by path) and `exec` (which asks
//! before `terraform init` or `get`).
//!
//! Terraform clones a `git::` source once per (repository, ref), and a
//! full clone of a large mirror over smart HTTP costs seconds, where
//! `git clone <path>` of a repository that borrows the mirror's objects
//! copies only its refs. So `exec` names the repositories and refs the
//! working directory's module calls use; for each, the server brings its
//! mirror up to date with the upstream (the same ref check every
//! smart-HTTP clone gets), resolves the refs, and answers with a snapshot
//! of the mirror's refs that lives as long as the run (see `snapshot`).
//! `exec` then points git at the snapshot with
//! `url.<path>.insteadOf=<url>`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The most repositories one request may name; a real configuration has
/// a handful.
pub const MAX_LOCAL_REPOS: usize = 100;

/// What `exec` asks for, for one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRequest {
    /// The run the snapshots belong to; they are removed when it ends.
    pub run: String,
    pub repos: Vec<LocalItem>,
}

/// One repository, as git will be asked to clone it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalItem {
    /// The clone URL exactly as go-getter hands it to git
    /// (`https://host/org/repo.git`, `ssh://git@host/org/repo`).
    pub url: String,
    /// The refs the module calls name (`?ref=`); `None` stands for a call
    /// without one, which clones the default branch.
    pub refs: Vec<Option<String>>,
}

/// The server's answer, its `repos` in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAnswer {
    pub repos: Vec<LocalRepo>,
}

/// What became of one repository. With a `path`, every ref resolved and
/// git may clone the snapshot there; without one, `reason` says why and
/// git goes through smart HTTP as it would without tfmirror's help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRepo {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Refs the repository does not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Whether the mirror's refs were compared with the upstream's for
    /// this answer (false: the upstream could not be asked in time, and
    /// the mirror is as it was).
    pub checked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LocalRepo {
    /// A repository git cannot clone by path, and why.
    pub fn refused(url: &str, reason: impl Into<String>) -> LocalRepo {
        LocalRepo {
            url: url.to_owned(),
            path: None,
            missing: Vec::new(),
            checked: false,
            reason: Some(reason.into()),
        }
    }
}
