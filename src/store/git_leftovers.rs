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
//! Inside a mirror, a `git repack` killed with the process leaves its
//! temporary packs in `objects/pack` (see [`is_temp_pack`]). git never
//! reads them, so the mirror serves as before; the next start removes them.
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

/// Whether `name`, a file in a mirror's `objects/pack`, is a temporary file
/// of git's: `.tmp-<pid>-pack-*` of `git repack`, `tmp_pack_*` and
/// `tmp_idx_*` of `pack-objects` and `index-pack`. Never a pack git reads.
pub fn is_temp_pack(name: &str) -> bool {
    ["tmp_pack_", "tmp_idx_", ".tmp-"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

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

/// Removes every staging directory and lock file below `<root>/git`, and
/// the temporary packs inside the mirrors. Only for the cache's owner at
/// start: a lock file removed while a fetch holds it would let a second
/// fetch of the same mirror run at once, and a temporary pack removed under
/// a running repack would fail it. Returns how many were removed.
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
            } else if is_dir && super::inventory::is_git_mirror(&key) {
                removed += remove_temp_packs(&path)?;
            } else if is_dir {
                dirs.push(path);
            }
        }
    }
    Ok(removed)
}

/// Removes git's temporary files from the mirror's `objects/pack`.
fn remove_temp_packs(mirror: &Path) -> io::Result<usize> {
    let packs = mirror.join("objects/pack");
    if !packs.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(&packs)? {
        let entry = entry?;
        if is_temp_pack(&entry.file_name().to_string_lossy()) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
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
        // A killed repack's temporary pack goes, the mirror's packs stay.
        let packs = mirror.join("objects/pack");
        std::fs::create_dir_all(&packs).unwrap();
        std::fs::write(packs.join(".tmp-123-pack-ab.pack"), b"half").unwrap();
        std::fs::write(packs.join("tmp_pack_Xy12"), b"half").unwrap();
        std::fs::write(packs.join("pack-ab.pack"), b"pack").unwrap();
        std::fs::write(packs.join("pack-ab.idx"), b"idx").unwrap();
        std::fs::write(org.join("infra.git.lock"), b"").unwrap();
        let staging = org.join(".other.git.x1y2.tmp");
        std::fs::create_dir_all(staging.join("objects")).unwrap();
        std::fs::write(staging.join("objects/pack"), b"half").unwrap();

        assert_eq!(remove(root).unwrap(), 4);
        let mut left: Vec<_> = std::fs::read_dir(&org)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["infra.git"]);
        assert!(mirror.join("refs/main.lock").exists());
        let mut packs_left: Vec<_> = std::fs::read_dir(&packs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        packs_left.sort();
        assert_eq!(packs_left, ["pack-ab.idx", "pack-ab.pack"]);
        assert_eq!(remove(root).unwrap(), 0);
    }

    #[test]
    fn a_cache_without_mirrors_has_nothing_to_sweep() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(remove(dir.path()).unwrap(), 0);
    }
}
