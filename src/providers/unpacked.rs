//! The unpacked provider tree: each verified zip unpacked once into
//! `<cache>/providers-unpacked/<host>/<namespace>/<type>/<version>/<os>_<arch>/`,
//! Terraform's unpacked `filesystem_mirror` layout. Terraform installs
//! from it by hashing the directory against the lock file's `h1:` and
//! symlinking it into `.terraform/providers`: no unpacking per working
//! directory.
//!
//! An entry is a derived artifact (see `store::derived`): made in a
//! temporary directory from a verified zip, checked to hash to the zip's
//! `h1:` (what Terraform will check it against), sealed read-only, renamed
//! into place, and recorded in the index with the sha256 of the zip it
//! came from. Concurrent requests for one entry unpack it once. gc may
//! remove it at any time outside `gc_min_age`; the next request makes it
//! again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::hashes::{self, HashError};
use super::route::Package;
use super::unzip::{unzip, Limits, UnzipError, Unzipped};
use super::Providers;
use crate::store::{Document, RelPath, Segment, StagedTree, UNPACKED_PROVIDERS_DIR};

/// Index key prefix of an entry's record, followed by the entry's key.
/// Kept by `cache prune`.
pub(super) const TREE_RECORD_PREFIX: &str = "providers/tree-h1/";

/// `providers-unpacked/<host>/<namespace>/<type>/<version>/<os>_<arch>`.
pub(super) fn tree_path(package: &Package) -> RelPath {
    let addr = &package.addr;
    let platform = format!("{}_{}", package.os, package.arch);
    RelPath::new([
        RelPath::fixed(UNPACKED_PROVIDERS_DIR),
        addr.host.clone(),
        addr.namespace.clone(),
        addr.kind.clone(),
        package.version.clone(),
        Segment::new(&platform).expect("built from valid segments"),
    ])
}

/// Why an entry could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("cannot unpack the cached zip: {0}")]
    Unzip(#[from] UnzipError),
    #[error("cannot hash the package: {0}")]
    Hash(#[from] HashError),
    #[error("the unpacked package hashes to {tree}, but its zip to {zip}; nothing was kept")]
    Mismatch { tree: String, zip: String },
    #[error("cannot put the unpacked package in place: {0}")]
    Store(#[from] std::io::Error),
}

/// An entry that was just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// What Terraform computes of the directory: the zip's `h1:`.
    pub h1: String,
    pub unzipped: Unzipped,
}

/// Unpacks the zip at `zip` into a new entry at `target`, which must not
/// exist. `zip_h1` is the zip's (unpacked-form) `h1:` if already known;
/// otherwise it is computed from the zip while the zip is being unpacked.
/// Blocking: unpacking and hashing a provider takes seconds.
pub fn make_entry(
    zip: &Path,
    target: &Path,
    zip_h1: Option<&str>,
    limits: Limits,
) -> Result<Made, EntryError> {
    let staged = StagedTree::create(target)?;
    let (unzipped, zip_h1) = std::thread::scope(|scope| {
        let hashing = zip_h1
            .is_none()
            .then(|| scope.spawn(|| hashes::zip_h1(zip).map(|h1| h1.unpacked)));
        let unzipped = unzip(zip, staged.path(), limits);
        let zip_h1 = match hashing {
            Some(hashing) => hashing.join().expect("hashing does not panic"),
            None => Ok(zip_h1.expect("known when not hashed").to_owned()),
        };
        (unzipped, zip_h1)
    });
    let (unzipped, zip_h1) = (unzipped?, zip_h1?);
    let tree_h1 = hashes::dir_h1(staged.path())?;
    if tree_h1 != zip_h1 {
        return Err(EntryError::Mismatch {
            tree: tree_h1,
            zip: zip_h1,
        });
    }
    staged.commit()?;
    Ok(Made {
        h1: tree_h1,
        unzipped,
    })
}

/// What the index keeps of an entry: its `h1:`, and which zip it was made
/// from, so an entry is never taken for a zip it was not made from.
#[derive(Debug, Serialize, Deserialize)]
struct TreeRecord {
    h1: String,
    zip_sha256: String,
}

impl Providers {
    /// The entry of `package`, made from its cached, verified zip (sha256
    /// `zip_sha256`) unless it is there already; returns its `h1:`. One
    /// request at a time per entry: the others wait, then find it.
    pub(super) async fn tree_entry(
        &self,
        package: &Package,
        zip: &RelPath,
        zip_sha256: &str,
        zip_h1: Option<String>,
    ) -> Result<String, EntryError> {
        let rel = tree_path(package);
        let _one_maker = self.locks.lock(&rel.key()).await;
        let target = self.store.path(&rel);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            match self.tree_record(&rel) {
                Some(record) if record.zip_sha256 == zip_sha256 => {
                    self.store.record_use(&rel, 0);
                    return Ok(record.h1);
                }
                _ => {
                    // The index was lost, or the zip was fetched again
                    // since: an entry nothing vouches for is made anew.
                    tracing::info!("replacing the unpacked {package}: no record of its zip");
                    self.store.remove(&rel.key())?;
                }
            }
        }
        let started = Instant::now();
        let zip_path = self.store.path(zip);
        let made = {
            let target = target.clone();
            tokio::task::spawn_blocking(move || {
                make_entry(&zip_path, &target, zip_h1.as_deref(), Limits::default())
            })
            .await
            .map_err(std::io::Error::other)??
        };
        tracing::info!(
            "unpacked {package} into {} ({} files, {} bytes) in {:.2?}",
            target.display(),
            made.unzipped.files,
            made.unzipped.bytes,
            started.elapsed()
        );
        self.store.record_tree(&rel, made.unzipped.bytes);
        let record = TreeRecord {
            h1: made.h1.clone(),
            zip_sha256: zip_sha256.to_owned(),
        };
        let body = serde_json::to_string(&record).expect("records serialize");
        if let Err(e) = self
            .store
            .documents()
            .put(&record_key(&rel), &Document::now(body))
        {
            tracing::warn!("cannot record the unpacked {package}: {e}");
        }
        Ok(made.h1)
    }

    fn tree_record(&self, rel: &RelPath) -> Option<TreeRecord> {
        let doc = self.store.documents().cached(&record_key(rel))?;
        serde_json::from_str(&doc.body).ok()
    }

    /// The root of the tree, absolute: the `path` of a `filesystem_mirror`.
    pub(super) fn tree_root(&self) -> PathBuf {
        let root = self.store.root().join(UNPACKED_PROVIDERS_DIR);
        std::path::absolute(&root).unwrap_or(root)
    }
}

