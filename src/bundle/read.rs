//! Reading a bundle, which may be hostile: the manifest first, bounded and
//! checked, then every tar entry in the manifest's order, each one a plain
//! file at the path and of the size the manifest says, its sha256 checked
//! as it streams past. Blocking: callers on the runtime use
//! `spawn_blocking`.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::format::{self, Entry, Manifest};

/// Caps besides the format's own, taken from the config.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Bytes of one entry (the largest artifact the cache would take).
    pub entry_size: u64,
}

impl From<&crate::config::Limits> for ReadLimits {
    /// One entry may be as large as the largest artifact the config lets
    /// the cache take: a bundle is read as hostile input.
    fn from(limits: &crate::config::Limits) -> ReadLimits {
        ReadLimits {
            entry_size: limits
                .provider_package_size
                .max(limits.module_archive_size)
                .max(limits.module_unpacked_size),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a tfmirror bundle (a zstd-compressed tar): {0}")]
    NotABundle(#[source] io::Error),
    #[error("the bundle does not start with {}", format::MANIFEST_PATH)]
    NoManifest,
    #[error("the manifest is over {max} bytes", max = format::MAX_MANIFEST_BYTES)]
    ManifestTooLarge,
    #[error("the manifest cannot be read: {0}")]
    BadManifest(#[source] serde_json::Error),
    #[error(
        "the bundle has format {found}; this tfmirror reads format {}",
        format::FORMAT
    )]
    Format { found: u32 },
    #[error(
        "the manifest lists {count} entries, over the cap of {}",
        format::MAX_ENTRIES
    )]
    TooMany { count: usize },
    #[error("{0}")]
    Path(#[from] format::PathError),
    #[error("the manifest lists {path} out of order or twice")]
    Order { path: String },
    #[error("{path}: the manifest's sha256 {sha256:?} is not 64 lowercase hex digits")]
    BadHash { path: String, sha256: String },
    #[error("{path}: {size} bytes, over the cap of {max}")]
    EntryTooLarge { path: String, size: u64, max: u64 },
    #[error("{path}: missing from the bundle")]
    Missing { path: String },
    #[error("{path}: in the bundle but not in the manifest (or out of its order)")]
    Unlisted { path: String },
    #[error("{path}: not a plain file")]
    NotAFile { path: String },
    #[error("{path}: {found} bytes where the manifest says {expected}")]
    Size {
        path: String,
        found: u64,
        expected: u64,
    },
    #[error("{path}: sha256 {found} where the manifest says {expected}")]
    Sha256 {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path}: {message}")]
    Rejected { path: String, message: String },
    #[error("the bundle cannot be read: {0}")]
    Io(#[source] io::Error),
}

/// Reads the whole bundle from `input`, giving `visit` each entry's bytes
/// as they stream past (it may read them all, some, or none; the rest is
/// hashed anyway). An entry's bytes are only known good once `read`
/// returns `Ok`: a caller keeps nothing before then. `visit` returns a
/// message to refuse the entry.
pub fn read(
    input: impl Read,
    limits: ReadLimits,
    mut visit: impl FnMut(&Entry, &mut dyn Read) -> Result<(), String>,
) -> Result<Manifest, ReadError> {
    let decoder = zstd::Decoder::new(input).map_err(ReadError::NotABundle)?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(ReadError::NotABundle)?;
    let manifest = first_manifest(&mut entries)?;
    check_manifest(&manifest, limits)?;
    let mut listed = manifest.entries.iter();
    for tar_entry in entries {
        let mut tar_entry = tar_entry.map_err(ReadError::Io)?;
        let path = tar_path(&tar_entry)?;
        let Some(entry) = listed.next().filter(|entry| entry.path == path) else {
            return Err(ReadError::Unlisted { path });
        };
        if tar_entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ReadError::NotAFile { path });
        }
        let declared = tar_entry.size();
        if declared != entry.size {
            return Err(ReadError::Size {
                path,
                found: declared,
                expected: entry.size,
            });
        }
        let mut hashing = Hashing {
            inner: (&mut tar_entry).take(entry.size),
            hash: Sha256::new(),
            bytes: 0,
        };
        visit(entry, &mut hashing).map_err(|message| ReadError::Rejected {
            path: path.clone(),
            message,
        })?;
        io::copy(&mut hashing, &mut io::sink()).map_err(ReadError::Io)?;
        if hashing.bytes != entry.size {
            return Err(ReadError::Size {
                path,
                found: hashing.bytes,
                expected: entry.size,
            });
        }
        let found = hex::encode(hashing.hash.finalize());
        if found != entry.sha256 {
            return Err(ReadError::Sha256 {
                path,
                found,
                expected: entry.sha256.clone(),
            });
        }
    }
    if let Some(entry) = listed.next() {
        return Err(ReadError::Missing {
            path: entry.path.clone(),
        });
    }
    Ok(manifest)
}

