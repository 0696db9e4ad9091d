//! A mirror as it is at one moment, for git to clone by path while the
//! mirror itself goes on being fetched and repacked.
//!
//! `git clone <path>` reads the source's refs, then lists its object
//! files and hardlinks them one by one; a repack that deletes a pack
//! between the listing and the link fails the clone. A snapshot is a
//! second bare repository whose object files are hardlinks to the
//! mirror's (no bytes copied) and whose refs are copies, taken under the
//! mirror's lock so that no fetch or repack runs meanwhile: what the
//! mirror does afterwards cannot touch it, and a clone of it hardlinks the
//! same files again, so the clone keeps its objects after the mirror's
//! repack deletes them there.

use std::fs;
use std::io;
use std::path::Path;

use super::mirror::{GitError, Mirror};
use crate::store::is_temp_pack;

/// Makes `target` (which must not exist; its parent must) a snapshot of
/// `mirror`. Blocks: waits for the mirror's lock, then links and copies.
pub fn take(mirror: &Mirror, target: &Path) -> Result<(), GitError> {
    let copied = mirror.with_lock(|| copy_repository(&mirror.dir, target))?;
    copied.map_err(GitError::io(format!(
        "cannot snapshot the mirror at {} into {}",
        mirror.dir.display(),
        target.display()
    )))
}

/// Recreates `source`'s directories under `target`: files below `objects/`
/// are hardlinked (git never changes an object file once written), every
/// other file (refs, `HEAD`, `config`, `packed-refs`) is copied. Lock files
/// and git's temporary packs are left out.
fn copy_repository(source: &Path, target: &Path) -> io::Result<()> {
    fs::create_dir(target)?;
    let mut dirs = vec![(source.to_owned(), target.to_owned(), false)];
    while let Some((from, to, in_objects)) = dirs.pop() {
        for entry in fs::read_dir(&from)? {
            let entry = entry?;
            let name = entry.file_name();
            let text = name.to_string_lossy();
            let (from_path, to_path) = (entry.path(), to.join(&name));
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                fs::create_dir(&to_path)?;
                let objects = in_objects || (from == source && text == "objects");
                dirs.push((from_path, to_path, objects));
            } else if !file_type.is_file() || text.ends_with(".lock") || is_temp_pack(&text) {
                continue;
            } else if in_objects {
                fs::hard_link(&from_path, &to_path)?;
            } else {
                fs::copy(&from_path, &to_path)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    /// `git` with no user or system configuration, in `dir`.
    fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("run git");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn commit(work: &Path, label: &str) {
        fs::write(work.join("main.tf"), format!("# {label}\n")).unwrap();
        git(work, &["add", "-A"]);
        git(work, &["commit", "-q", "-m", label]);
        git(work, &["push", "-q", "origin", "main"]);
    }

    fn packs(repo: &Path) -> Vec<u64> {
        fs::read_dir(repo.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pack"))
            .map(|p| fs::metadata(p).unwrap().ino())
            .collect()
    }

    /// A clone of a snapshot by path shares the mirror's pack files, and
    /// keeps every object after the mirror is fetched into, repacked and
    /// pruned, and the snapshot removed.
    #[test]
    fn a_clone_by_path_outlives_a_repack_of_the_mirror() {
        let root = tempfile::tempdir().unwrap();
        let (work, mirror) = (root.path().join("work"), root.path().join("mirror.git"));
        git(
            root.path(),
            &["init", "-q", "--bare", mirror.to_str().unwrap()],
        );
        git(root.path(), &["init", "-q", work.to_str().unwrap()]);
        git(
            &work,
            &["remote", "add", "origin", mirror.to_str().unwrap()],
        );
        for n in 0..3 {
            commit(&work, &format!("c{n}"));
            git(&mirror, &["repack", "-q"]);
        }
        let tip = git(&mirror, &["rev-parse", "main"]);

        let snapshot = root.path().join("snapshot.git");
        take(&Mirror::new(mirror.clone(), "unused".into()), &snapshot).unwrap();
        let clone = root.path().join("clone");
        git(
            root.path(),
            &[
                "clone",
                "-q",
                snapshot.to_str().unwrap(),
                clone.to_str().unwrap(),
            ],
        );
        let shared = packs(&mirror);
        assert!(
            packs(&clone.join(".git"))
                .iter()
                .all(|ino| shared.contains(ino)),
            "the clone hardlinks the mirror's packs"
        );

        commit(&work, "c3");
        git(&mirror, &["repack", "-q", "-a", "-d"]);
        git(&mirror, &["prune-packed"]);
        assert!(packs(&mirror).iter().all(|ino| !shared.contains(ino)));
        fs::remove_dir_all(&snapshot).unwrap();

        git(&clone, &["fsck", "--full", "--no-progress"]);
        assert_eq!(git(&clone, &["rev-parse", "HEAD"]), tip);
        assert_eq!(fs::read_to_string(clone.join("main.tf")).unwrap(), "# c2\n");
    }

    #[test]
    fn objects_are_linked_and_the_rest_copied() {
        let root = tempfile::tempdir().unwrap();
        let mirror = root.path().join("repo.git");
        for dir in ["objects/pack", "objects/ab", "refs/heads", "refs/tags"] {
            fs::create_dir_all(mirror.join(dir)).unwrap();
        }
        for (file, body) in [
            ("HEAD", "ref: refs/heads/main\n"),
            ("packed-refs", "# pack-refs\n"),
            ("refs/heads/main", "0123\n"),
            ("refs/heads/main.lock", "half\n"),
            ("objects/pack/pack-1.pack", "PACK"),
            ("objects/pack/pack-1.idx", "IDX"),
            ("objects/pack/tmp_pack_x", "half"),
            ("objects/pack/.tmp-1-pack-y.pack", "half"),
            ("objects/ab/cdef", "loose"),
        ] {
            fs::write(mirror.join(file), body).unwrap();
        }
        let target = root.path().join("snap.git");
        copy_repository(&mirror, &target).unwrap();

        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        for linked in [
            "objects/pack/pack-1.pack",
            "objects/pack/pack-1.idx",
            "objects/ab/cdef",
        ] {
            assert_eq!(ino(&mirror.join(linked)), ino(&target.join(linked)));
        }
        for copied in ["HEAD", "packed-refs", "refs/heads/main"] {
            assert_ne!(ino(&mirror.join(copied)), ino(&target.join(copied)));
            assert_eq!(
                fs::read(mirror.join(copied)).unwrap(),
                fs::read(target.join(copied)).unwrap()
            );
        }
        for left_out in [
            "refs/heads/main.lock",
            "objects/pack/tmp_pack_x",
            "objects/pack/.tmp-1-pack-y.pack",
        ] {
            assert!(!target.join(left_out).exists(), "{left_out}");
        }
        assert!(target.join("refs/tags").is_dir());
        assert!(
            copy_repository(&mirror, &target).is_err(),
            "never into an existing directory"
        );
    }
}
