//! How each cached provider zip was verified, and whether it was at all.
//!
//! A zip enters the cache by two routes, and each records here how it was
//! checked: downloaded from the registry ([`super::package`]), against the
//! registry's signed SHA256SUMS; or handed over by `tfmirror cache import`
//! ([`super::import`]), against the signed SHA256SUMS or, when the registry
//! cannot answer, against lock-file hashes the user named. The network
//! mirror, which Terraform trusts without checking any signature, serves
//! and lists `h1:` for a zip only when it has a record.
//!
//! A record is the index document `providers/verified/<zip key>`, e.g.
//! `{"by":"lock-file","file":"/src/.terraform.lock.hcl","sha256":"..."}`.
//! It carries the zip's sha256, so it never vouches for other bytes stored
//! under the same name later.
//!
//! The index can be lost and rebuilt from the files, and caches from before
//! these records hold zips without one. So a missing record is derived
//! where the files allow: a zip whose sha256 is the one its version's
//! cached (hence signature-verified) SHA256SUMS lists for it counts as
//! registry-verified, and is recorded as such then. A lock-file
//! verification cannot be derived again (the lock file is the user's, not
//! the cache's): after a lost index such a zip counts as unverified until
//! it is imported again.

use serde::{Deserialize, Serialize};

use super::checksums::{cached_checksums, listed_sha256};
use super::package::zip_path;
use super::route::Package;
use crate::store::{Document, RelPath, Store};

/// Index key prefix of the records, followed by the zip's key. Kept by
/// `cache prune`: a record cannot always be made again.
pub(super) const RECORD_KEY_PREFIX: &str = "providers/verified/";

/// What a cached zip was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "kebab-case")]
pub enum VerifiedBy {
    /// Its sha256 is the one listed for it in a SHA256SUMS whose signature
    /// verified against the registry's signing keys.
    RegistrySignature,
    /// Its `zh:` or `h1:` is among the hashes a lock file the user named
    /// holds for it; `file` is that lock file, for the record.
    LockFile { file: String },
}

/// The stored form: how, and which bytes.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    by: VerifiedBy,
    sha256: String,
}

/// Records that the zip of `package` with this sha256 was verified `by`.
pub(super) fn record(store: &Store, package: &Package, sha256: &str, by: VerifiedBy) {
    let record = Record {
        by,
        sha256: sha256.to_owned(),
    };
    let body = serde_json::to_string(&record).expect("records serialize");
    if let Err(e) = store
        .documents()
        .put(&record_key(&zip_path(package)), &Document::now(body))
    {
        tracing::warn!("cannot record how {package} was verified: {e}");
    }
}

/// How the cached zip of `package` was verified; `None` when it is not
/// cached or was never verified (see the module comment for missing
/// records).
pub(super) async fn verification(store: &Store, package: &Package) -> Option<VerifiedBy> {
    let rel = zip_path(package);
    let path = store.path(&rel);
    if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return None;
    }
    let sha256 = store.sha256(&rel).await?;
    if let Some(by) = recorded(store, &rel, &sha256) {
        return Some(by);
    }
    let sums = cached_checksums(store, package).await?;
    let name = rel
        .segments_owned()
        .pop()
        .expect("zip paths end in a file name");
    if listed_sha256(&sums, name.as_str())? != sha256 {
        return None;
    }
    tracing::info!("{package} is listed in its cached signed SHA256SUMS; recording it as verified");
    record(store, package, &sha256, VerifiedBy::RegistrySignature);
    Some(VerifiedBy::RegistrySignature)
}

/// The record for the zip at `rel`, if it is for these bytes.
fn recorded(store: &Store, rel: &RelPath, sha256: &str) -> Option<VerifiedBy> {
    let doc = store.documents().cached(&record_key(rel))?;
    match serde_json::from_str::<Record>(&doc.body) {
        Ok(record) if record.sha256 == sha256 => Some(record.by),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(
                "ignoring the unreadable verification record of {}: {e}",
                rel.key()
            );
            None
        }
    }
}