/// Only the manifest, checked: what `bundle list` shows. The entries after
/// it are not read.
pub fn manifest(input: impl Read, limits: ReadLimits) -> Result<Manifest, ReadError> {
    let decoder = zstd::Decoder::new(input).map_err(ReadError::NotABundle)?;
    let mut archive = tar::Archive::new(decoder);
    let mut entries = archive.entries().map_err(ReadError::NotABundle)?;
    let manifest = first_manifest(&mut entries)?;
    check_manifest(&manifest, limits)?;
    Ok(manifest)
}

/// The first tar entry, which must be the manifest, parsed within its cap.
fn first_manifest<R: Read>(entries: &mut tar::Entries<'_, R>) -> Result<Manifest, ReadError> {
    let first = entries
        .next()
        .ok_or(ReadError::NoManifest)?
        .map_err(ReadError::NotABundle)?;
    if tar_path(&first)? != format::MANIFEST_PATH
        || first.header().entry_type() != tar::EntryType::Regular
    {
        return Err(ReadError::NoManifest);
    }
    let mut json = Vec::new();
    first
        .take(format::MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(ReadError::Io)?;
    if json.len() as u64 > format::MAX_MANIFEST_BYTES {
        return Err(ReadError::ManifestTooLarge);
    }
    serde_json::from_slice::<Manifest>(&json).map_err(ReadError::BadManifest)
}

fn check_manifest(manifest: &Manifest, limits: ReadLimits) -> Result<(), ReadError> {
    if manifest.format != format::FORMAT {
        return Err(ReadError::Format {
            found: manifest.format,
        });
    }
    if manifest.entries.len() > format::MAX_ENTRIES {
        return Err(ReadError::TooMany {
            count: manifest.entries.len(),
        });
    }
    let mut previous: Option<&str> = None;
    for entry in &manifest.entries {
        format::check_path(&entry.path)?;
        if previous.is_some_and(|previous| previous >= entry.path.as_str()) {
            return Err(ReadError::Order {
                path: entry.path.clone(),
            });
        }
        previous = Some(&entry.path);
        let hex = entry
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if entry.sha256.len() != 64 || !hex {
            return Err(ReadError::BadHash {
                path: entry.path.clone(),
                sha256: entry.sha256.clone(),
            });
        }
        if entry.size > limits.entry_size {
            return Err(ReadError::EntryTooLarge {
                path: entry.path.clone(),
                size: entry.size,
                max: limits.entry_size,
            });
        }
    }
    Ok(())
}

/// The entry's path as UTF-8, checked for tricks before anything else.
fn tar_path<R: Read>(entry: &tar::Entry<R>) -> Result<String, ReadError> {
    let raw = entry.path_bytes();
    let path = String::from_utf8(raw.into_owned()).map_err(|e| {
        ReadError::Path(format::PathError::NotPlain(
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
        ))
    })?;
    if path != format::MANIFEST_PATH {
        format::check_path(&path)?;
    }
    Ok(path)
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
