//! Mirrors as `git bundle` files: made from a mirror to be shared (through
//! a [`BundleShelf`], the lead's object-store tier), and read back to seed
//! a new mirror, which then fetches only the difference from its upstream.
//!
//! A shared bundle is a cache, never a source of truth. What it gives is
//! checked the way a fetch from the upstream is: `git bundle verify` reads
//! its header, and `git fetch` from it runs `index-pack`, which hashes
//! every object it stores, so nothing in the mirror is other than its name
//! says. Its refs are not trusted at all: a seeded mirror is fetched from
//! the upstream before anyone sees it, which sets every branch and tag to
//! the upstream's and deletes those the upstream does not have; if that
//! fetch fails, the seeded mirror is thrown away (see
//! [`Mirror::update_seeded`]).
//!
//! gix neither reads nor writes bundles, so the `git` binary does, bounded
//! in time like a repack ([`bounded_git`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::runtime::Handle;

use super::bounded_git::{self, Waited};
use super::mirror::{GitError, Mirror, REFSPECS};
use super::repo_id::RepoId;
use crate::store::layout;

/// Where shared bundles are kept between runners: the object-store tier.
/// The key a bundle is stored under is the shelf's to choose; a stable
/// name to build it from is `repo.mirror_dir().key()`
/// (`git/<host>/<path>.git`).
pub trait BundleShelf: Send + Sync + 'static {
    /// Copies the shared bundle of `repo` over `dest`, an empty temporary
    /// file of the cache that the caller removes afterwards. Returns false
    /// when there is none or the shelf failed (the shelf logs its own
    /// failures); the caller then clones from the upstream.
    fn fetch<'a>(&'a self, repo: &'a RepoId, dest: &'a Path) -> BoxFuture<'a, bool>;

    /// Takes a finished bundle of `repo` to share: the shelf uploads it in
    /// the background, off the caller's path, and removes the file when
    /// done. Called from the async runtime.
    fn offer(&self, repo: &RepoId, bundle: PathBuf);
}

/// A git run on a bundle (verify, fetch from it, create it) longer than
/// this is killed: git reads or writes the whole repository once, which
/// takes far less for any repository a module comes from.
pub const BUNDLE_GIT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How long the shelf may take to hand over a bundle before the new mirror
/// is cloned from the upstream instead. A client waits for this, so it is
/// shorter than the git runs' bound.
pub const SHELF_FETCH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Why a mirror was not seeded from the shelf. Never fatal: the mirror is
/// then cloned from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the shelf has no bundle of it")]
    Missing,
    #[error("the shelf did not hand over its bundle within {0:?}")]
    ShelfTimedOut(Duration),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] BundleGitError),
}

/// A `git` run on a bundle that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum BundleGitError {
    #[error("cannot run {what}: {source}")]
    Run {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("{what} ran past {timeout:?} and was killed")]
    TimedOut { what: String, timeout: Duration },
}

impl From<BundleGitError> for GitError {
    fn from(error: BundleGitError) -> GitError {
        GitError::Bundle(error.to_string())
    }
}

/// Writes a bundle of every ref of `mirror` (`HEAD`, branches, tags) to
/// `dest`, replacing it. Blocks. The mirror may be fetched or repacked
/// meanwhile: git reads the refs once, then the objects they reach, which
/// a fetch only adds to and a repack moves into a new pack before it
/// deletes the old ones (git rescans the pack directory for an object it
/// misses). A mirror without any ref cannot be bundled.
pub fn create_bundle(mirror: &Mirror, dest: &Path) -> Result<(), GitError> {
    if !has_refs(mirror)? {
        return Err(GitError::Bundle(format!(
            "the mirror of {} has no branch or tag to bundle",
            mirror.upstream
        )));
    }
    // git runs in the mirror, so a relative `dest` would land there.
    let dest = std::path::absolute(dest).map_err(GitError::io(format!(
        "cannot resolve the path {}",
        dest.display()
    )))?;
    let mut command = bounded_git::git_in(&mirror.dir);
    command
        .args(["bundle", "create", "--quiet"])
        .arg(&dest)
        .arg("--all");
    run(command, "git bundle create", BUNDLE_GIT_TIMEOUT)?;
    Ok(())
}

