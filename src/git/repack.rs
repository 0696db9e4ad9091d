//! Keeping mirrors lean: gix has no gc, so every fetch into a mirror adds a
//! pack, and a mirror fetched often ends up with hundreds of them, each one
//! more index that `git upload-pack` searches for every object it serves.
//! Past [`MAX_PACKS`] packs, the mirror is repacked into one by the `git`
//! binary, which is on the machine already for `upload-pack`.
//!
//! A repack runs in the background after a fetch, never on a client's
//! request path, and under the mirror's lock ([`Mirror::with_lock`]): a
//! repack and a fetch of one mirror, or two repacks, never run at once.
//!
//! Clones served while a repack runs are safe: `git repack -a -d` writes
//! the new pack under a temporary name (`objects/pack/.tmp-*`), renames it
//! into place, and only then deletes the packs it replaces; an
//! `upload-pack` that has a deleted pack open keeps reading it, and one
//! that misses an object rescans the pack directory. A repack that fails or
//! is killed leaves the old packs in place, so the mirror stays usable; its
//! temporary files are swept at the next start (see
//! `crate::store::is_temp_pack`).

use std::io;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::bounded_git::{self, Waited};
use super::mirror::{GitError, Mirror};
use crate::store::is_temp_pack;

/// A mirror with more packs than this is repacked after a fetch: a handful
/// costs upload-pack little, and each repack rewrites the whole mirror.
pub const MAX_PACKS: usize = 8;

/// A repack running longer than this is killed; the mirror keeps its packs.
pub const REPACK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RepackError {
    #[error("cannot run git repack in {dir}: {source}")]
    Run {
        dir: String,
        #[source]
        source: io::Error,
    },
    #[error("git repack in {dir} failed ({status}): {stderr}")]
    Failed {
        dir: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("git repack in {dir} ran past {timeout:?} and was killed")]
    TimedOut { dir: String, timeout: Duration },
    #[error(transparent)]
    Lock(#[from] GitError),
}

/// Whether a mirror with `packs` packs is worth repacking.
pub fn needs_repack(packs: usize) -> bool {
    packs > MAX_PACKS
}

/// The packs of the bare repository at `dir` (`objects/pack/*.pack`),
/// leaving out git's temporary ones; 0 when there is no pack directory.
pub fn count_packs(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir.join("objects/pack")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut count = 0;
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".pack") && !is_temp_pack(&name) {
            count += 1;
        }
    }
    Ok(count)
}

