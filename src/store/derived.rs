//! Derived trees: directories made from a verified artifact (an unpacked
//! provider package), read-only once made, and always possible to make
//! again, so garbage collection removes them before anything else.
//!
//! A tree is built in a temporary directory (`.tmp-...`) beside its final
//! place, made read-only, then renamed into place: a reader finds the whole
//! tree or nothing. One left behind by a killed process is swept at the
//! next start with the other temporary files. Read-only directories cannot
//! have entries removed by their owner, so every removal here first makes
//! the directories writable again.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::layout::TEMP_PREFIX;

/// A tree being built. Dropped before [`StagedTree::commit`], it removes
/// what it holds.
#[derive(Debug)]
pub struct StagedTree {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl StagedTree {
    /// An empty temporary directory beside `target`, on the same file
    /// system so the final rename is atomic.
    pub fn create(target: &Path) -> io::Result<StagedTree> {
        let parent = target.parent().expect("tree paths have a parent");
        fs::create_dir_all(parent)?;
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(parent)?
            .keep();
        Ok(StagedTree {
            temp,
            target: target.to_owned(),
            committed: false,
        })
    }

    /// Where to build the tree's contents.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Makes every file read-only (keeping whether it is executable) and
    /// every directory read-only, makes the contents durable, and renames
    /// the tree into place. The target must not exist yet.
    pub fn commit(mut self) -> io::Result<()> {
        seal(&self.temp)?;
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        fs::File::open(self.target.parent().expect("tree paths have a parent"))?.sync_all()
    }
}

impl Drop for StagedTree {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = remove_tree(&self.temp) {
                tracing::warn!("cannot remove {}: {e}", self.temp.display());
            }
        }
    }
}

/// Files become 0444, or 0555 when the owner could execute them;
/// directories 0555. Each file is fsynced first: a crash must not leave a
/// renamed tree whose files were never written out.
fn seal(root: &Path) -> io::Result<()> {
    let mut dirs = vec![root.to_owned()];
    let mut sealed_dirs = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let file = fs::File::open(&path)?;
                file.sync_all()?;
                let executable = file.metadata()?.permissions().mode() & 0o100 != 0;
                let mode = if executable { 0o555 } else { 0o444 };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
            } else {
                return Err(io::Error::other(format!(
                    "{} is neither a file nor a directory",
                    path.display()
                )));
            }
        }
        sealed_dirs.push(dir);
    }
    // Children first, so a directory's entries are durable before it is
    // made read-only.
    for dir in sealed_dirs.iter().rev() {
        fs::File::open(dir)?.sync_all()?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555))?;
    }
    Ok(())
}

/// Removes a directory tree, read-only or not (the owner cannot remove the
/// entries of a read-only directory). Symbolic links are removed, never
/// followed.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    make_writable(root)?;
    fs::remove_dir_all(root)
}

/// Gives the owner write access to every directory below `root`.
fn make_writable(root: &Path) -> io::Result<()> {
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let mode = fs::symlink_metadata(&dir)?.permissions().mode();
        if mode & 0o700 != 0o700 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700))?;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_committed_tree_is_read_only_and_keeps_the_executable_bit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/linux_amd64");
        let staged = StagedTree::create(&target).unwrap();
        fs::create_dir(staged.path().join("docs")).unwrap();
        fs::write(staged.path().join("docs/README"), b"read me").unwrap();
        fs::write(staged.path().join("provider"), b"#!/bin/sh\n").unwrap();
        let exe = staged.path().join("provider");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!target.exists(), "nothing in place before the commit");
        staged.commit().unwrap();

        assert_eq!(mode(&target), 0o555);
        assert_eq!(mode(&target.join("docs")), 0o555);
        assert_eq!(mode(&target.join("docs/README")), 0o444);
        assert_eq!(mode(&target.join("provider")), 0o555);
        let left: Vec<_> = fs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary directory is left");
    }

    #[test]
    fn a_dropped_stage_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let staged = StagedTree::create(&dir.path().join("tree")).unwrap();
        fs::create_dir(staged.path().join("sub")).unwrap();
        fs::write(staged.path().join("sub/file"), b"x").unwrap();
        fs::set_permissions(staged.path().join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
        drop(staged);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Tests run as root here, whom a read-only directory does not stop:
    /// so the modes are checked before the removal, not only its success.
    #[test]
    fn removal_makes_read_only_directories_writable_first() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("tree");
        let staged = StagedTree::create(&target).unwrap();
        fs::create_dir(staged.path().join("sub")).unwrap();
        fs::write(staged.path().join("sub/file"), b"x").unwrap();
        staged.commit().unwrap();
        assert_eq!(mode(&target.join("sub")), 0o555);

        make_writable(&target).unwrap();
        assert_eq!(mode(&target), 0o755);
        assert_eq!(mode(&target.join("sub")), 0o755);
        assert_eq!(
            mode(&target.join("sub/file")),
            0o444,
            "files are left alone"
        );
        fs::set_permissions(&target, fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&target).unwrap();
        assert!(!target.exists());
    }
}
