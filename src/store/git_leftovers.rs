//! What mirror fetches leave beside the mirrors under `git/`.
//!
//! A new mirror is cloned into a hidden staging directory beside its final
//! place (`.<repo>.git.<random>.tmp`) and renamed into place when complete;
//! each fetch holds a lock file beside the mirror (`<repo>.git.lock`). A
//! fetch killed with the process leaves both behind. Neither is an
//! artifact: the inventory never lists them, and the next start, when the
//! owner lock guarantees no fetch of another process is running and none of
//! this one has begun, removes them.
//!
//! The names are defined here and used by the git mirrors, so the two sides
//! cannot drift apart.

use std::io;
use std::path::Path;

use super::derived::remove_tree;
use super::GIT_MIRRORS_DIR;

/// Ends the name of a mirror's staging directory, which also starts with a
/// dot and holds the mirror's own name (`.<repo>.git.<random>.tmp`).
pub const MIRROR_STAGING_SUFFIX: &str = ".tmp";

/// Appended to a mirror's directory name for the lock file of its fetches.
pub const MIRROR_LOCK_SUFFIX: &str = ".lock";

/// Whether `key` (a path below the cache root) names a staging directory or
/// a lock file of a mirror, rather than part of a mirror or a directory on
/// the way to one.
pub(super) fn is_leftover(key: &str, is_dir: bool) -> bool {
    let Some(below) = key.strip_prefix(GIT_MIRRORS_DIR) else {
        return false;
    };
    if !below.starts_with('/') {
        return false;
    }
    let name = key.rsplit('/').next().unwrap_or_default();
    if is_dir {
        name.starts_with('.') && name.contains(".git.") && name.ends_with(MIRROR_STAGING_SUFFIX)
    } else {
        name.strip_suffix(MIRROR_LOCK_SUFFIX)
            .is_some_and(|mirror| mirror.ends_with(".git"))
    }
}

/// Removes every staging directory and lock file below `<root>/git`, without
/// looking inside the mirrors themselves. Only for the cache's owner at
/// start: a lock file removed while a fetch holds it would let a second
/// fetch of the same mirror run at once. Returns how many were removed.
pub(super) fn remove(root: &Path) -> io::Result<usize> {
    let top = root.join(GIT_MIRRORS_DIR);
    if !top.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    let mut dirs = vec![top];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let is_dir = entry.file_type()?.is_dir();
            let key = super::inventory::key_of(root, &path);
            if is_leftover(&key, is_dir) {
                if is_dir {
                    remove_tree(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
                removed += 1;
            } else if is_dir && !super::inventory::is_git_mirror(&key) {
                dirs.push(path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_staging_directories_and_lock_files_only() {
        assert!(is_leftover("git/h/org/.infra.git.Ab12.tmp", true));
        assert!(is_leftover("git/h/org/infra.git.lock", false));
        assert!(!is_leftover("git/h/org/infra.git", true), "a mirror");
        assert!(!is_leftover("git/h/org/infra.git.lock", true));
        assert!(!is_leftover("git/h/.cache.tmp", true), "a path segment");
        assert!(!is_leftover("git/h/org/.infra.git.Ab12.tmp", false));
        assert!(!is_leftover("git-archives/h/.infra.git.Ab12.tmp", true));
        assert!(!is_leftover("providers/h/infra.git.lock", false));
    }

    #[test]
    fn sweeps_leftovers_and_keeps_mirrors_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let org = root.join("git/h/org");
        let mirror = org.join("infra.git");
        std::fs::create_dir_all(mirror.join("refs")).unwrap();
        std::fs::write(mirror.join("HEAD"), b"ref").unwrap();
        // git's own lock inside a mirror is not this module's business.
        std::fs::write(mirror.join("refs/main.lock"), b"").unwrap();
        std::fs::write(org.join("infra.git.lock"), b"").unwrap();
        let staging = org.join(".other.git.x1y2.tmp");
        std::fs::create_dir_all(staging.join("objects")).unwrap();
        std::fs::write(staging.join("objects/pack"), b"half").unwrap();

        assert_eq!(remove(root).unwrap(), 2);
        let mut left: Vec<_> = std::fs::read_dir(&org)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["infra.git"]);
        assert!(mirror.join("refs/main.lock").exists());
        assert_eq!(remove(root).unwrap(), 0);
    }

    #[test]
    fn a_cache_without_mirrors_has_nothing_to_sweep() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remove(dir.path()).unwrap(), 0);
    }
}
