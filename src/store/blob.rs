//! Atomic artifact files.
//!
//! An artifact is written to a temporary file in its final directory,
//! fsynced, then renamed into place, so a reader either finds the whole
//! verified file or nothing. A writer dropped before [`BlobWriter::commit`]
//! (a failed check, a client error, a panic) removes its temporary file; one
//! left behind by a killed process is removed by [`remove_temp_files`].

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

/// Prefix of temporary files; nothing else in the cache starts with it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Streams an artifact to disk while hashing it.
pub struct BlobWriter {
    file: tokio::fs::File,
    temp: TempPath,
    target: PathBuf,
    hasher: Sha256,
    len: u64,
}

/// What was written: the sha256 (lowercase hex) and the size in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub sha256: String,
    pub size: u64,
}

impl BlobWriter {
    pub fn create(target: &Path) -> io::Result<BlobWriter> {
        let dir = target.parent().expect("artifact paths have a parent");
        std::fs::create_dir_all(dir)?;
        let (file, temp) = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)?
            .into_parts();
        Ok(BlobWriter {
            file: tokio::fs::File::from_std(file),
            temp,
            target: target.to_owned(),
            hasher: Sha256::new(),
            len: 0,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    /// What has been written so far, for checks made before [`commit`](Self::commit).
    pub fn written(&self) -> Written {
        Written {
            sha256: hex::encode(self.hasher.clone().finalize()),
            size: self.len,
        }
    }

    /// Flushes what was written so the unfinished file can be checked
    /// (e.g. unpacked) before it is committed; returns its temporary path.
    pub async fn staged(&mut self) -> io::Result<&Path> {
        self.file.flush().await?;
        Ok(&self.temp)
    }

    /// Makes the file durable and visible under its final name.
    pub async fn commit(mut self) -> io::Result<Written> {
        let written = self.written();
        self.file.flush().await?;
        self.file.sync_all().await?;
        drop(self.file);
        let target = self.target.clone();
        let temp = self.temp;
        tokio::task::spawn_blocking(move || {
            temp.persist(&target).map_err(|e| e.error)?;
            sync_dir(target.parent().expect("artifact paths have a parent"))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(written)
    }
}

/// Writes a small artifact in one go, with the same guarantees.
pub async fn write_atomic(target: &Path, bytes: &[u8]) -> io::Result<Written> {
    let mut writer = BlobWriter::create(target)?;
    writer.write(bytes).await?;
    writer.commit().await
}

/// The rename is only durable once the directory entry is.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Removes temporary files a killed process left behind. Called while the
/// caller owns the cache, so no live writer can be among them.
pub fn remove_temp_files(root: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commit_makes_the_file_visible_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b/file.zip");
        let mut writer = BlobWriter::create(&target).unwrap();
        writer.write(b"hello ").await.unwrap();
        assert!(!target.exists(), "nothing visible before commit");
        writer.write(b"world").await.unwrap();
        let written = writer.commit().await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
        assert_eq!(written.size, 11);
        assert_eq!(
            written.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[tokio::test]
    async fn a_dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file.zip");
        let mut writer = BlobWriter::create(&target).unwrap();
        writer.write(b"half").await.unwrap();
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn leftover_temp_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("x")).unwrap();
        std::fs::write(dir.path().join("x/.tmp-abc"), b"partial").unwrap();
        std::fs::write(dir.path().join("x/keep.zip"), b"whole").unwrap();
        assert_eq!(remove_temp_files(dir.path()).unwrap(), 1);
        assert!(dir.path().join("x/keep.zip").exists());
    }
}
