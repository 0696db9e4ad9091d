//! A mirror's refs as they are at one moment, for git to clone by path
//! while the mirror itself goes on being fetched and repacked.
//!
//! A snapshot is a second bare repository with copies of the mirror's refs
//! (`HEAD`, `packed-refs`, `refs/`), taken under the mirror's lock so that
//! no fetch or repack runs meanwhile, and no objects of its own: it borrows
//! the mirror's through git's alternates (`objects/info/alternates`).
//!
//! Why alternates rather than hardlinked packs: `git clone <path>` of a
//! repository with alternates copies the alternates file and no object at
//! all, so the clone's `.git` is a few hundred kilobytes instead of the
//! whole history. Terraform copies each call's package, `.git` included,
//! into the call's own directory; with a 50 MB mono-repo and 20 calls that
//! copying was a gigabyte per init. And a clone that hardlinks listed
//! object files one by one fails when a repack deletes one in between,
//! while git's object lookup through alternates rescans the packs and
//! reads a concurrent repack's new pack. The mirror keeps what it once had
//! (`repack` keeps unreachable objects), so a snapshot's refs always name
//! objects the mirror holds.
//!
//! The clone's `.git` goes on pointing at the mirror: its files are what
//! Terraform uses, and they are complete; only git commands run inside the
//! installed module's directory need the mirror, until gc removes it.

use std::fs;
use std::io;
use std::path::Path;

use super::mirror::{GitError, Mirror};

/// Makes `target` (which must not exist; its parent must) a snapshot of
/// `mirror`. Blocks: waits for the mirror's lock, then copies its refs.
pub fn take(mirror: &Mirror, target: &Path) -> Result<(), GitError> {
    let copied = mirror.with_lock(|| copy_refs(&mirror.dir, target))?;
    copied.map_err(GitError::io(format!(
        "cannot snapshot the mirror at {} into {}",
        mirror.dir.display(),
        target.display()
    )))
}

/// Recreates `source` under `target` without its objects: every file
/// outside `objects/` (`HEAD`, `config`, `packed-refs`, `refs/`) is copied,
/// lock files left out, and `objects/info/alternates` names `source`'s
/// object directory by its absolute path.
fn copy_refs(source: &Path, target: &Path) -> io::Result<()> {
    let objects = source.canonicalize()?.join("objects");
    fs::create_dir(target)?;
    let mut dirs = vec![(source.to_owned(), target.to_owned())];
    while let Some((from, to)) = dirs.pop() {
        for entry in fs::read_dir(&from)? {
            let entry = entry?;
            let name = entry.file_name();
            let (from_path, to_path) = (entry.path(), to.join(&name));
            let file_type = entry.file_type()?;
            if from == source && name == "objects" {
                continue;
            } else if file_type.is_dir() {
                fs::create_dir(&to_path)?;
                dirs.push((from_path, to_path));
            } else if file_type.is_file() && !name.to_string_lossy().ends_with(".lock") {
                fs::copy(&from_path, &to_path)?;
            }
        }
    }
    let info = target.join("objects/info");
    fs::create_dir_all(&info)?;
    fs::create_dir_all(target.join("objects/pack"))?;
    let mut line = objects.into_os_string();
    line.push("\n");
    fs::write(info.join("alternates"), line.as_encoded_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
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
        git(work, &["push", "-q", "-f", "origin", "HEAD:main"]);
    }

    fn path(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    #[test]
    fn refs_are_copied_and_objects_borrowed() {
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
            ("objects/ab/cdef", "loose"),
        ] {
            fs::write(mirror.join(file), body).unwrap();
        }
        let target = root.path().join("snap.git");
        copy_refs(&mirror, &target).unwrap();

        for copied in ["HEAD", "packed-refs", "refs/heads/main"] {
            assert_eq!(
                fs::read(mirror.join(copied)).unwrap(),
                fs::read(target.join(copied)).unwrap()
            );
        }
        assert!(!target.join("refs/heads/main.lock").exists());
        assert!(target.join("refs/tags").is_dir());
        assert!(!target.join("objects/pack/pack-1.pack").exists());
        assert!(!target.join("objects/ab").exists());
        let alternates = fs::read_to_string(target.join("objects/info/alternates")).unwrap();
        let expected = mirror.canonicalize().unwrap().join("objects");
        assert_eq!(alternates, format!("{}\n", expected.display()));
        assert!(
            copy_refs(&mirror, &target).is_err(),
            "never into an existing directory"
        );
    }

    /// A clone of a snapshot by path holds no object of its own, and
    /// stays whole after the mirror is force-pushed into, repacked the way
    /// `repack` does it, and the snapshot removed.
    #[test]
    fn a_clone_by_path_outlives_a_repack_of_the_mirror() {
        let root = tempfile::tempdir().unwrap();
        let (work, mirror) = (root.path().join("work"), root.path().join("mirror.git"));
        git(root.path(), &["init", "-q", "--bare", path(&mirror)]);
        git(root.path(), &["init", "-q", path(&work)]);
        git(&work, &["remote", "add", "origin", path(&mirror)]);
        for n in 0..3 {
            commit(&work, &format!("c{n}"));
            git(&mirror, &["repack", "-q"]);
        }
        let tip = git(&mirror, &["rev-parse", "main"]);

        let snapshot = root.path().join("snapshot.git");
        take(&Mirror::new(mirror.clone(), "unused".into()), &snapshot).unwrap();
        let clone = root.path().join("clone");
        git(root.path(), &["clone", "-q", path(&snapshot), path(&clone)]);
        let own = git(&clone, &["count-objects", "-v"]);
        assert!(
            own.contains("count: 0") && own.contains("packs: 0"),
            "{own}"
        );

        // The upstream rewrites history: c2 is no longer on any branch.
        git(&work, &["reset", "-q", "--hard", "HEAD~1"]);
        commit(&work, "c2-rewritten");
        fs::remove_dir_all(&snapshot).unwrap();
        let repacked = super::super::repack::repack_command(&mirror).status();
        assert!(repacked.unwrap().success());
        let kept = git(&mirror, &["count-objects", "-v"]);
        assert!(
            kept.contains("count: 0"),
            "the unreachable commit stays packed, not loose: {kept}"
        );

        git(&clone, &["fsck", "--full", "--no-progress"]);
        assert_eq!(git(&clone, &["rev-parse", "HEAD"]), tip);
        assert_eq!(fs::read_to_string(clone.join("main.tf")).unwrap(), "# c2\n");
    }
}