fn record_key(rel: &RelPath) -> String {
    format!("{TREE_RECORD_PREFIX}{}", rel.key())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::providers::unzip::tests::{write_zip, Entry};

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    const PACKAGE: &[Entry] = &[
        Entry("terraform-provider-x_v1.0.0", b"#!/bin/sh\necho x\n", 0o755),
        Entry("docs/", b"", 0o755),
        Entry("docs/README.md", b"# x\n", 0o644),
    ];

    #[test]
    fn an_entry_hashes_to_the_zips_h1_and_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let zip = write_zip(dir.path(), PACKAGE);
        let target = dir.path().join("tree/1.0.0/linux_amd64");
        let made = make_entry(&zip, &target, None, Limits::default()).unwrap();

        let zip_h1 = hashes::zip_h1(&zip).unwrap();
        assert_eq!(made.h1, zip_h1.unpacked);
        assert_eq!(hashes::dir_h1(&target).unwrap(), made.h1);
        assert_eq!(made.unzipped.files, 2);
        assert_eq!(mode(&target), 0o555);
        assert_eq!(mode(&target.join("docs")), 0o555);
        assert_eq!(mode(&target.join("terraform-provider-x_v1.0.0")), 0o555);
        assert_eq!(mode(&target.join("docs/README.md")), 0o444);
    }

    #[test]
    fn a_tree_that_does_not_hash_to_the_zips_h1_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let zip = write_zip(dir.path(), PACKAGE);
        let target = dir.path().join("tree/1.0.0/linux_amd64");
        let wrong = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let err = make_entry(&zip, &target, Some(wrong), Limits::default()).unwrap_err();
        assert!(
            matches!(err, EntryError::Mismatch { ref zip, .. } if zip == wrong),
            "{err}"
        );
        assert!(!target.exists());
        let left = fs::read_dir(dir.path().join("tree/1.0.0")).unwrap().count();
        assert_eq!(left, 0, "the staging directory is gone");
    }

    #[test]
    fn a_refused_zip_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let zip = write_zip(
            dir.path(),
            &[Entry("ok", b"1", 0o644), Entry("../evil", b"2", 0o644)],
        );
        let target = dir.path().join("tree/1.0.0/linux_amd64");
        let err = make_entry(&zip, &target, None, Limits::default()).unwrap_err();
        assert!(
            matches!(err, EntryError::Unzip(UnzipError::Escapes { .. })),
            "{err}"
        );
        assert_eq!(
            fs::read_dir(dir.path().join("tree/1.0.0")).unwrap().count(),
            0
        );
        assert!(!dir.path().join("tree/1.0.0/evil").exists());
    }
}
