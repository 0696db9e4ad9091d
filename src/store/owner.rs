//! One owning process per cache directory.
//!
//! sled locks its own directory, but only once it has started reading it; a
//! lock file taken first lets a second tfmirror tell "another process owns
//! this cache" apart from "the index is damaged", which call for opposite
//! actions (use the owner's server / rebuild the index).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::layout::OWNER_LOCK as LOCK_FILE;

#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnerLockError {
    #[error("another tfmirror process owns the cache at {0}")]
    Busy(PathBuf),
    #[error("cannot lock the cache at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl OwnerLock {
    /// Takes the lock without waiting; it is released when the value is
    /// dropped or the process dies, so a crash never leaves a stale lock.
    pub fn acquire(root: &Path) -> Result<OwnerLock, OwnerLockError> {
        let path = root.join(LOCK_FILE);
        let io_err = |source| OwnerLockError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => Ok(OwnerLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(OwnerLockError::Busy(root.to_owned())),
            Err(TryLockError::Error(e)) => Err(io_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_until_the_first_goes() {
        let dir = tempfile::tempdir().unwrap();
        let first = OwnerLock::acquire(dir.path()).unwrap();
        assert!(matches!(
            OwnerLock::acquire(dir.path()),
            Err(OwnerLockError::Busy(_))
        ));
        drop(first);
        OwnerLock::acquire(dir.path()).unwrap();
    }
}
