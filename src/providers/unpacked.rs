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
use crate::store::{Bucket, Document, RelPath, Segment, StagedTree};

/// Index key prefix of an entry's record, followed by the entry's key.
/// Kept by `cache prune`.
pub(super) const TREE_RECORD_PREFIX: &str = "providers/tree-h1/";

/// `providers-unpacked/<host>/<namespace>/<type>/<version>/<os>_<arch>`.
pub(super) fn tree_path(package: &Package) -> RelPath {
    let addr = &package.address;
    let platform = package.platform();
    Bucket::ProvidersUnpacked.join([
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
    #[error(
        "the cached zip has sha256 {actual}, not the verified {verified}: it changed on disk; \
         delete it (`tfmirror cache delete`) to fetch it again"
    )]
    ZipChanged { verified: String, actual: String },
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
/// exist. `verified_sha256` is the sha256 the zip was verified with: the
/// file's bytes are hashed again while it is unpacked, since what is on
/// disk may have changed since. `zip_h1` is the zip's (unpacked-form)
/// `h1:` if already known; otherwise it is computed in the same pass.
/// Blocking: unpacking and hashing a provider takes seconds.
pub fn make_entry(
    zip: &Path,
    target: &Path,
    verified_sha256: &str,
    zip_h1: Option<&str>,
    limits: Limits,
) -> Result<Made, EntryError> {
    let staged = StagedTree::create(target)?;
    let (unzipped, hashed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| {
            let zh = hashes::zh_of_file(zip);
            let h1 = match zip_h1 {
                Some(h1) => Ok(h1.to_owned()),
                None => hashes::zip_h1(zip).map(|h1| h1.unpacked),
            };
            (zh, h1)
        });
        let unzipped = unzip(zip, staged.path(), limits);
        (unzipped, hashing.join().expect("hashing does not panic"))
    });
    // The most telling failure first: changed bytes, then what unpacking
    // refused, then what hashing did.
    let (zh, zip_h1) = hashed;
    let zh = zh?;
    let actual = zh.strip_prefix("zh:").unwrap_or(&zh);
    if actual != verified_sha256 {
        return Err(EntryError::ZipChanged {
            verified: verified_sha256.to_owned(),
            actual: actual.to_owned(),
        });
    }
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
        let _one_maker = self.store.locks().lock(&rel.key()).await;
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
                    let (store, key) = (self.store.clone(), rel.key());
                    tokio::task::spawn_blocking(move || store.remove(&key))
                        .await
                        .map_err(std::io::Error::other)??;
                }
            }
        }
        let started = Instant::now();
        let zip_path = self.store.path(zip);
        let made = {
            let target = target.clone();
            let verified = zip_sha256.to_owned();
            tokio::task::spawn_blocking(move || {
                make_entry(
                    &zip_path,
                    &target,
                    &verified,
                    zip_h1.as_deref(),
                    Limits::default(),
                )
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
        let root = Bucket::ProvidersUnpacked.path(self.store.root());
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

    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::providers::package::zip_path;
    use crate::providers::route::ProviderAddress;
    use crate::providers::unzip::tests::{write_zip, zip_bytes, Entry};
    use crate::server_key::ServerKey;
    use crate::store::Store;
    use crate::upstream::{Discovery, EnvTokens, RegistryClient, Upstream};

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    const PACKAGE: &[Entry] = &[
        Entry("terraform-provider-x_v1.0.0", b"#!/bin/sh\necho x\n", 0o755),
        Entry("docs/", b"", 0o755),
        Entry("docs/README.md", b"# x\n", 0o644),
    ];

    fn providers(store: Arc<Store>) -> Providers {
        let config = Arc::new(Config::default());
        let upstream = Upstream::new(EnvTokens::default());
        let documents = store.documents().clone();
        let discovery = Discovery::new(config.clone(), upstream.clone(), documents.clone());
        let key = ServerKey::generate().unwrap();
        let registry = RegistryClient::new(upstream.clone(), discovery, documents, key);
        let policy = crate::policy::LivePolicy::fixed(None);
        Providers::new(config, policy, store, upstream, registry)
    }

    fn package() -> Package {
        let s = |v: &str| Segment::new(v).unwrap();
        Package {
            address: ProviderAddress {
                host: s("registry.terraform.io"),
                namespace: s("hashicorp"),
                kind: s("x"),
            },
            version: s("1.0.0"),
            os: s("linux"),
            arch: s("amd64"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_unpack_once_and_a_new_zip_remakes_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let providers = providers(store.clone());
        let zip = zip_path(&package());
        let written = store.write(&zip, &zip_bytes(PACKAGE)).await.unwrap();

        let asking = (0..8).map(|_| {
            let (providers, zip, sha256) = (providers.clone(), zip.clone(), written.sha256.clone());
            tokio::spawn(async move { providers.tree_entry(&package(), &zip, &sha256, None).await })
        });
        let mut h1s = Vec::new();
        for asked in asking {
            h1s.push(asked.await.unwrap().unwrap());
        }
        h1s.dedup();
        assert_eq!(h1s, [hashes::zip_h1(&store.path(&zip)).unwrap().unpacked]);
        let tree_key = tree_path(&package()).key();
        let tree = |store: &Store| {
            let listed = store.inventory().unwrap();
            listed
                .into_iter()
                .find(|a| a.key == tree_key)
                .expect("the entry is listed")
        };
        let listed = tree(&store);
        assert!(listed.derived);
        assert_eq!(
            listed.usage.hits, 7,
            "one request made the entry, the seven others found it"
        );

        // The zip fetched again with other bytes: the entry is made anew.
        let other = [Entry(
            "terraform-provider-x_v1.0.0",
            b"#!/bin/sh\necho y\n",
            0o755,
        )];
        let written = store.write(&zip, &zip_bytes(&other)).await.unwrap();
        let h1 = providers
            .tree_entry(&package(), &zip, &written.sha256, None)
            .await
            .unwrap();
        assert_eq!(h1, hashes::zip_h1(&store.path(&zip)).unwrap().unpacked);
        assert_eq!(tree(&store).usage.hits, 0, "a new entry");
        let entry = store.path(&tree_path(&package()));
        assert!(
            !entry.join("docs").exists(),
            "nothing of the old entry is left"
        );
    }

    #[test]
    fn an_entry_hashes_to_the_zips_h1_and_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let zip = write_zip(dir.path(), PACKAGE);
        let target = dir.path().join("tree/1.0.0/linux_amd64");
        let made = make_entry(&zip, &target, &sha256(&zip), None, Limits::default()).unwrap();

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
        let err =
            make_entry(&zip, &target, &sha256(&zip), Some(wrong), Limits::default()).unwrap_err();
        assert!(
            matches!(err, EntryError::Mismatch { ref zip, .. } if zip == wrong),
            "{err}"
        );
        assert!(!target.exists());
        let left = fs::read_dir(dir.path().join("tree/1.0.0")).unwrap().count();
        assert_eq!(left, 0, "the staging directory is gone");
    }

    fn sha256(zip: &Path) -> String {
        let zh = hashes::zh_of_file(zip).unwrap();
        zh.trim_start_matches("zh:").to_owned()
    }

    /// The bytes on disk are checked again: a zip replaced after it was
    /// verified (another genuine zip, even) is not unpacked.
    #[test]
    fn a_zip_that_changed_since_it_was_verified_is_not_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let zip = write_zip(dir.path(), PACKAGE);
        let target = dir.path().join("tree/1.0.0/linux_amd64");
        let verified = "0".repeat(64);
        let err = make_entry(&zip, &target, &verified, None, Limits::default()).unwrap_err();
        assert!(matches!(err, EntryError::ZipChanged { .. }), "{err}");
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
        let err = make_entry(&zip, &target, &sha256(&zip), None, Limits::default()).unwrap_err();
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
