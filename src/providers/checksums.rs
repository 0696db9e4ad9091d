//! SHA256SUMS files and their signatures: fetched together, verified
//! against the registry's signing keys, and only then stored.
//!
//! They are stored beside, not inside, the packed provider directory, so
//! `<cache>/providers` stays a clean `filesystem_mirror`.

use super::download_answer::DownloadAnswer;
use super::route::{Artifact, Package};
use super::signature::verify_detached;
use super::Providers;
use crate::audit::{Kind, Record};
use crate::store::{Bucket, RelPath, Store};

/// Why a package's checksums cannot be trusted; shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("cannot download {what}: {reason}")]
    Download {
        what: &'static str,
        reason: crate::upstream::ArtifactError,
    },
    #[error("{0}")]
    Signature(#[from] super::signature::SignatureError),
    #[error("the registry lists no signing keys, so its SHA256SUMS cannot be verified")]
    NoKeys,
    #[error("SHA256SUMS has no line for {0}")]
    NotListed(String),
    #[error("SHA256SUMS lists {listed} for {file}, but the registry's shasum is {claimed}")]
    Mismatch {
        file: String,
        listed: String,
        claimed: String,
    },
    #[error("cannot store checksums: {0}")]
    Store(std::io::Error),
}

/// Where a package's checksum file or signature is kept.
pub fn checksum_path(package: &Package, artifact: Artifact) -> RelPath {
    let name = match artifact {
        Artifact::Signature => "SHA256SUMS.sig",
        _ => "SHA256SUMS",
    };
    let addr = &package.address;
    Bucket::ProviderChecksums.join([
        addr.host.clone(),
        addr.namespace.clone(),
        addr.kind.clone(),
        package.version.clone(),
        RelPath::fixed(name),
    ])
}

impl Providers {
    /// The verified SHA256SUMS of the package's version, fetching and
    /// verifying it (with its signature) on first use.
    pub(super) async fn verified_checksums(
        &self,
        package: &Package,
        answer: &DownloadAnswer,
        forwarded: &crate::upstream::Forwarded,
    ) -> Result<Vec<u8>, ChecksumError> {
        let sums_rel = checksum_path(package, Artifact::Checksums);
        let _one_fetcher = self.store.locks().lock(&sums_rel.key()).await;
        if let Some(sums) = cached_checksums(&self.store, package).await {
            return Ok(sums);
        }
        let keys = answer.signing_keys();
        if keys.is_empty() {
            return Err(ChecksumError::NoKeys);
        }
        if let Some(sums) = self.checksums_from_tier(package, &keys).await {
            return Ok(sums);
        }
        let forwarded = &forwarded.without_credential();
        let name = format!("{} {}", package.address, package.version);
        let sums = Record::new(&forwarded.requester(), Kind::Checksums, name.clone());
        let sig = Record::new(&forwarded.requester(), Kind::ChecksumsSignature, name);
        let (sums, sig) = tokio::try_join!(
            self.download_checksums("SHA256SUMS", &answer.shasums_url, forwarded, sums),
            self.download_checksums(
                "the SHA256SUMS signature",
                &answer.shasums_signature_url,
                forwarded,
                sig
            ),
        )?;
        let ((sums_line, sums), (sig_line, sig)) = (sums, sig);
        let stored = self.store_checksums(package, &sums, &sig, &keys).await;
        for line in [sums_line, sig_line] {
            self.upstream.audit().write(match &stored {
                Ok(signer) => line.verified(format!("signature key {signer}")),
                Err(e) => line.failed(e),
            });
        }
        stored.map(|_| sums)
    }

    /// Downloads `what`, a checksum file or its signature, and returns it
    /// with its audit `line`, measured, for the caller to write once it is
    /// verified; a download that fails is recorded here.
    async fn download_checksums(
        &self,
        what: &'static str,
        url: &url::Url,
        forwarded: &crate::upstream::Forwarded,
        line: Record,
    ) -> Result<(Record, Vec<u8>), ChecksumError> {
        let line = line.url(url.as_str());
        match self.upstream.get_small_artifact(url, forwarded).await {
            Ok(bytes) => Ok((line.body(&bytes), bytes)),
            Err(reason) => {
                let requested = reason.was_requested();
                let error = ChecksumError::Download { what, reason };
                if requested {
                    self.upstream.audit().write(line.failed(&error));
                }
                Err(error)
            }
        }
    }