/// Whether the mirror has any branch or tag.
pub fn has_refs(mirror: &Mirror) -> Result<bool, GitError> {
    let repo_error = |e: &dyn std::fmt::Display| {
        GitError::Repo(format!(
            "cannot read the refs of the mirror at {}: {e}",
            mirror.dir.display()
        ))
    };
    let repo = gix::open(&mirror.dir).map_err(|e| repo_error(&e))?;
    let platform = repo.references().map_err(|e| repo_error(&e))?;
    let mut refs = platform.prefixed("refs/").map_err(|e| repo_error(&e))?;
    Ok(refs.next().is_some())
}

/// Fills `staging`, a new and empty bare repository, with the branches
/// and tags of the shelf's bundle of `repo` and the objects they reach.
/// Blocks: the shelf's future is run on `runtime`, so this must not be
/// called on one of its worker threads. Leaves `staging` in an unknown
/// state when it fails.
pub fn seed_from_shelf(
    shelf: &dyn BundleShelf,
    runtime: &Handle,
    repo: &RepoId,
    staging: &Path,
) -> Result<(), SeedError> {
    // Inside the staging repository, so it goes with it however this ends.
    let bundle = tempfile::Builder::new()
        .prefix(&layout::temp_prefix("seed."))
        .suffix(".bundle")
        .tempfile_in(staging)
        .map_err(|source| SeedError::Io {
            context: format!("cannot create a file in {}", staging.display()),
            source,
        })?
        .into_temp_path();
    // The timer is made inside the runtime: the calling thread may have
    // none of its own.
    let fetched = runtime.block_on(async {
        tokio::time::timeout(SHELF_FETCH_TIMEOUT, shelf.fetch(repo, &bundle)).await
    });
    match fetched {
        Ok(true) => {}
        Ok(false) => return Err(SeedError::Missing),
        Err(_) => return Err(SeedError::ShelfTimedOut(SHELF_FETCH_TIMEOUT)),
    }
    fill_from_bundle(staging, &bundle)?;
    Ok(())
}

/// A mirror made from a local bundle file, complete but not yet in its
/// place: what `bundle import` builds for every git bundle before it
/// stores anything, so that a bundle git refuses stores nothing. Dropping
/// it removes it; its temporary name is swept at the next start if the
/// process dies first.
pub struct StagedMirror {
    mirror: Mirror,
    staging: tempfile::TempDir,
}

impl StagedMirror {
    /// Moves the mirror into place, unless one appeared there meanwhile
    /// (then this one is dropped: the two came from the same history).
    /// Returns whether it was moved. Blocks.
    pub fn install(self) -> Result<bool, GitError> {
        let StagedMirror { mirror, staging } = self;
        mirror.with_lock(|| {
            if mirror.exists() {
                return Ok(false);
            }
            mirror.move_into_place(staging).map(|()| true)
        })?
    }
}

/// Builds the mirror `mirror` from the local bundle file `bundle`, without
/// asking any upstream: import runs offline. git checks the bundle and
/// `index-pack` hashes every object on the way in. Unlike a shelf's seed,
/// the bundle's branches and tags are kept as they are, and its HEAD
/// (pointed at the branch it names by commit, as `git clone` does): they
/// are what the bundle creator's run used. The freshness stamp is
/// `fetched`, the bundle's creation, so an online server asks the upstream
/// at the next use. Blocks.
pub fn stage_from_local_bundle(
    mirror: &Mirror,
    bundle: &Path,
    fetched: std::time::SystemTime,
) -> Result<StagedMirror, GitError> {
    let staging = mirror.staging()?;
    fill_from_bundle(staging.path(), bundle)?;
    if let Some(branch) = head_branch(bundle, staging.path())? {
        let mut point = bounded_git::git_in(staging.path());
        point.args(["symbolic-ref", "HEAD", &branch]);
        run(point, "git symbolic-ref HEAD", BUNDLE_GIT_TIMEOUT)?;
    }
    super::mirror::write_fetched(staging.path(), fetched)?;
    Ok(StagedMirror {
        mirror: mirror.clone(),
        staging,
    })
}

/// Whether every ref tip of `bundle` is an object of the existing mirror:
/// then importing it would add nothing.
pub fn holds_bundle(mirror: &Mirror, bundle: &Path) -> Result<bool, GitError> {
    let heads = list_heads(bundle, &mirror.dir)?;
    let repo = gix::open(&mirror.dir).map_err(|e| {
        GitError::Repo(format!(
            "cannot open the mirror at {}: {e}",
            mirror.dir.display()
        ))
    })?;
    Ok(heads.iter().all(|(oid, _)| repo.has_object(oid)))
}