fn record_key(rel: &RelPath) -> String {
    format!("{RECORD_KEY_PREFIX}{}", rel.key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::checksum_path;
    use crate::providers::route::{Artifact, ProviderAddress};
    use crate::store::Segment;

    fn package() -> Package {
        let s = |v: &str| Segment::new(v).unwrap();
        Package {
            address: ProviderAddress {
                host: s("registry.terraform.io"),
                namespace: s("hashicorp"),
                kind: s("alpha"),
            },
            version: s("1.2.0"),
            os: s("linux"),
            arch: s("amd64"),
        }
    }

    const ZIP: &[u8] = b"the zip's bytes";
    /// sha256 of [`ZIP`].
    fn zip_sha256() -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(ZIP))
    }

    async fn store_with_zip() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.write(&zip_path(&package()), ZIP).await.unwrap();
        (dir, store)
    }

    /// Stores SHA256SUMS listing `sha256` for the zip, with a signature
    /// file beside it when `signed`.
    async fn cache_checksums(store: &Store, sha256: &str, signed: bool) {
        let sums = format!(
            "{}  terraform-provider-alpha_1.2.0_darwin_arm64.zip\n\
             {sha256}  terraform-provider-alpha_1.2.0_linux_amd64.zip\n",
            "0".repeat(64)
        );
        let package = package();
        if signed {
            let sig = checksum_path(&package, Artifact::Signature);
            store.write(&sig, b"signature").await.unwrap();
        }
        let sums_rel = checksum_path(&package, Artifact::Checksums);
        store.write(&sums_rel, sums.as_bytes()).await.unwrap();
    }

    #[tokio::test]
    async fn a_zip_without_a_record_or_checksums_is_unverified() {
        let (_dir, store) = store_with_zip().await;
        assert_eq!(verification(&store, &package()).await, None);
    }

    #[tokio::test]
    async fn a_record_vouches_only_for_its_own_bytes() {
        let (_dir, store) = store_with_zip().await;
        let by = VerifiedBy::LockFile {
            file: "/src/.terraform.lock.hcl".to_owned(),
        };
        record(&store, &package(), &zip_sha256(), by.clone());
        assert_eq!(verification(&store, &package()).await, Some(by));

        record(
            &store,
            &package(),
            &"1".repeat(64),
            VerifiedBy::RegistrySignature,
        );
        assert_eq!(
            verification(&store, &package()).await,
            None,
            "a record for other bytes"
        );
    }

    #[tokio::test]
    async fn a_missing_record_is_derived_from_cached_signed_checksums() {
        let (_dir, store) = store_with_zip().await;
        cache_checksums(&store, &zip_sha256(), true).await;
        assert_eq!(
            verification(&store, &package()).await,
            Some(VerifiedBy::RegistrySignature)
        );
        let doc = store
            .documents()
            .cached(&record_key(&zip_path(&package())))
            .expect("the derived record is kept");
        let stored: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
        assert_eq!(stored["by"], "registry-signature");
        assert_eq!(stored["sha256"], zip_sha256());
    }

    #[tokio::test]
    async fn checksums_for_other_bytes_or_without_signature_vouch_for_nothing() {
        let (_dir, store) = store_with_zip().await;
        cache_checksums(&store, &zip_sha256(), false).await;
        assert_eq!(
            verification(&store, &package()).await,
            None,
            "no signature beside SHA256SUMS"
        );
        cache_checksums(&store, &"2".repeat(64), true).await;
        assert_eq!(
            verification(&store, &package()).await,
            None,
            "SHA256SUMS lists other bytes"
        );
    }

    #[tokio::test]
    async fn a_record_without_its_zip_vouches_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        record(
            &store,
            &package(),
            &zip_sha256(),
            VerifiedBy::RegistrySignature,
        );
        assert_eq!(verification(&store, &package()).await, None);
    }

    #[test]
    fn records_read_as_documented() {
        let record: Record = serde_json::from_str(
            r#"{"by":"lock-file","file":"/src/.terraform.lock.hcl","sha256":"ab"}"#,
        )
        .unwrap();
        assert_eq!(
            record.by,
            VerifiedBy::LockFile {
                file: "/src/.terraform.lock.hcl".to_owned()
            }
        );
        let record: Record =
            serde_json::from_str(r#"{"by":"registry-signature","sha256":"ab"}"#).unwrap();
        assert_eq!(record.by, VerifiedBy::RegistrySignature);
    }
}