/// Starts a background repack of `mirror` if it has more than
/// [`MAX_PACKS`] packs; returns at once. Called after a fetch, from the
/// async runtime: the lock wait and git run on the blocking pool, and the
/// outcome is only logged, since the mirror serves either way.
pub fn spawn_if_needed(mirror: &Mirror) {
    if !count_packs(&mirror.dir).is_ok_and(needs_repack) {
        return;
    }
    let mirror = mirror.clone();
    tokio::task::spawn_blocking(move || match repack_if_needed(&mirror, REPACK_TIMEOUT) {
        Ok(Some(elapsed)) => {
            tracing::info!("repacked the mirror of {} in {elapsed:?}", mirror.upstream)
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("{e}; the mirror of {} is served as it is", mirror.upstream),
    });
}

/// Under the mirror's lock, repacks it if it still has too many packs (a
/// repack that held the lock before may have done it). Blocks; returns how
/// long the repack took, or `None` when none was needed.
pub fn repack_if_needed(
    mirror: &Mirror,
    timeout: Duration,
) -> Result<Option<Duration>, RepackError> {
    mirror.with_lock(|| {
        let packs = count_packs(&mirror.dir).map_err(|source| run_error(&mirror.dir, source))?;
        if !needs_repack(packs) {
            return Ok(None);
        }
        tracing::info!(
            "repacking the mirror of {} ({packs} packs)",
            mirror.upstream
        );
        let started = Instant::now();
        repack(&mirror.dir, timeout)?;
        Ok(Some(started.elapsed()))
    })?
}

/// Runs `git repack` in the bare repository at `dir`, killed past
/// `timeout`. The caller holds the mirror's lock.
fn repack(dir: &Path, timeout: Duration) -> Result<(), RepackError> {
    let (status, stderr) =
        bounded_git::run_bounded(repack_command(dir), timeout).map_err(|e| match e {
            Waited::TimedOut => RepackError::TimedOut {
                dir: dir.display().to_string(),
                timeout,
            },
            Waited::Io(source) => run_error(dir, source),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(RepackError::Failed {
            dir: dir.display().to_string(),
            status,
            stderr: stderr.trim().to_owned(),
        })
    }
}

/// `git repack -a -d --keep-unreachable -l -q`: every object into one
/// pack (`-a`), the replaced packs deleted (`-d`), objects of alternates
/// left out (`-l`). Unreachable objects stay, in the pack
/// (`--keep-unreachable`): a branch the upstream force-pushed away may
/// still be what a run's snapshot names, or what an installed module's
/// `.git` borrows through alternates (see `snapshot`). Without the flag,
/// git 2.47 turns them into loose files, one per object, which pile up
/// since nothing prunes a mirror. `gc.auto=0` (set by
/// [`bounded_git::git_in`]) keeps git from starting a gc of its own
/// afterwards.
pub(super) fn repack_command(dir: &Path) -> Command {
    let mut command = bounded_git::git_in(dir);
    command
        .args(["repack", "-a", "-d", "--keep-unreachable"])
        .args(["-l", "-q"]);
    command
}

fn run_error(dir: &Path, source: io::Error) -> RepackError {
    RepackError::Run {
        dir: dir.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::super::mirror::tests::{git, mirror_of, Upstream};
    use super::*;

    #[test]
    fn repacks_only_past_a_handful_of_packs() {
        assert!(!needs_repack(0));
        assert!(!needs_repack(1));
        assert!(!needs_repack(MAX_PACKS));
        assert!(needs_repack(MAX_PACKS + 1));
        assert!(needs_repack(500));
    }

    /// One more commit upstream, fetched into the mirror: one more pack.
    fn fetch_one_commit(upstream: &Upstream, mirror: &Mirror, n: usize) {
        let message = format!("commit {n}");
        git(
            &upstream.dir,
            &["commit", "-q", "--allow-empty", "-m", &message],
        );
        mirror.update().unwrap();
    }

    #[test]
    fn many_fetches_then_one_pack_with_every_ref() {
        let upstream = Upstream::new();
        let (_cache, mirror) = mirror_of(&upstream);
        mirror.update().unwrap();
        for n in 0..MAX_PACKS {
            fetch_one_commit(&upstream, &mirror, n);
        }
        assert_eq!(count_packs(&mirror.dir).unwrap(), MAX_PACKS + 1);

        let took = repack_if_needed(&mirror, REPACK_TIMEOUT).unwrap();
        assert!(took.is_some(), "more than {MAX_PACKS} packs are repacked");
        assert_eq!(count_packs(&mirror.dir).unwrap(), 1);
        git(&mirror.dir, &["fsck", "--no-progress"]);
        assert_eq!(
            git(&mirror.dir, &["rev-parse", "refs/heads/main"]),
            upstream.rev("main").to_string()
        );
        // A second repack finds nothing to do.
        assert_eq!(repack_if_needed(&mirror, REPACK_TIMEOUT).unwrap(), None);
    }

    #[test]
    fn a_repack_past_its_deadline_is_killed_and_the_mirror_still_serves() {
        let upstream = Upstream::new();
        let (_cache, mirror) = mirror_of(&upstream);
        mirror.update().unwrap();
        for n in 0..MAX_PACKS {
            fetch_one_commit(&upstream, &mirror, n);
        }
        let error = repack_if_needed(&mirror, Duration::ZERO).unwrap_err();
        assert!(matches!(error, RepackError::TimedOut { .. }), "{error}");
        git(&mirror.dir, &["fsck", "--no-progress"]);
        assert!(count_packs(&mirror.dir).unwrap() >= 1);
    }
}
