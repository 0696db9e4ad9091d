//! Bare mirrors of upstream repositories, kept with gitoxide.
//!
//! A mirror holds the upstream's branches and tags under the same names
//! (`refs/heads/*`, `refs/tags/*`) and its `HEAD` symref, so `git
//! upload-pack` can serve it as if it were the upstream. It is created in a
//! temporary directory beside its final place and renamed into place when
//! complete; later updates fetch into it and then drop the branches and
//! tags the upstream no longer has.
//!
//! Credentials come from git's configuration as `git fetch` would use them
//! (credential helpers, `GIT_ASKPASS`, `core.askPass`), except that gix is
//! never allowed to prompt on a terminal: a server has nobody at its
//! terminal. `url.*.insteadOf` rewriting is deliberately not applied to the
//! upstream URL: the `GIT_CONFIG_*` variables that send git clients to the
//! proxy may be set in the proxy's own environment too, and rewriting would
//! make a mirror fetch from itself.
//!
//! gix fetches over reqwest, which follows `HTTPS_PROXY`, `NO_PROXY`, ...
//! and `SSL_CERT_FILE` as tfmirror's other upstream clients do (see
//! `upstream/network_env.rs`); git's own `http.proxy` and `http.sslCAInfo`
//! settings are the git CLI's and are not read.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gix::bstr::{BStr, ByteSlice};
use gix::protocol::handshake::Ref;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};
use gix::remote::fetch::refs::update::Mode;
use gix::remote::fetch::{RefLogMessage, Tags};
use gix::remote::Direction;

use crate::store::layout::{self, MIRROR_LOCK_SUFFIX, MIRROR_STAGING_SUFFIX};

/// The file inside a mirror holding the time of its last successful fetch
/// (unix milliseconds).
const FETCHED_FILE: &str = "tfmirror-fetched";

/// What a mirror holds of its upstream, under the same names.
pub(super) const REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// The local namespaces that follow the upstream exactly, deletions included.
pub(super) const MIRRORED_PREFIXES: [&str; 2] = ["refs/heads/", "refs/tags/"];

/// Configuration applied in memory whenever a mirror is opened for fetching.
pub(super) const FETCH_CONFIG: [&str; 2] = [
    // Nobody answers a prompt on a server's terminal; helpers still run.
    "gitoxide.credentials.terminalPrompt=false",
    // A mirror has no use for reflogs, and writing them would need an identity.
    "core.logAllRefUpdates=false",
];

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0}")]
    Clone(String),
    #[error("{0}")]
    Fetch(String),
    #[error("the mirror of {repo} has no branch, tag or commit {reference:?}")]
    NoSuchRef { reference: String, repo: String },
    /// A ref the upstream does not have either: its refs were compared
    /// with the mirror's just before.
    #[error(
        "{repo} has no branch, tag or commit {reference:?}: the upstream's refs were checked \
         just now"
    )]
    NotUpstream { reference: String, repo: String },
    #[error("{reference:?} names more than one commit in the mirror of {repo}")]
    AmbiguousRef { reference: String, repo: String },
    /// A mirror that cannot be opened or read.
    #[error("{0}")]
    Repo(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Archive(String),
    /// A bundle that could not be made or read.
    #[error("{0}")]
    Bundle(String),
    /// A repository outside every `[git] mirror` prefix: never cloned.
    #[error(
        "{repo} is under none of the [git] mirror prefixes of this tfmirror, so it is not \
         cloned; to mirror it, add its prefix (e.g. \"https://host/org/\") to [git] mirror \
         in the tfmirror config"
    )]
    NotMirrored { repo: String },
    /// The server is sealed: the upstream was not asked.
    #[error("{0}")]
    Offline(crate::sealed::Offline),
}

impl GitError {
    pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> GitError {
        let context = context.into();
        move |source| GitError::Io { context, source }
    }
}

/// An error and its causes on one line. gix errors nest deeply, and the
/// useful part (the HTTP status, the missing object) is usually the last.
/// A certificate or proxy failure gets the hint that names the variable
/// to set, as registry requests' do.
pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    if let Some(hint) = crate::upstream::network_hint(&text) {
        text.push_str(" (");
        text.push_str(hint);
        text.push(')');
    }
    text
}

