//! `bundle verify`'s checks beyond the stream's own (see `read`): every
//! provider zip matches its version's SHA256SUMS, whose signature verifies
//! against the signing keys in the package's download answer, all carried
//! in the bundle. The provider rules are those the server applies before
//! it stores a package (`providers::signature`, `providers::checksums`).

use std::collections::HashMap;
use std::io::Read;

use super::format::{self, Entry, EntryKind, Manifest};
use super::read::{self, ReadError, ReadLimits};
use crate::provider_address::{Package, ProviderAddress};
use crate::providers::{checksum_path, download_key, expected_sha256, Artifact, DownloadAnswer};
use crate::store::{decode_document_file, Bucket, Segment};

/// Bytes of checksum files, signatures and download answers held at once
/// for the provider checks: each is capped by `max_metadata_size`, and
/// a hostile bundle could list a great many.
pub const MAX_KEPT_METADATA: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: {message}")]
    Provider { path: String, message: String },
}

/// Reads the whole bundle and checks it; the manifest if all is well, else
/// the first bad entry.
pub fn verify(
    input: impl Read,
    limits: ReadLimits,
    metadata_size: u64,
) -> Result<Manifest, VerifyError> {
    // The small files the provider checks need, by path; zips are only
    // hashed as they pass.
    let mut kept: HashMap<String, Vec<u8>> = HashMap::new();
    let mut kept_bytes = 0u64;
    let manifest = read::read(input, limits, |entry, bytes| {
        if !keeps(entry.kind) {
            return Ok(());
        }
        if entry.size > metadata_size {
            return Err(format!(
                "{} bytes, over the cap of {metadata_size} for metadata",
                entry.size
            ));
        }
        kept_bytes += entry.size;
        if kept_bytes > MAX_KEPT_METADATA {
            return Err(format!(
                "the bundle's checksums, signatures and download answers come to over \
                 {MAX_KEPT_METADATA} bytes"
            ));
        }
        let mut buf = Vec::with_capacity(entry.size as usize);
        bytes
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot be read: {e}"))?;
        kept.insert(entry.path.clone(), buf);
        Ok(())
    })?;
    for entry in &manifest.entries {
        if entry.kind == EntryKind::ProviderPackage {
            check_package(entry, &kept).map_err(|message| VerifyError::Provider {
                path: entry.path.clone(),
                message,
            })?;
        }
    }
    Ok(manifest)
}

fn keeps(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::ProviderChecksums | EntryKind::ProviderSignature | EntryKind::DownloadAnswer
    )
}

/// One provider zip against its signed SHA256SUMS.
fn check_package(entry: &Entry, kept: &HashMap<String, Vec<u8>>) -> Result<(), String> {
    let package = package_of(&entry.path).ok_or("not a provider package's path")?;
    let find = |path: String, what: &str| {
        kept.get(&path)
            .ok_or_else(|| format!("the bundle has no {what} for {package} (expected {path})"))
    };
    let key = download_key(&package);
    let doc_path = format::document_path(&key).map_err(|e| e.to_string())?;
    let doc = decode_document_file(&key, find(doc_path.clone(), "download answer")?)
        .ok_or_else(|| format!("{doc_path} is not the download answer of {package}"))?;
    let answer = DownloadAnswer::from_stored(doc.body.as_str())
        .map_err(|e| format!("its download answer {doc_path}: {e}"))?;
    let sums_path = format::artifact_path(&checksum_path(&package, Artifact::Checksums).key());
    let sig_path = format::artifact_path(&checksum_path(&package, Artifact::Signature).key());
    let sums = find(sums_path.clone(), "SHA256SUMS")?;
    let sig = find(sig_path, "SHA256SUMS signature")?;
    crate::providers::signature::verify_detached(sums, sig, &answer.signing_keys())
        .map_err(|e| format!("{sums_path}: {e}"))?;
    let zip_name = package.zip_name();
    if answer.filename.as_str() != zip_name {
        return Err(format!(
            "its download answer names {}, not {zip_name}",
            answer.filename
        ));
    }
    let signed = expected_sha256(sums, &answer).map_err(|e| e.to_string())?;
    if signed != entry.sha256 {
        return Err(format!(
            "sha256 {} where the signed SHA256SUMS says {signed}",
            entry.sha256
        ));
    }
    Ok(())
}

/// `artifacts/providers/<host>/<ns>/<type>/<zip>` as a package.
fn package_of(path: &str) -> Option<Package> {
    let key = path
        .strip_prefix(format::ARTIFACTS_DIR)?
        .strip_prefix('/')?;
    let (Bucket::Providers, parts) = Bucket::split(key)? else {
        return None;
    };
    let [host, namespace, kind, file] = parts.as_slice() else {
        return None;
    };
    let address = ProviderAddress {
        host: Segment::new(host).ok()?,
        namespace: Segment::new(namespace).ok()?,
        kind: Segment::new(kind).ok()?,
    };
    Package::from_zip_name(&address, file)
}