/// The branch the bundle's HEAD is on: the one at HEAD's commit (`main`
/// or `master` first, as `git clone` guesses), if the bundle has a HEAD.
fn head_branch(bundle: &Path, dir: &Path) -> Result<Option<String>, GitError> {
    let heads = list_heads(bundle, dir)?;
    let Some((head, _)) = heads.iter().find(|(_, name)| name == "HEAD") else {
        return Ok(None);
    };
    let at_head = |name: &&&str| heads.iter().any(|(oid, n)| oid == head && n == **name);
    let preferred = ["refs/heads/main", "refs/heads/master"];
    if let Some(name) = preferred.iter().find(at_head) {
        return Ok(Some((*name).to_owned()));
    }
    Ok(heads
        .iter()
        .find(|(oid, name)| oid == head && name.starts_with("refs/heads/"))
        .map(|(_, name)| name.clone()))
}

/// `git bundle list-heads`: every ref of the bundle with its object.
/// Run in `dir`, a repository, as git wants one for bundle commands.
fn list_heads(bundle: &Path, dir: &Path) -> Result<Vec<(gix::ObjectId, String)>, GitError> {
    let out = tempfile::Builder::new()
        .prefix(&layout::temp_prefix("heads."))
        .tempfile_in(dir)
        .map_err(GitError::io(format!(
            "cannot create a file in {}",
            dir.display()
        )))?;
    let mut command = bounded_git::git_in(dir);
    command.args(["bundle", "list-heads"]).arg(bundle).stdout(
        out.reopen()
            .map_err(GitError::io("cannot reopen a temporary file"))?,
    );
    run(command, "git bundle list-heads", BUNDLE_GIT_TIMEOUT)?;
    let text = std::fs::read_to_string(out.path())
        .map_err(GitError::io("cannot read git's list of the bundle's heads"))?;
    text.lines()
        .map(|line| {
            let (oid, name) = line.split_once(' ').unwrap_or((line, ""));
            let oid = gix::ObjectId::from_hex(oid.as_bytes()).map_err(|e| {
                GitError::Bundle(format!("git bundle list-heads printed {line:?}: {e}"))
            })?;
            Ok((oid, name.to_owned()))
        })
        .collect()
}

/// Checks the bundle at `bundle` and fetches its branches and tags into the
/// bare repository at `dir`, under the same names. `index-pack` hashes
/// every object on the way in.
fn fill_from_bundle(dir: &Path, bundle: &Path) -> Result<(), BundleGitError> {
    let mut verify = bounded_git::git_in(dir);
    verify.args(["bundle", "verify", "--quiet"]).arg(bundle);
    run(verify, "git bundle verify", BUNDLE_GIT_TIMEOUT)?;

    let mut fetch = bounded_git::git_in(dir);
    fetch
        .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
        .arg(bundle)
        .args(REFSPECS);
    run(fetch, "git fetch from the bundle", BUNDLE_GIT_TIMEOUT)
}