/// Fills a new, empty bare repository (its path given) before its first
/// fetch from the upstream; returns whether it put anything in.
pub type Seed<'a> = dyn FnMut(&Path) -> bool + 'a;

/// What a successful [`Mirror::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Updated {
    /// Some ref of the mirror changed (every ref of a new mirror made from
    /// nothing counts as changed; a seeded one, only those the upstream
    /// moved past the seed).
    pub changed: bool,
    /// The mirror was created from a seed, then fetched from the upstream.
    pub seeded: bool,
}

/// A bare mirror of one upstream repository at `<cache>/git/<host>/<path>.git`.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub dir: PathBuf,
    /// The clone URL.
    pub upstream: String,
}

impl Mirror {
    pub fn new(dir: PathBuf, upstream: String) -> Mirror {
        Mirror { dir, upstream }
    }

    /// Whether the mirror has been created. A mirror appears complete or
    /// not at all.
    pub fn exists(&self) -> bool {
        self.dir.join("HEAD").is_file()
    }

    /// The size of the mirror's object store (packs and loose objects): a
    /// fetch's growth of it is what it downloaded. Blocking.
    pub fn object_bytes(&self) -> u64 {
        fn walk(dir: &std::path::Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => walk(&entry.path()),
                    Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.dir.join("objects"))
    }

    /// Creates the mirror (full history, all branches and tags), or fetches
    /// into it and prunes the branches and tags the upstream no longer has;
    /// then records the time of this successful fetch.
    ///
    /// Callers serialise updates of one mirror with [`Mirror::with_lock`].
    pub fn update(&self) -> Result<Updated, GitError> {
        self.update_seeded(None)
    }

    /// [`Mirror::update`], where a mirror that does not exist yet is first
    /// filled by `seed`, given the new bare repository: it returns whether
    /// it put anything in. A seeded mirror is then fetched from the
    /// upstream like any existing one, so its refs become the upstream's
    /// and only what the seed lacked is transferred; if that fetch fails,
    /// nothing is kept. A seed that fails leaves a repository in an unknown
    /// state, so the clone that follows starts from a new one.
    pub fn update_seeded(&self, seed: Option<&mut Seed<'_>>) -> Result<Updated, GitError> {
        crate::crypto_provider::install();
        if self.exists() {
            let repo = open_for_fetch(&self.dir).map_err(|e| {
                GitError::Fetch(format!(
                    "cannot open the mirror at {}: {}",
                    self.dir.display(),
                    chain(&e)
                ))
            })?;
            let changes = fetch(&repo, &self.upstream, false).map_err(|e| {
                GitError::Fetch(format!("cannot fetch {}: {}", self.upstream, chain(&*e)))
            })?;
            write_fetched(&self.dir, SystemTime::now())?;
            Ok(Updated {
                changed: changes.refs || changes.head,
                seeded: false,
            })
        } else {
            self.create(seed)
        }
    }

    fn create(&self, seed: Option<&mut Seed<'_>>) -> Result<Updated, GitError> {
        if let Some(seed) = seed {
            let staging = self.staging()?;
            if seed(staging.path()) {
                // Not `initial`: the seed's refs may be loose files, which
                // would shadow new values written to packed-refs alone.
                let changes = self.fill(&staging, false)?;
                self.move_into_place(staging)?;
                // The seed's HEAD is never used, only set as the upstream
                // says: the seed was current if no branch or tag moved.
                return Ok(Updated {
                    changed: changes.refs,
                    seeded: true,
                });
            }
        }
        let staging = self.staging()?;
        self.fill(&staging, true)?;
        self.move_into_place(staging)?;
        Ok(Updated {
            changed: true,
            seeded: false,
        })
    }

