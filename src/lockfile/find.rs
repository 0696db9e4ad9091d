//! The lock files under some directories: one per Terraform root module, so
//! a repository with many roots is locked in one run.

use std::fs;
use std::path::{Path, PathBuf};

use super::{LockFileError, LOCK_FILE_NAME};

/// Every `.terraform.lock.hcl` under `dirs`, sorted, each once.
///
/// A path in `dirs` that is a file is taken as a lock file itself; the
/// directories are searched as [`walk_files`] does.
pub fn find_lock_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, LockFileError> {
    let mut found = Vec::new();
    for dir in dirs {
        if dir.is_file() {
            found.push(dir.clone());
        } else {
            walk_files(dir, &mut |path| {
                if path.file_name().is_some_and(|name| name == LOCK_FILE_NAME) {
                    found.push(path.to_owned());
                }
            })?;
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Calls `visit` with every regular file under `dir` that belongs to a
/// Terraform configuration.
///
/// `.terraform` (where `init` keeps module copies, each possibly with its
/// own lock file that Terraform never reads) and `.git` are not searched,
/// nor are symlinked directories, which could loop.
pub fn walk_files(dir: &Path, visit: &mut dyn FnMut(&Path)) -> Result<(), LockFileError> {
    let read_error = |source| LockFileError::Read {
        path: dir.to_owned(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let file_type = entry.file_type().map_err(read_error)?;
        let name = entry.file_name();
        let path = entry.path();
        if file_type.is_dir() {
            if name != ".terraform" && name != ".git" {
                walk_files(&path, visit)?;
            }
        } else if path.is_file() {
            visit(&path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_root_modules_lock_files_only() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        for dir in ["b", "a/nested", "a/.terraform/modules/m", ".git/x", "empty"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "b/.terraform.lock.hcl",
            "a/.terraform.lock.hcl",
            "a/nested/.terraform.lock.hcl",
            "a/.terraform/modules/m/.terraform.lock.hcl",
            ".git/x/.terraform.lock.hcl",
            "a/terraform.lock.hcl",
        ] {
            fs::write(root.join(file), "").unwrap();
        }
        let found = find_lock_files(&[root.join("b"), root.to_owned()]).unwrap();
        let relative: Vec<_> = found
            .iter()
            .map(|path| path.strip_prefix(root).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            relative,
            [
                "a/.terraform.lock.hcl",
                "a/nested/.terraform.lock.hcl",
                "b/.terraform.lock.hcl"
            ]
        );

        let missing = root.join("missing");
        let err = find_lock_files(std::slice::from_ref(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("cannot read {}", missing.display())));
    }
}
