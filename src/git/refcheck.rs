//! Is a mirror still what its upstream is? One ls-refs request answers it:
//! the upstream's branches, tags and `HEAD` against the mirror's, by name
//! and object id. That is a few hundred bytes where a fetch negotiates, so
//! it can be asked before every clone and resolution, and a tag pushed a
//! second ago is seen at once instead of after `metadata_ttl`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use gix::bstr::{BStr, BString, ByteSlice};
use gix::protocol::handshake::Ref;
use gix::refs::Target;
use gix::remote::Direction;

use super::mirror::{
    chain, ref_name, upstream_remote, BoxError, GitError, Mirror, FETCH_CONFIG, MIRRORED_PREFIXES,
};

/// What a check compares: each branch and tag with the object it names
/// (an annotated tag's own id, as a mirror stores it), and `HEAD` with the
/// branch it points to.
pub(super) type Tips = BTreeMap<BString, Target>;

/// Asks the upstream for its refs and compares them with the mirror's:
/// `Ok(true)` when they are the same, so there is nothing to fetch.
///
/// Blocking, like all of gix's network code. `budget` bounds the HTTP
/// connection attempt; the caller bounds the whole call with it too, since
/// not every transport honours a connection timeout.
pub fn matches_upstream(mirror: &Mirror, budget: Duration) -> Result<bool, GitError> {
    crate::crypto_provider::install();
    let repo = open_for_check(&mirror.dir, budget).map_err(|e| {
        GitError::Fetch(format!(
            "cannot open the mirror at {}: {}",
            mirror.dir.display(),
            chain(&e)
        ))
    })?;
    let upstream = upstream_tips(&repo, &mirror.upstream).map_err(|e| {
        GitError::Fetch(format!(
            "cannot list the refs of {}: {}",
            mirror.upstream,
            chain(&*e)
        ))
    })?;
    let local = mirror_tips(&repo).map_err(|e| {
        GitError::Repo(format!(
            "cannot read the refs of the mirror at {}: {}",
            mirror.dir.display(),
            chain(&*e)
        ))
    })?;
    Ok(upstream == local)
}

/// The mirror opened as for a fetch, with the HTTP connection attempt
/// bounded by `budget`.
fn open_for_check(dir: &Path, budget: Duration) -> gix::Result<gix::Repository> {
    let timeout = format!("gitoxide.http.connectTimeout={}", budget.as_millis());
    let overrides = FETCH_CONFIG
        .iter()
        .map(|entry| entry.to_string())
        .chain([timeout]);
    gix::open_opts(
        dir,
        gix::open::Options::default().config_overrides(overrides),
    )
}

/// The upstream's branches, tags and `HEAD`, from one ls-refs request.
fn upstream_tips(repo: &gix::Repository, upstream: &str) -> Result<Tips, BoxError> {
    let (remote, options) = upstream_remote(repo, upstream)?;
    let (ref_map, _handshake) = remote
        .connect(Direction::Fetch)?
        .ref_map(gix::progress::Discard, options)?;
    Ok(ref_map
        .remote_refs
        .iter()
        .filter(|r| is_compared(ref_name(r)))
        .filter_map(|r| Some((ref_name(r).to_owned(), advertised_target(r)?)))
        .collect())
}

/// The branches, tags and `HEAD` of the mirror at `dir`; none when it
/// does not exist yet or cannot be read. For the audit log's record of
/// which refs a fetch moved, so a failure to read costs only that detail.
pub(super) fn tips_of(dir: &Path) -> Tips {
    gix::open(dir)
        .ok()
        .and_then(|repo| mirror_tips(&repo).ok())
        .unwrap_or_default()
}

/// The refs that differ between `before` and `after` a fetch, with what
/// each names now: `refs/heads/main=<id>`, space-separated; a ref gone is
/// `refs/tags/v1=deleted`, `HEAD` names its branch.
pub(super) fn moves(before: &Tips, after: &Tips) -> String {
    let target = |t: Option<&Target>| match t {
        Some(Target::Object(id)) => id.to_string(),
        Some(Target::Symbolic(name)) => name.as_bstr().to_string(),
        None => "deleted".to_owned(),
    };
    let names: std::collections::BTreeSet<&BString> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|name| before.get(*name) != after.get(*name))
        .map(|name| format!("{name}={}", target(after.get(name))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The mirror's branches, tags and `HEAD`.
fn mirror_tips(repo: &gix::Repository) -> Result<Tips, BoxError> {
    let mut tips = Tips::new();
    let platform = repo.references()?;
    for prefix in MIRRORED_PREFIXES {
        for reference in platform.prefixed(prefix)? {
            let reference = reference?;
            tips.insert(
                reference.name().as_bstr().to_owned(),
                reference.inner.target.clone(),
            );
        }
    }
    if let Some(head) = repo.try_find_reference("HEAD")? {
        tips.insert("HEAD".into(), head.inner.target.clone());
    }
    Ok(tips)
}

fn is_compared(name: &BStr) -> bool {
    name == "HEAD"
        || MIRRORED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix.as_bytes()))
}

/// The target a mirror would store for an advertised ref. `None` for a
/// symbolic target that is no valid ref name, which no fetch would store.
fn advertised_target(r: &Ref) -> Option<Target> {
    Some(match r {
        Ref::Direct { object, .. } => Target::Object(*object),
        Ref::Peeled { tag, .. } => Target::Object(*tag),
        Ref::Symbolic { target, .. } | Ref::Unborn { target, .. } => {
            Target::Symbolic(target.as_bstr().try_into().ok()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::mirror::tests::{git, mirror_of, Upstream};
    use super::*;

    const BUDGET: Duration = Duration::from_secs(2);

    #[test]
    fn a_pushed_tag_a_moved_branch_or_a_new_head_differ() {
        let upstream = Upstream::new();
        let (_cache, mirror) = mirror_of(&upstream);
        mirror.update().unwrap();
        assert!(matches_upstream(&mirror, BUDGET).unwrap());

        git(&upstream.dir, &["tag", "v9"]);
        assert!(!matches_upstream(&mirror, BUDGET).unwrap(), "new tag");
        mirror.update().unwrap();
        assert!(matches_upstream(&mirror, BUDGET).unwrap());

        git(
            &upstream.dir,
            &["commit", "-q", "--allow-empty", "-m", "later"],
        );
        assert!(!matches_upstream(&mirror, BUDGET).unwrap(), "moved branch");
        mirror.update().unwrap();

        git(&upstream.dir, &["tag", "-d", "v9"]);
        assert!(!matches_upstream(&mirror, BUDGET).unwrap(), "deleted tag");
        mirror.update().unwrap();

        git(
            &upstream.dir,
            &["symbolic-ref", "HEAD", "refs/heads/feature"],
        );
        assert!(!matches_upstream(&mirror, BUDGET).unwrap(), "new HEAD");
        mirror.update().unwrap();
        assert!(matches_upstream(&mirror, BUDGET).unwrap());
    }
}