    /// A new, empty bare repository beside the mirror's place. Beside it,
    /// so the rename stays on one file system, and hidden, so nothing
    /// mistakes it for a mirror. Removed when dropped; a temporary name
    /// like any other in the cache, so one left by a killed process is
    /// never listed and is swept at the next start.
    pub(super) fn staging(&self) -> Result<tempfile::TempDir, GitError> {
        let (Some(parent), Some(name)) = (self.dir.parent(), self.dir.file_name()) else {
            return Err(GitError::Clone(format!(
                "cannot clone {} into {}: not a directory name",
                self.upstream,
                self.dir.display()
            )));
        };
        fs::create_dir_all(parent)
            .map_err(GitError::io(format!("cannot create {}", parent.display())))?;
        let temp = tempfile::Builder::new()
            .prefix(&layout::temp_prefix(&format!(
                "{}.",
                name.to_string_lossy()
            )))
            .suffix(MIRROR_STAGING_SUFFIX)
            .tempdir_in(parent)
            .map_err(GitError::io(format!(
                "cannot create a directory in {}",
                parent.display()
            )))?;
        gix::init_bare(temp.path()).map_err(|e| self.clone_error(&e))?;
        Ok(temp)
    }

    /// Fetches the upstream into the staging repository and stamps it.
    fn fill(&self, staging: &tempfile::TempDir, initial: bool) -> Result<Changes, GitError> {
        let repo = open_for_fetch(staging.path()).map_err(|e| self.clone_error(&e))?;
        let changes = fetch(&repo, &self.upstream, initial).map_err(|e| self.clone_error(&*e))?;
        drop(repo);
        write_fetched(staging.path(), SystemTime::now())?;
        Ok(changes)
    }

    pub(super) fn move_into_place(&self, staging: tempfile::TempDir) -> Result<(), GitError> {
        let temp = staging.keep();
        fs::rename(&temp, &self.dir).map_err(|e| {
            let _ = fs::remove_dir_all(&temp);
            GitError::Io {
                context: format!(
                    "cannot move the new mirror of {} to {}",
                    self.upstream,
                    self.dir.display()
                ),
                source: e,
            }
        })
    }

