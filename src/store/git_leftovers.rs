//! What mirror fetches leave beside the mirrors under `git/`.
//!
//! A new mirror is cloned into a hidden staging directory beside its final
//! place (`.tmp-<repo>.git.<random>.tmp`, a temporary name like any other,
//! swept with the others by `blob::remove_temp_files`; earlier versions
//! named it `.<repo>.git.<random>.tmp`, which this module sweeps) and
//! renamed into place when complete; each fetch holds a lock file beside
//! the mirror (`<repo>.git.lock`). A fetch killed with the process leaves
//! both behind. Neither is an artifact: the inventory never lists them, and
//! the next start, when the owner lock guarantees no fetch of another
//! process is running and none of this one has begun, removes them.
//!
//! Inside a mirror, a `git repack` killed with the process leaves its
//! temporary packs in `objects/pack` (see [`is_temp_pack`]). git never
//! reads them, so the mirror serves as before; the next start removes them.
//!
//! The names are defined in `layout` and used by the git mirrors, so the
//! two sides cannot drift apart.

use std::io;
use std::path::Path;

use super::derived::remove_tree;
use super::layout::{self, is_temp_pack, Bucket, Kind, Leftover};

/// Removes every staging directory and lock file below `<root>/git`, and
/// the temporary packs inside the mirrors. Only for the cache's owner at
/// start: a lock file removed while a fetch holds it would let a second
/// fetch of the same mirror run at once, and a temporary pack removed under
/// a running repack would fail it. Returns how many were removed.
pub(super) fn remove(root: &Path) -> io::Result<usize> {
    let top = Bucket::GitMirrors.path(root);
    if !top.is_dir() {
        return Ok(0);
    }
    let mut removed = 0;
    layout::walk(root, &top, |entry| {
        match entry.kind {
            Kind::Leftover(Leftover::MirrorStaging | Leftover::MirrorLock) => {
                if entry.file_type.is_dir() {
                    remove_tree(&entry.path)?;
                } else {
                    std::fs::remove_file(&entry.path)?;
                }
                removed += 1;
            }
            Kind::Whole { .. } => removed += remove_temp_packs(&entry.path)?,
            Kind::Directory => return Ok(true),
            _ => {}
        }
        Ok(false)
    })?;
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