    /// Verifies `sums` by its signature `sig` against `keys` and stores
    /// both; returns the id of the signing key.
    async fn store_checksums(
        &self,
        package: &Package,
        sums: &[u8],
        sig: &[u8],
        keys: &[&str],
    ) -> Result<String, ChecksumError> {
        let signer = verify_detached(sums, sig, keys)?;
        // The signature goes first: the checksum file is what readers look
        // for, so it must not appear before its signature does.
        self.store
            .write(&checksum_path(package, Artifact::Signature), sig)
            .await
            .map_err(ChecksumError::Store)?;
        self.store
            .write(&checksum_path(package, Artifact::Checksums), sums)
            .await
            .map_err(ChecksumError::Store)?;
        Ok(signer)
    }
}

impl Providers {
    /// The second tier's SHA256SUMS and signature, stored if the signature
    /// verifies against the registry's keys, as the upstream's copies must.
    async fn checksums_from_tier(&self, package: &Package, keys: &[&str]) -> Option<Vec<u8>> {
        let tier = self.store.second_tier()?;
        let sums_rel = checksum_path(package, Artifact::Checksums);
        let sig_rel = checksum_path(package, Artifact::Signature);
        let max_size = self.config.limits.metadata_size;
        let (sums, sig) = tokio::join!(
            tier.fetch_bytes(&sums_rel, max_size),
            tier.fetch_bytes(&sig_rel, max_size)
        );
        let (sums, sig) = (sums?, sig?);
        if let Err(e) = verify_detached(&sums, &sig, keys) {
            let from = tier.describe();
            tracing::warn!(
                "not using the checksums of {package} from {from}: {e}; fetching them from the upstream"
            );
            return None;
        }
        // The signature first, as below.
        for (rel, bytes) in [(&sig_rel, &sig), (&sums_rel, &sums)] {
            if let Err(e) = self.store.keep_from_tier(rel, bytes).await {
                tracing::warn!("cannot store {} from the second tier: {e}", rel.key());
                return None;
            }
        }
        Some(sums)
    }
}

/// The package version's SHA256SUMS if it is cached. Only a verified one
/// is ever stored, and its signature is stored first, so a checksum file
/// with its signature beside it is one that verified.
pub(super) async fn cached_checksums(store: &Store, package: &Package) -> Option<Vec<u8>> {
    let sig_path = store.path(&checksum_path(package, Artifact::Signature));
    if !tokio::fs::try_exists(&sig_path).await.unwrap_or(false) {
        return None;
    }
    tokio::fs::read(store.path(&checksum_path(package, Artifact::Checksums)))
        .await
        .ok()
}

/// Checks that SHA256SUMS vouches for the registry's `shasum` of the
/// package file, and returns that sha256.
pub fn expected_sha256(sums: &[u8], answer: &DownloadAnswer) -> Result<String, ChecksumError> {
    let file = answer.filename.as_str();
    let listed =
        listed_sha256(sums, file).ok_or_else(|| ChecksumError::NotListed(file.to_owned()))?;
    if listed != answer.shasum {
        return Err(ChecksumError::Mismatch {
            file: file.to_owned(),
            listed,
            claimed: answer.shasum.clone(),
        });
    }
    Ok(listed)
}

/// Finds `file`'s line in the `<sha256>  <name>` format of `sha256sum`.
pub(super) fn listed_sha256(sums: &[u8], file: &str) -> Option<String> {
    String::from_utf8_lossy(sums).lines().find_map(|line| {
        let (hash, name) = line.split_once(char::is_whitespace)?;
        let name = name.trim_start().trim_start_matches('*');
        (name == file).then(|| hash.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_for_a_file() {
        let sums = b"AAAA  a.zip\nbbbb  b.zip\ncccc *c.zip\n";
        assert_eq!(listed_sha256(sums, "a.zip").as_deref(), Some("aaaa"));
        assert_eq!(listed_sha256(sums, "b.zip").as_deref(), Some("bbbb"));
        assert_eq!(listed_sha256(sums, "c.zip").as_deref(), Some("cccc"));
        assert_eq!(listed_sha256(sums, "d.zip"), None);
    }
}
