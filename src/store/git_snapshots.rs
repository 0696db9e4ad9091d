//! Where the per-run snapshots of git mirrors live (see
//! `crate::git::snapshot`): `git-snapshots/<run>/<mirror path>.git`.
//!
//! A snapshot is not an artifact: it is a copy of a mirror's refs that
//! borrows the mirror's objects, needed only while its run's `exec` clones
//! from it.
//! The run's end removes it; a run whose `exec` was killed leaves it until
//! a later run sweeps it (see [`sweep_older_than`]) or the next start
//! removes them all. The inventory never lists them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::derived::remove_tree;
use super::layout::Bucket;
use super::Segment;

/// The directory of one run's snapshots.
pub(super) fn of_run(root: &Path, run: &Segment) -> PathBuf {
    Bucket::GitSnapshots.path(root).join(run.as_str())
}

/// Removes one run's snapshots; nothing to do when it has none.
pub(super) fn remove_run(root: &Path, run: &Segment) -> io::Result<()> {
    remove_if_present(&of_run(root, run))
}

/// Removes every run's snapshots. Only at start, when no run is under way.
pub(super) fn remove_all(root: &Path) -> io::Result<bool> {
    let dir = Bucket::GitSnapshots.path(root);
    let present = dir.exists();
    remove_if_present(&dir)?;
    Ok(present)
}

/// Removes the snapshots of runs begun longer than `age` ago: their
/// `exec` ended without saying so.
pub(super) fn sweep_older_than(root: &Path, age: Duration) -> io::Result<usize> {
    let entries = match std::fs::read_dir(Bucket::GitSnapshots.path(root)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let begun = entry.metadata()?.modified()?;
        if now.duration_since(begun).is_ok_and(|elapsed| elapsed > age) {
            remove_if_present(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn remove_if_present(dir: &Path) -> io::Result<()> {
    match remove_tree(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_removed_one_by_one_by_age_or_all_at_once() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (
            Segment::new("run-a").unwrap(),
            Segment::new("run-b").unwrap(),
        );
        for run in [&a, &b] {
            std::fs::create_dir_all(of_run(root.path(), run).join("git/h/r.git")).unwrap();
        }
        remove_run(root.path(), &a).unwrap();
        remove_run(root.path(), &a).unwrap();
        assert!(!of_run(root.path(), &a).exists());
        assert_eq!(
            sweep_older_than(root.path(), Duration::from_secs(3600)).unwrap(),
            0
        );
        assert!(of_run(root.path(), &b).exists());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            sweep_older_than(root.path(), Duration::from_millis(10)).unwrap(),
            1
        );
        assert!(!of_run(root.path(), &b).exists());
        assert!(remove_all(root.path()).unwrap());
        assert!(!remove_all(root.path()).unwrap());
        assert_eq!(sweep_older_than(root.path(), Duration::ZERO).unwrap(), 0);
    }
}
