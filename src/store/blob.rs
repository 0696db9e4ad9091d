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

use super::layout::{self, Kind, Leftover, TEMP_PREFIX};

/// Streams an artifact to disk while hashing it.
pub struct BlobWriter {
    file: tokio::fs::File,
    temp: TempPath,
    target: PathBuf,
    hash: RunningHash,
}

/// The sha256 and length of the bytes seen so far.
#[derive(Default)]
pub struct RunningHash {
    hasher: Sha256,
    len: u64,
}

impl RunningHash {
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
    }

    pub fn written(&self) -> Written {
        Written {
            sha256: hex::encode(self.hasher.clone().finalize()),
            size: self.len,
        }
    }
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
        Ok(BlobWriter::from_parts(file, temp, target))
    }

    fn from_parts(file: std::fs::File, temp: TempPath, target: &Path) -> BlobWriter {
        BlobWriter {
            file: tokio::fs::File::from_std(file),
            temp,
            target: target.to_owned(),
            hash: RunningHash::default(),
        }
    }

    /// The chunk is hashed even if writing it fails, so that a caller that
    /// [abandons](Self::abandon) the file still has the hash of every byte
    /// it was given.
    ///
    /// Writes are handed to a blocking thread, so an error (a full disk)
    /// may surface one call later, or only at [`commit`](Self::commit).
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hash.update(chunk);
        self.file.write_all(chunk).await
    }

    /// What has been written so far, for checks made before [`commit`](Self::commit).
    pub fn written(&self) -> Written {
        self.hash.written()
    }

    /// Removes the unfinished file at once (freeing its space, which
    /// matters when the disk is full) and keeps only the hash, so that a
    /// download relayed to a client can still be checked to its end.
    pub fn abandon(self) -> RunningHash {
        self.hash
    }

    /// A writer whose writes fail the way they do on a full disk (its data
    /// goes to `/dev/full`), with a real temporary file beside `target`.
    #[cfg(test)]
    pub fn on_full_disk(target: &Path) -> io::Result<BlobWriter> {
        let temp = BlobWriter::create(target)?.temp;
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
        Ok(BlobWriter::from_parts(full, temp, target))
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
    layout::walk(root, root, |entry| {
        let is_dir = entry.file_type.is_dir();
        if entry.kind != Kind::Leftover(Leftover::Temporary) {
            return Ok(is_dir);
        }
        if is_dir {
            // A directory being built or removed when the process died; it
            // may already be read-only.
            super::derived::remove_tree(&entry.path)?;
        } else {
            std::fs::remove_file(&entry.path)?;
        }
        removed += 1;
        Ok(false)
    })?;
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

    /// Writes until the full disk answers, which may be a call late.
    async fn write_until_full(writer: &mut BlobWriter) -> io::Error {
        for _ in 0..3 {
            if let Err(e) = writer.write(b"chunk").await {
                return e;
            }
        }
        writer
            .staged()
            .await
            .expect_err("a full disk fails the flush")
    }

    #[tokio::test]
    async fn a_full_disk_is_recognised_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file.zip");
        let mut writer = BlobWriter::on_full_disk(&target).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let error = write_until_full(&mut writer).await;
        assert!(crate::store::is_disk_full(&error), "{error:?}");
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut writer = BlobWriter::on_full_disk(&target).unwrap();
        let _ = writer.write(b"late").await;
        assert!(
            writer.commit().await.is_err(),
            "the error surfaces at commit"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_abandoned_file_is_removed_and_hashing_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = BlobWriter::on_full_disk(&dir.path().join("file.zip")).unwrap();
        let _ = writer.write(b"hello ").await;
        let mut hash = writer.abandon();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        hash.update(b"world");
        assert_eq!(
            hash.written().sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
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