fn run(
    command: std::process::Command,
    what: &str,
    timeout: Duration,
) -> Result<(), BundleGitError> {
    let (status, stderr) = bounded_git::run_bounded(command, timeout).map_err(|e| match e {
        Waited::TimedOut => BundleGitError::TimedOut {
            what: what.to_owned(),
            timeout,
        },
        Waited::Io(source) => BundleGitError::Run {
            what: what.to_owned(),
            source,
        },
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(BundleGitError::Failed {
            what: what.to_owned(),
            stderr: format!("{status}: {}", stderr.trim()),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::fs;
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::super::mirror::tests::{git, mirror_of, Upstream};
    use super::super::mirror::Updated;
    use super::*;

    /// A shelf in a directory: `<dir>/<mirror dir>.bundle`, as a bucket
    /// would hold it; offered bundles are kept in a list, for tests to read.
    pub struct DirShelf {
        pub dir: tempfile::TempDir,
        pub offered: Mutex<Vec<PathBuf>>,
    }

    impl DirShelf {
        pub fn new() -> Arc<DirShelf> {
            Arc::new(DirShelf {
                dir: tempfile::tempdir().unwrap(),
                offered: Mutex::default(),
            })
        }

        pub fn path_of(&self, repo: &RepoId) -> PathBuf {
            self.dir
                .path()
                .join(format!("{}.bundle", repo.mirror_dir().key()))
        }

        /// Shelves a bundle of `mirror` as the bundle of `repo`.
        pub fn put(&self, repo: &RepoId, mirror: &Mirror) {
            let path = self.path_of(repo);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            create_bundle(mirror, &path).unwrap();
        }
    }

    impl BundleShelf for DirShelf {
        fn fetch<'a>(&'a self, repo: &'a RepoId, dest: &'a Path) -> BoxFuture<'a, bool> {
            Box::pin(async move { tokio::fs::copy(self.path_of(repo), dest).await.is_ok() })
        }

        fn offer(&self, _repo: &RepoId, bundle: PathBuf) {
            self.offered.lock().unwrap().push(bundle);
        }
    }

    pub fn repo_id() -> RepoId {
        RepoId::from_url("https://example.com/org/infra.git").unwrap()
    }

    /// A runtime for the shelf's futures, driven from the test's thread as
    /// the blocking pool's threads drive it in the server.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Creates `mirror` with `shelf` as its seed; returns the outcome and
    /// why seeding failed, if it did.
    fn seeded_update(
        shelf: &DirShelf,
        mirror: &Mirror,
    ) -> (Result<Updated, GitError>, Option<SeedError>) {
        let runtime = runtime();
        let repo = repo_id();
        let mut failure = None;
        let mut seed =
            |staging: &Path| match seed_from_shelf(shelf, runtime.handle(), &repo, staging) {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            };
        let updated = mirror.update_seeded(Some(&mut seed));
        (updated, failure)
    }

    /// Seeds `mirror` from `shelf`, which must succeed and leave the
    /// upstream's refs; what the update says.
    fn seeds_cleanly(shelf: &DirShelf, mirror: &Mirror, upstream: &Upstream) -> Updated {
        let (updated, failure) = seeded_update(shelf, mirror);
        assert!(failure.is_none(), "{failure:?}");
        assert_eq!(refs(&mirror.dir), refs(&upstream.dir));
        updated.unwrap()
    }

    /// Every branch and tag with what it points to.
    pub fn refs(dir: &Path) -> Vec<String> {
        let out = git(
            dir,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads",
                "refs/tags",
            ],
        );
        out.lines().map(str::to_owned).collect()
    }

    /// The mirror's packs, each with its object count and whether it holds
    /// `object`.
    fn packs(dir: &Path, object: gix::ObjectId) -> Vec<(u32, bool)> {
        let mut packs = Vec::new();
        for entry in fs::read_dir(dir.join("objects/pack")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "idx") {
                let index = gix::odb::pack::index::File::at(&path, gix::hash::Kind::Sha1).unwrap();
                packs.push((index.num_objects(), index.lookup(object).is_some()));
            }
        }
        packs
    }

    /// Nothing but the mirror is left in its directory.
    fn only_the_mirror_beside(mirror: &Mirror) {
        let siblings: Vec<_> = fs::read_dir(mirror.dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(siblings, ["infra.git"]);
    }

    /// One more commit on `main` upstream, changing one file: three new
    /// objects (commit, root tree, blob).
    fn commit_upstream(upstream: &Upstream, text: &str) -> gix::ObjectId {
        fs::write(upstream.dir.join("README.md"), text).unwrap();
        git(&upstream.dir, &["commit", "-q", "-am", text]);
        upstream.rev("main")
    }

    /// An upstream, a mirror of it, and a directory holding the mirror's
    /// bundle as `infra.git.bundle`.
    fn bundled_mirror() -> (Upstream, tempfile::TempDir, Mirror, tempfile::TempDir) {
        let upstream = Upstream::new();
        let (cache, mirror) = mirror_of(&upstream);
        mirror.update().unwrap();
        let file = tempfile::tempdir().unwrap();
        create_bundle(&mirror, &file.path().join("infra.git.bundle")).unwrap();
        (upstream, cache, mirror, file)
    }

    #[test]
    fn a_mirror_from_a_local_bundle_keeps_its_refs_head_and_creation_time() {
        let (upstream, _old_cache, old, file) = bundled_mirror();
        let bundle = file.path().join("infra.git.bundle");
        // Upstream moves on: the new mirror still has the bundle's refs.
        commit_upstream(&upstream, "later\n");

        let (_cache, mirror) = mirror_of(&upstream);
        let created = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let staged = stage_from_local_bundle(&mirror, &bundle, created).unwrap();
        assert!(!mirror.exists(), "not in place before install");
        assert!(staged.install().unwrap());
        assert_eq!(refs(&mirror.dir), refs(&old.dir));
        assert_eq!(
            git(&mirror.dir, &["symbolic-ref", "HEAD"]),
            git(&old.dir, &["symbolic-ref", "HEAD"])
        );
        assert_eq!(mirror.last_fetch(), Some(created));
        assert!(holds_bundle(&mirror, &bundle).unwrap());
        // The lock of `install` stays, as every mirror's does.
        let temporary: Vec<_> = fs::read_dir(mirror.dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(layout::TEMP_PREFIX))
            .collect();
        assert!(temporary.is_empty(), "{temporary:?}");

        // A mirror lacking the bundle's newest commit does not hold it.
        let (_older_cache, older) = mirror_of(&upstream);
        let staged = stage_from_local_bundle(&older, &bundle, created).unwrap();
        staged.install().unwrap();
        let newer = tempfile::tempdir().unwrap();
        let newer_bundle = newer.path().join("newer.bundle");
        old.update().unwrap();
        create_bundle(&old, &newer_bundle).unwrap();
        assert!(!holds_bundle(&older, &newer_bundle).unwrap());
    }

    #[test]
    fn a_damaged_local_bundle_leaves_no_mirror() {
        let (upstream, _old_cache, _old, file) = bundled_mirror();
        let bundle = file.path().join("infra.git.bundle");
        let mut bytes = fs::read(&bundle).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        fs::write(&bundle, bytes).unwrap();

        let (_cache, mirror) = mirror_of(&upstream);
        assert!(stage_from_local_bundle(&mirror, &bundle, SystemTime::now()).is_err());
        assert!(!mirror.exists());
        let left: Vec<_> = fs::read_dir(mirror.dir.parent().unwrap())
            .unwrap()
            .collect();
        assert!(left.is_empty(), "the staging directory is gone");
    }

    #[test]
    fn a_new_mirror_is_seeded_then_fetches_only_the_difference() {
        let upstream = Upstream::new();
        let shelf = DirShelf::new();
        let (_old_cache, old) = mirror_of(&upstream);
        old.update().unwrap();
        shelf.put(&repo_id(), &old);
        let old_main = upstream.rev("main");
        commit_upstream(&upstream, "newer readme\n");

        let (_cache, mirror) = mirror_of(&upstream);
        let updated = seeds_cleanly(&shelf, &mirror, &upstream);
        assert_eq!(
            updated,
            Updated {
                changed: true,
                seeded: true
            }
        );
        assert_eq!(
            git(&mirror.dir, &["symbolic-ref", "HEAD"]),
            "refs/heads/main"
        );
        git(&mirror.dir, &["fsck", "--no-progress"]);
        // One pack from the bundle, with the older history, and one from
        // the upstream with the new commit's three objects alone.
        let mut packs = packs(&mirror.dir, old_main);
        packs.sort();
        assert_eq!(packs.len(), 2, "{packs:?}");
        assert_eq!(packs[0], (3, false), "{packs:?}");
        assert!(packs[1].1, "{packs:?}");
        // Configured exactly as a mirror cloned from the upstream.
        let (_plain_cache, plain) = mirror_of(&upstream);
        plain.update().unwrap();
        let config = ["config", "--list", "--local"];
        assert_eq!(git(&mirror.dir, &config), git(&plain.dir, &config));
        assert!(mirror.last_fetch().is_some());
        only_the_mirror_beside(&mirror);
        let inside = fs::read_dir(&mirror.dir).unwrap();
        for entry in inside {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(!name.starts_with(".tmp-"), "{name} left in the mirror");
        }
    }

    #[test]
    fn a_current_bundle_seeds_a_mirror_with_nothing_to_share() {
        let upstream = Upstream::new();
        // A default branch no new repository starts with: HEAD moves.
        git(&upstream.dir, &["branch", "trunk"]);
        git(&upstream.dir, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
        let shelf = DirShelf::new();
        let (_old_cache, old) = mirror_of(&upstream);
        old.update().unwrap();
        shelf.put(&repo_id(), &old);

        let (_cache, mirror) = mirror_of(&upstream);
        let updated = seeds_cleanly(&shelf, &mirror, &upstream);
        assert_eq!(
            updated,
            Updated {
                changed: false,
                seeded: true
            }
        );
        assert_eq!(
            git(&mirror.dir, &["symbolic-ref", "HEAD"]),
            "refs/heads/trunk"
        );
    }

    #[test]
    fn a_bad_bundle_falls_back_to_a_clone() {
        let upstream = Upstream::new();
        let (_old_cache, old) = mirror_of(&upstream);
        old.update().unwrap();
        let shelf = DirShelf::new();
        let path = shelf.path_of(&repo_id());
        shelf.put(&repo_id(), &old);
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() - 30;
        bytes[middle] ^= 0x01;
        let corrupt = bytes.clone();
        for (what, content) in [
            ("a flipped byte", corrupt),
            ("not a bundle", b"no bundle at all\n".to_vec()),
        ] {
            fs::write(&path, &content).unwrap();
            let (_cache, mirror) = mirror_of(&upstream);
            let (updated, failure) = seeded_update(&shelf, &mirror);
            assert!(
                matches!(failure, Some(SeedError::Git(BundleGitError::Failed { .. }))),
                "{what}: {failure:?}"
            );
            assert_eq!(
                updated.unwrap(),
                Updated {
                    changed: true,
                    seeded: false
                },
                "{what}"
            );
            assert_eq!(refs(&mirror.dir), refs(&upstream.dir), "{what}");
            git(&mirror.dir, &["fsck", "--no-progress"]);
            only_the_mirror_beside(&mirror);
        }
    }

    #[test]
    fn a_missing_bundle_means_a_plain_clone() {
        let upstream = Upstream::new();
        let shelf = DirShelf::new();
        let (_cache, mirror) = mirror_of(&upstream);
        let (updated, failure) = seeded_update(&shelf, &mirror);
        assert!(matches!(failure, Some(SeedError::Missing)), "{failure:?}");
        assert!(!updated.unwrap().seeded);
        assert_eq!(refs(&mirror.dir), refs(&upstream.dir));
    }

    #[test]
    fn forged_refs_of_a_bundle_are_replaced_by_the_upstreams() {
        let upstream = Upstream::new();
        let (_forged_cache, forged) = mirror_of(&upstream);
        forged.update().unwrap();
        // The bundle's main and a branch of its own point at a commit the
        // upstream never had.
        let work = tempfile::tempdir().unwrap();
        let clone = work.path().join("clone");
        git(
            work.path(),
            &["clone", "-q", &upstream.url, clone.to_str().unwrap()],
        );
        git(&clone, &["commit", "-q", "--allow-empty", "-m", "forged"]);
        let forged_commit = git(&clone, &["rev-parse", "HEAD"]);
        let forged_dir = forged.dir.to_str().unwrap();
        git(
            &clone,
            &["push", "-q", "-f", forged_dir, "HEAD:refs/heads/main"],
        );
        git(
            &clone,
            &["push", "-q", forged_dir, "HEAD:refs/heads/forged"],
        );
        git(&clone, &["push", "-q", forged_dir, "HEAD:refs/tags/v9"]);
        let shelf = DirShelf::new();
        shelf.put(&repo_id(), &forged);

        let (_cache, mirror) = mirror_of(&upstream);
        let (updated, failure) = seeded_update(&shelf, &mirror);
        assert!(failure.is_none(), "{failure:?}");
        assert!(updated.unwrap().seeded);
        assert_eq!(refs(&mirror.dir), refs(&upstream.dir));
        assert!(
            !refs(&mirror.dir).iter().any(|r| r.contains(&forged_commit)),
            "no ref points at the forged commit"
        );
    }

    #[test]
    fn no_mirror_when_the_upstream_fails_after_seeding() {
        let upstream = Upstream::new();
        let (_old_cache, old) = mirror_of(&upstream);
        old.update().unwrap();
        let shelf = DirShelf::new();
        shelf.put(&repo_id(), &old);

        let cache = tempfile::tempdir().unwrap();
        let gone = cache.path().join("no-such-repo");
        let mirror = Mirror::new(
            cache.path().join("git/example.com/org/infra.git"),
            format!("file://{}", gone.display()),
        );
        let (updated, failure) = seeded_update(&shelf, &mirror);
        assert!(failure.is_none(), "the seed itself worked: {failure:?}");
        let error = updated.unwrap_err();
        assert!(matches!(error, GitError::Clone(_)), "{error:?}");
        assert!(!mirror.exists());
        let left: Vec<_> = fs::read_dir(mirror.dir.parent().unwrap())
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_mirror_without_refs_is_not_bundled() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("empty.git");
        gix::init_bare(&dir).unwrap();
        let mirror = Mirror::new(dir, "file:///nowhere".into());
        assert!(!has_refs(&mirror).unwrap());
        let error = create_bundle(&mirror, &cache.path().join("b")).unwrap_err();
        assert!(matches!(error, GitError::Bundle(_)), "{error:?}");
    }
}