    fn clone_error(&self, e: &(dyn std::error::Error + 'static)) -> GitError {
        GitError::Clone(format!(
            "cannot clone {} into {}: {}",
            self.upstream,
            self.dir.display(),
            chain(e)
        ))
    }

    /// When the last successful fetch (or the creation) finished.
    pub fn last_fetch(&self) -> Option<SystemTime> {
        let text = fs::read_to_string(self.dir.join(FETCHED_FILE)).ok()?;
        let millis: u64 = text.trim().parse().ok()?;
        UNIX_EPOCH.checked_add(Duration::from_millis(millis))
    }

    /// Runs `f` while holding an exclusive lock on `<dir>.lock`: one update
    /// per mirror at a time, across threads and processes. The lock is
    /// released when `f` returns or panics; the file stays (removing it
    /// while another thread waits on it would let two updates run), and
    /// the store sweeps it at the next start.
    pub fn with_lock<T>(&self, f: impl FnOnce() -> T) -> Result<T, GitError> {
        let path = lock_path(&self.dir);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(GitError::io(format!("cannot create {}", parent.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(GitError::io(format!(
                "cannot open the lock file {}",
                path.display()
            )))?;
        file.lock()
            .map_err(GitError::io(format!("cannot lock {}", path.display())))?;
        let result = f();
        drop(file);
        Ok(result)
    }
}

fn lock_path(dir: &Path) -> PathBuf {
    let mut path = OsString::from(dir.as_os_str());
    path.push(MIRROR_LOCK_SUFFIX);
    PathBuf::from(path)
}

fn open_for_fetch(dir: &Path) -> gix::Result<gix::Repository> {
    let mut repo = gix::open_opts(
        dir,
        gix::open::Options::default().config_overrides(FETCH_CONFIG),
    )?;
    // Reflogs are off, but gix wants an identity at hand for ref edits.
    repo.committer_or_set_generic_fallback()?;
    Ok(repo)
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Fetches every branch and tag of `upstream` into `repo` under the same
/// names, points `HEAD` where the upstream's points, and deletes local
/// branches and tags the upstream no longer advertises.
fn fetch(repo: &gix::Repository, upstream: &str, initial: bool) -> Result<Changes, BoxError> {
    let (remote, options) = upstream_remote(repo, upstream)?;
    let interrupt = AtomicBool::new(false);
    let outcome = remote
        .connect(Direction::Fetch)?
        .prepare_fetch(gix::progress::Discard, options)?
        // A new mirror gets one packed-refs file, like `git clone`.
        .with_write_packed_refs_only(initial)
        .with_reflog_message(RefLogMessage::Prefixed {
            action: "tfmirror fetch".into(),
        })
        .receive(gix::progress::Discard, &interrupt)?;

    let update_refs = match &outcome.status {
        gix::remote::fetch::Status::NoPackReceived { update_refs, .. } => update_refs,
        gix::remote::fetch::Status::Change { update_refs, .. } => update_refs,
    };
    let rejected: Vec<String> = update_refs
        .iter_mapping_updates(
            &outcome.ref_map.mappings,
            &outcome.ref_map.refspecs,
            &outcome.ref_map.extra_refspecs,
        )
        .filter(|(update, ..)| is_rejection(&update.mode))
        .map(|(update, mapping, ..)| {
            let name = mapping
                .remote
                .as_name()
                .map(BStr::to_string)
                .unwrap_or_default();
            format!("{name}: {}", update.mode)
        })
        .collect();
    if !rejected.is_empty() {
        return Err(format!("some refs were not updated: {}", rejected.join(", ")).into());
    }

    let moved = update_refs
        .updates
        .iter()
        .any(|update| matches!(update.mode, Mode::FastForward | Mode::Forced | Mode::New));
    let remote_refs = &outcome.ref_map.remote_refs;
    let head = set_head(repo, remote_refs)?;
    let pruned = prune(repo, remote_refs)?;
    Ok(Changes {
        refs: moved || pruned,
        head,
    })
}

/// What a fetch changed.
struct Changes {
    /// A branch or tag was created, moved or deleted.
    refs: bool,
    /// `HEAD` was pointed elsewhere.
    head: bool,
}

/// The upstream as a remote of `repo`, fetching what a mirror holds, and
/// the options that make it advertise its `HEAD` too. Shared by the fetch
/// and the ref check, so both see the same refs of the upstream.
pub(super) fn upstream_remote<'repo>(
    repo: &'repo gix::Repository,
    upstream: &str,
) -> Result<(gix::Remote<'repo>, gix::remote::ref_map::Options), BoxError> {
    let url = gix::url::parse(upstream.as_bytes().as_bstr())?;
    let remote = repo
        .remote_at_without_url_rewrite(url)?
        .with_refspecs(REFSPECS, Direction::Fetch)?
        .with_fetch_tags(Tags::None);
    // Asking for HEAD too makes the upstream tell where its HEAD points.
    let head_spec =
        gix::refspec::parse("HEAD".into(), gix::refspec::parse::Operation::Fetch)?.to_owned();
    let options = gix::remote::ref_map::Options {
        extra_refspecs: vec![head_spec],
        ..Default::default()
    };
    Ok((remote, options))
}

fn is_rejection(mode: &Mode) -> bool {
    matches!(
        mode,
        Mode::RejectedSourceObjectNotFound { .. }
            | Mode::RejectedTagUpdate
            | Mode::RejectedNonFastForward
            | Mode::RejectedToReplaceWithUnborn
            | Mode::RejectedCurrentlyCheckedOut { .. }
    )
}

pub(super) fn ref_name(r: &Ref) -> &BStr {
    match r {
        Ref::Peeled { full_ref_name, .. }
        | Ref::Direct { full_ref_name, .. }
        | Ref::Symbolic { full_ref_name, .. }
        | Ref::Unborn { full_ref_name, .. } => full_ref_name.as_bstr(),
    }
}

/// Points the mirror's `HEAD` where the upstream's points: the default
/// branch, which a client asking for no particular ref gets. Returns
/// whether it moved.
fn set_head(repo: &gix::Repository, remote_refs: &[Ref]) -> Result<bool, BoxError> {
    let Some(remote_head) = remote_refs.iter().find(|r| ref_name(r) == "HEAD") else {
        return Ok(false);
    };
    let new = match remote_head {
        Ref::Symbolic { target, .. } | Ref::Unborn { target, .. } => {
            Target::Symbolic(FullName::try_from(target.as_bstr())?)
        }
        Ref::Direct { object, .. } => Target::Object(*object),
        Ref::Peeled { .. } => return Ok(false),
    };
    let head: FullName = "HEAD".try_into()?;
    if repo.find_reference(head.as_ref())?.inner.target == new {
        return Ok(false);
    }
    repo.edit_reference(RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "tfmirror: upstream HEAD".into(),
            },
            expected: PreviousValue::Any,
            new,
        },
        name: head,
        deref: false,
    })?;
    Ok(true)
}

/// Deletes local branches and tags the upstream did not advertise. gix's
/// fetch does not prune yet. Returns whether it deleted any.
fn prune(repo: &gix::Repository, remote_refs: &[Ref]) -> Result<bool, BoxError> {
    let advertised: HashSet<&BStr> = remote_refs.iter().map(ref_name).collect();
    let mut edits = Vec::new();
    let platform = repo.references()?;
    for prefix in MIRRORED_PREFIXES {
        for reference in platform.prefixed(prefix)? {
            let reference = reference?;
            let name = reference.name().as_bstr();
            if !advertised.contains(name) {
                edits.push(RefEdit {
                    change: Change::Delete {
                        expected: PreviousValue::Any,
                        log: RefLog::AndReference,
                    },
                    name: reference.name().to_owned(),
                    deref: false,
                });
            }
        }
    }
    if edits.is_empty() {
        return Ok(false);
    }
    repo.edit_references(edits)?;
    Ok(true)
}

/// Records `time` as the mirror's last successful fetch, atomically.
pub(super) fn write_fetched(dir: &Path, time: SystemTime) -> Result<(), GitError> {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let path = dir.join(FETCHED_FILE);
    let context = || format!("cannot write {}", path.display());
    let mut temp = tempfile::Builder::new()
        .prefix(&layout::temp_prefix("tfmirror-fetched."))
        .tempfile_in(dir)
        .map_err(GitError::io(context()))?;
    writeln!(temp, "{millis}").map_err(GitError::io(context()))?;
    temp.persist(&path).map_err(|e| GitError::Io {
        context: context(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    /// Runs git in `dir` with a fixed identity and clock.
    pub fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "tag.gpgSign=false",
                "-c",
                "commit.gpgSign=false",
            ])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// An upstream repository: on `main`, `v1` (annotated) then `v2`
    /// (lightweight); a branch `feature` with one more commit that adds a
    /// `.gitmodules`.
    pub struct Upstream {
        pub _temp: tempfile::TempDir,
        pub dir: PathBuf,
        pub url: String,
    }

    impl Upstream {
        pub fn new() -> Upstream {
            let temp = tempfile::tempdir().unwrap();
            let dir = temp.path().join("upstream");
            fs::create_dir(&dir).unwrap();
            git(&dir, &["init", "-q"]);
            fs::write(dir.join("main.tf"), "variable \"a\" {}\n").unwrap();
            fs::create_dir_all(dir.join("modules/vpc")).unwrap();
            fs::write(dir.join("modules/vpc/main.tf"), "# vpc\n").unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "one"]);
            git(&dir, &["tag", "-a", "v1", "-m", "version 1"]);
            fs::write(dir.join("README.md"), "readme\n").unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "two"]);
            git(&dir, &["tag", "v2"]);
            git(&dir, &["checkout", "-q", "-b", "feature"]);
            fs::write(dir.join(".gitmodules"), "").unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "three"]);
            git(&dir, &["checkout", "-q", "main"]);
            let url = format!("file://{}", dir.display());
            Upstream {
                _temp: temp,
                dir,
                url,
            }
        }

        pub fn rev(&self, rev: &str) -> gix::ObjectId {
            gix::ObjectId::from_hex(git(&self.dir, &["rev-parse", rev]).as_bytes()).unwrap()
        }
    }

    pub fn mirror_of(upstream: &Upstream) -> (tempfile::TempDir, Mirror) {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("git/example.com/org/infra.git");
        (cache, Mirror::new(dir, upstream.url.clone()))
    }

    fn refs(dir: &Path) -> Vec<String> {
        let out = git(dir, &["for-each-ref", "--format=%(refname)"]);
        out.lines().map(str::to_owned).collect()
    }

    #[test]
    fn creates_updates_and_prunes() {
        let upstream = Upstream::new();
        let (cache, mirror) = mirror_of(&upstream);
        assert!(!mirror.exists());
        assert!(mirror.last_fetch().is_none());

        mirror.with_lock(|| mirror.update()).unwrap().unwrap();
        assert!(mirror.exists());
        let first = mirror.last_fetch().expect("fetch time recorded");
        assert!(SystemTime::now().duration_since(first).unwrap() < Duration::from_secs(60));
        assert_eq!(
            refs(&mirror.dir),
            [
                "refs/heads/feature",
                "refs/heads/main",
                "refs/tags/v1",
                "refs/tags/v2"
            ]
        );
        assert_eq!(
            git(&mirror.dir, &["symbolic-ref", "HEAD"]),
            "refs/heads/main"
        );
        // Nothing but the mirror and its lock file is left beside it.
        let mut siblings: Vec<_> = fs::read_dir(mirror.dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        siblings.sort();
        assert_eq!(siblings, ["infra.git", "infra.git.lock"]);
        // The mirror is a repository git can read, with full history.
        git(&mirror.dir, &["fsck", "--no-progress"]);
        assert_eq!(
            git(&mirror.dir, &["rev-list", "--count", "refs/heads/feature"]),
            "3"
        );

        // Upstream changes: a branch goes, a tag moves, a branch and a tag
        // appear, the default branch changes.
        git(&upstream.dir, &["branch", "-D", "feature"]);
        git(
            &upstream.dir,
            &["commit", "-q", "--allow-empty", "-m", "four"],
        );
        git(&upstream.dir, &["tag", "-f", "v2"]);
        git(&upstream.dir, &["tag", "v3"]);
        git(&upstream.dir, &["branch", "trunk"]);
        git(&upstream.dir, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
        git(&upstream.dir, &["branch", "-D", "main"]);
        mirror.update().unwrap();
        assert_eq!(
            refs(&mirror.dir),
            [
                "refs/heads/trunk",
                "refs/tags/v1",
                "refs/tags/v2",
                "refs/tags/v3"
            ]
        );
        assert_eq!(
            git(&mirror.dir, &["rev-parse", "v2"]),
            upstream.rev("v2").to_string()
        );
        assert_eq!(
            git(&mirror.dir, &["symbolic-ref", "HEAD"]),
            "refs/heads/trunk"
        );
        assert!(mirror.last_fetch().unwrap() >= first);

        // An update with nothing new succeeds too.
        mirror.update().unwrap();
        drop(cache);
    }

    #[test]
    fn failed_clone_leaves_nothing() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("git/example.com/missing.git");
        let missing = cache.path().join("no-such-repo");
        let mirror = Mirror::new(dir.clone(), format!("file://{}", missing.display()));
        let error = mirror.update().unwrap_err();
        assert!(matches!(error, GitError::Clone(_)), "{error:?}");
        assert!(error.to_string().contains("no-such-repo"), "{error}");
        assert!(!mirror.exists());
        let left: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn lock_is_exclusive() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        let cache = tempfile::tempdir().unwrap();
        let mirror = Mirror::new(cache.path().join("git/h/r.git"), "file:///nowhere".into());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let mirror = mirror.clone();
                let inside = inside.clone();
                std::thread::spawn(move || {
                    mirror
                        .with_lock(|| {
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                            std::thread::sleep(Duration::from_millis(20));
                            inside.fetch_sub(1, Ordering::SeqCst);
                        })
                        .unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
