//! Reading a mirror: what a ref names, and what a commit holds.
//!
//! Mirrors are opened isolated (their own config only): reading refs and
//! objects needs nothing from the user's git configuration.

use std::collections::HashSet;
use std::path::Path;

use gix::object::Kind;
use gix::ObjectId;

use super::mirror::{chain, GitError};

/// The shortest abbreviated commit id accepted, as git prints them.
const MIN_ABBREV: usize = 7;

pub(super) fn open(mirror: &Path) -> Result<gix::Repository, GitError> {
    gix::open_opts(mirror, gix::open::Options::isolated()).map_err(|e| read_error(mirror, &e))
}

fn read_error(mirror: &Path, error: &(dyn std::error::Error + 'static)) -> GitError {
    GitError::Repo(format!(
        "cannot read the mirror at {}: {}",
        mirror.display(),
        chain(error)
    ))
}

/// Resolves `reference` to a commit id, peeling annotated tags:
/// `None` (or `HEAD`) is the upstream's default branch, then in order a
/// full ref name (`refs/...`), a tag, a branch, and a full or abbreviated
/// (at least 7 hex digits) commit id. `Ok(None)` when the mirror has no
/// such commit, so the caller can fetch and retry.
pub fn resolve(mirror: &Path, reference: Option<&str>) -> Result<Option<ObjectId>, GitError> {
    let repo = open(mirror)?;
    let err = |e: gix::Error| read_error(mirror, &e);
    let reference = match reference {
        None | Some("HEAD") => {
            let mut head = repo.head().map_err(err)?;
            if head.is_unborn() {
                return Ok(None);
            }
            let id = head.peel_to_object().map_err(err)?.id;
            return commit_of(&repo, id).map_err(err);
        }
        Some(reference) => reference,
    };

    let names = if reference.starts_with("refs/") {
        vec![reference.to_owned()]
    } else {
        vec![
            format!("refs/tags/{reference}"),
            format!("refs/heads/{reference}"),
        ]
    };
    for name in names {
        // A name git would not accept as a ref cannot be one.
        let Ok(name) = gix::refs::FullName::try_from(name.as_str()) else {
            continue;
        };
        if let Some(mut found) = repo.try_find_reference(name.as_ref()).map_err(err)? {
            let id = found.peel_to_id().map_err(err)?.detach();
            return commit_of(&repo, id).map_err(err);
        }
    }

    resolve_hex(&repo, reference).map_err(|e| match e {
        Hex::Ambiguous => GitError::AmbiguousRef {
            reference: reference.to_owned(),
            repo: mirror.display().to_string(),
        },
        Hex::Error(e) => err(e),
    })
}

enum Hex {
    Ambiguous,
    Error(gix::Error),
}

impl From<gix::Error> for Hex {
    fn from(e: gix::Error) -> Hex {
        Hex::Error(e)
    }
}

fn resolve_hex(repo: &gix::Repository, reference: &str) -> Result<Option<ObjectId>, Hex> {
    let hex = reference.to_ascii_lowercase();
    let is_hex = hex.bytes().all(|b| b.is_ascii_hexdigit());
    let full_len = repo.object_hash().len_in_hex();
    if !is_hex || hex.len() < MIN_ABBREV || hex.len() > full_len {
        return Ok(None);
    }
    if hex.len() == full_len {
        let Ok(id) = ObjectId::from_hex(hex.as_bytes()) else {
            return Ok(None);
        };
        return Ok(commit_of(repo, id)?);
    }
    let Ok(prefix) = gix::hash::Prefix::from_hex(&hex) else {
        return Ok(None);
    };
    // Every object with this prefix, so that a tree or blob sharing it
    // does not hide the one commit, as git disambiguates for commit-ish.
    let mut candidates = HashSet::new();
    repo.objects.lookup_prefix(prefix, Some(&mut candidates))?;
    let mut commits = HashSet::new();
    for candidate in candidates {
        if let Some(commit) = commit_of(repo, candidate)? {
            commits.insert(commit);
        }
    }
    match commits.len() {
        0 => Ok(None),
        1 => Ok(commits.into_iter().next()),
        _ => Err(Hex::Ambiguous),
    }
}

/// The commit `id` names, peeling tags; `None` when the mirror lacks the
/// object or it is no commit.
fn commit_of(repo: &gix::Repository, id: ObjectId) -> gix::Result<Option<ObjectId>> {
    let Some(object) = repo.try_find_object(id)? else {
        return Ok(None);
    };
    let object = object.peel_tags_to_end()?;
    Ok((object.kind == Kind::Commit).then_some(object.id))
}

/// Whether the mirror holds commit `id`.
pub fn has_commit(mirror: &Path, id: &ObjectId) -> bool {
    let Ok(repo) = open(mirror) else {
        return false;
    };
    repo.find_header(*id)
        .is_ok_and(|header| header.kind() == Kind::Commit)
}

/// Whether the tree of `commit` has a `.gitmodules` file at its root: the
/// commit uses submodules, which only a git clone brings along.
pub fn has_gitmodules(mirror: &Path, commit: &ObjectId) -> Result<bool, GitError> {
    let repo = open(mirror)?;
    let err = |e: gix::Error| read_error(mirror, &e);
    let tree = repo
        .find_commit(*commit)
        .map_err(err)?
        .tree()
        .map_err(err)?;
    Ok(tree
        .find_entry(".gitmodules")
        .is_some_and(|entry| entry.mode().is_blob_or_symlink()))
}

#[cfg(test)]
mod tests {
    use super::super::mirror::tests::{git, mirror_of, Upstream};
    use super::*;

    #[test]
    fn resolves_and_inspects() {
        let upstream = Upstream::new();
        let (_cache, mirror) = mirror_of(&upstream);
        mirror.update().unwrap();
        let dir = mirror.dir.as_path();
        let main = upstream.rev("main");
        let v1 = upstream.rev("v1^{commit}");
        let feature = upstream.rev("feature");
        assert_ne!(upstream.rev("v1"), v1, "v1 is an annotated tag");

        assert_eq!(resolve(dir, None).unwrap(), Some(main));
        assert_eq!(resolve(dir, Some("HEAD")).unwrap(), Some(main));
        assert_eq!(resolve(dir, Some("v1")).unwrap(), Some(v1));
        assert_eq!(resolve(dir, Some("v2")).unwrap(), Some(main));
        assert_eq!(resolve(dir, Some("refs/tags/v1")).unwrap(), Some(v1));
        assert_eq!(resolve(dir, Some("feature")).unwrap(), Some(feature));
        assert_eq!(resolve(dir, Some("refs/heads/main")).unwrap(), Some(main));
        let hex = feature.to_string();
        assert_eq!(resolve(dir, Some(&hex)).unwrap(), Some(feature));
        assert_eq!(resolve(dir, Some(&hex[..7])).unwrap(), Some(feature));
        assert_eq!(
            resolve(dir, Some(&hex[..12].to_uppercase())).unwrap(),
            Some(feature)
        );
        // The annotated tag object's id names its commit.
        assert_eq!(
            resolve(dir, Some(&upstream.rev("v1").to_string())).unwrap(),
            Some(v1)
        );

        assert_eq!(resolve(dir, Some("v9")).unwrap(), None);
        assert_eq!(resolve(dir, Some(&hex[..6])).unwrap(), None);
        assert_eq!(
            resolve(dir, Some("0000000000000000000000000000000000000000")).unwrap(),
            None
        );
        assert_eq!(resolve(dir, Some("../../etc")).unwrap(), None);
        assert_eq!(resolve(dir, Some("")).unwrap(), None);
        // A tree's id is no commit.
        let tree = upstream.rev("main^{tree}").to_string();
        assert_eq!(resolve(dir, Some(&tree)).unwrap(), None);

        assert!(has_commit(dir, &feature));
        assert!(!has_commit(dir, &upstream.rev("main^{tree}")));
        assert!(!has_commit(dir, &ObjectId::null(gix::hash::Kind::Sha1)));
        assert!(has_gitmodules(dir, &feature).unwrap());
        assert!(!has_gitmodules(dir, &main).unwrap());
        assert!(has_gitmodules(dir, &ObjectId::null(gix::hash::Kind::Sha1)).is_err());

        // A commit the mirror does not have yet.
        git(
            &upstream.dir,
            &["commit", "-q", "--allow-empty", "-m", "later"],
        );
        let later = upstream.rev("main");
        assert_eq!(resolve(dir, Some(&later.to_string())).unwrap(), None);
        assert!(!has_commit(dir, &later));
        mirror.update().unwrap();
        assert_eq!(resolve(dir, Some(&later.to_string())).unwrap(), Some(later));
        assert_eq!(resolve(dir, None).unwrap(), Some(later));
    }
}
