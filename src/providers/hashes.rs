//! The two package hashes Terraform writes into `.terraform.lock.hcl`.
//!
//! - `zh:` is the lowercase hex sha256 of the zip file, the same value the
//!   registry's SHA256SUMS lists, so it covers every platform's package
//!   without downloading it.
//! - `h1:` is Go's `dirhash.Hash1` of the package contents: one line
//!   `<sha256 hex>  <name>\n` per file, sorted by name bytes, then
//!   `"h1:" + base64(sha256(lines))`. It ignores timestamps and compression,
//!   so repacking a zip keeps it.
//!
//! Terraform computes `h1:` two ways (internal/getproviders/hash.go,
//! `PackageHashV1`). It *records* the hash of the unpacked package directory
//! (`dirhash.HashDir(dir, "", Hash1)`: relative paths with `/`, directories
//! skipped), but it *checks* a downloaded or mirrored zip with
//! `dirhash.HashZip`, which takes every entry name as stored, a directory
//! entry counting as an empty file. For the zips HashiCorp publishes the two
//! agree; for a zip with directory entries they differ, and a lock file
//! holding only the recorded one makes Terraform reject that very zip
//! (verified with terraform 1.11.4). [`ZipH1`] therefore carries both.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Why a package could not be hashed; shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a readable zip archive: {source}", path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{} is corrupt: cannot read entry {name:?}: {source}", path.display())]
    Entry {
        path: PathBuf,
        name: String,
        source: io::Error,
    },
    /// Terraform refuses to unpack such a package, so it has no `h1:`.
    #[error("{} has an entry Terraform refuses to unpack: {name:?}", path.display())]
    BadName { path: PathBuf, name: String },
    #[error("{} is an empty zip archive", path.display())]
    Empty { path: PathBuf },
}

/// Both `h1:` forms of one provider zip (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipH1 {
    /// What Terraform records after installing: the unpacked directory's hash.
    pub unpacked: String,
    /// What Terraform checks the zip itself against before unpacking it.
    pub archive: String,
}

impl ZipH1 {
    /// The distinct values, the recorded one first: the ones to write into
    /// a lock file so that Terraform accepts the package from a zip and from
    /// an unpacked plugin cache alike.
    pub fn values(&self) -> Vec<String> {
        let mut values = vec![self.unpacked.clone()];
        if self.archive != self.unpacked {
            values.push(self.archive.clone());
        }
        values
    }
}

/// Both `h1:` forms of the provider zip at `path`, reading each entry once.
///
/// Entries are decompressed and hashed as a stream: provider binaries run
/// to hundreds of megabytes.
pub fn zip_h1(path: &Path) -> Result<ZipH1, HashError> {
    let file = File::open(path).map_err(|source| HashError::Read {
        path: path.to_owned(),
        source,
    })?;
    zip_h1_of(BufReader::new(file), path)
}

/// The `zh:` hash of the file at `path`.
pub fn zh_of_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(format!("zh:{}", hex::encode(hasher.finalize())))
}

/// The `h1:` of an unpacked package directory, as Terraform computes it
/// before installing from an unpacked `filesystem_mirror`
/// (`dirhash.HashDir(dir, "", Hash1)`): every file below `dir` by its
/// relative path with `/`, directories skipped. Blocking.
pub fn dir_h1(dir: &Path) -> Result<String, HashError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| HashError::Read { path, source }
    };
    let mut files: BTreeMap<Vec<u8>, [u8; 32]> = BTreeMap::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(current) = dirs.pop() {
        for entry in std::fs::read_dir(&current).map_err(read_error(&current))? {
            let entry = entry.map_err(read_error(&current))?;
            let path = entry.path();
            if entry.file_type().map_err(read_error(&path))?.is_dir() {
                dirs.push(path);
                continue;
            }
            let mut file = File::open(&path).map_err(read_error(&path))?;
            let mut hasher = Sha256::new();
            io::copy(&mut file, &mut hasher).map_err(read_error(&path))?;
            let rel = path.strip_prefix(dir).expect("walk stays below dir");
            // On unix the separator already is `/`, and names are bytes.
            let name = std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str()).to_vec();
            files.insert(name, hasher.finalize().into());
        }
    }
    Ok(hash1(files.iter().map(|(n, d)| (&n[..], d))))
}

/// `path` is only for error messages.
fn zip_h1_of<R: Read + Seek>(reader: R, path: &Path) -> Result<ZipH1, HashError> {
    let zip_error = |source| HashError::Zip {
        path: path.to_owned(),
        source,
    };
    let mut archive = zip::ZipArchive::new(reader).map_err(zip_error)?;
    if archive.is_empty() {
        // Terraform's unzip refuses an empty archive outright.
        return Err(HashError::Empty {
            path: path.to_owned(),
        });
    }
    // Names as stored. HashZip would list a duplicated name twice, each
    // time with the last entry's content; the zip crate already keeps only
    // that last entry, so such a zip (which no provider release has) gets
    // one line per name here.
    let mut entries: Vec<(Vec<u8>, [u8; 32])> = Vec::with_capacity(archive.len());
    // Unpacked path -> content hash; a later entry overwrites an earlier
    // one, as it does on disk.
    let mut unpacked: BTreeMap<Vec<u8>, [u8; 32]> = BTreeMap::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(zip_error)?;
        let name = entry.name_raw().to_vec();
        let shown = String::from_utf8_lossy(&name).into_owned();
        if name.contains(&b'\n') {
            // dirhash.Hash1 refuses these; its summary is line-based.
            return Err(HashError::BadName {
                path: path.to_owned(),
                name: shown,
            });
        }
        let is_dir = name.ends_with(b"/") || entry.unix_mode().is_some_and(is_dir_mode);
        let mut hasher = Sha256::new();
        io::copy(&mut entry, &mut hasher).map_err(|source| HashError::Entry {
            path: path.to_owned(),
            name: shown.clone(),
            source,
        })?;
        let digest: [u8; 32] = hasher.finalize().into();
        if !is_dir {
            let Some(clean) = unpacked_path(&name) else {
                return Err(HashError::BadName {
                    path: path.to_owned(),
                    name: shown,
                });
            };
            unpacked.insert(clean, digest);
        } else if has_dot_dot(&name) {
            return Err(HashError::BadName {
                path: path.to_owned(),
                name: shown,
            });
        }
        entries.push((name, digest));
    }
    entries.sort();
    Ok(ZipH1 {
        unpacked: hash1(unpacked.iter().map(|(n, d)| (&n[..], d))),
        archive: hash1(entries.iter().map(|(n, d)| (&n[..], d))),
    })
}

/// `dirhash.Hash1` over `(name, sha256 of content)` pairs already sorted by
/// name bytes (Go's `sort.Strings` order).
fn hash1<'a>(files: impl Iterator<Item = (&'a [u8], &'a [u8; 32])>) -> String {
    let mut summary = Sha256::new();
    for (name, digest) in files {
        summary.update(hex::encode(digest).as_bytes());
        summary.update(b"  ");
        summary.update(name);
        summary.update(b"\n");
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(summary.finalize());
    format!("h1:{encoded}")
}

/// The relative path an entry unpacks to, as `filepath.Join(dir, name)` and
/// `filepath.Walk` spell it: empty and `.` components dropped, `/` between.
/// `None` for a name Terraform refuses (a `..` component) or one that names
/// the package directory itself.
pub(super) fn unpacked_path(name: &[u8]) -> Option<Vec<u8>> {
    if has_dot_dot(name) {
        return None;
    }
    let parts: Vec<&[u8]> = name
        .split(|&b| b == b'/')
        .filter(|part| !part.is_empty() && *part != b".")
        .collect();
    (!parts.is_empty()).then(|| parts.join(&b'/'))
}

/// Terraform's unzip splits on both separators when it looks for `..`.
fn has_dot_dot(name: &[u8]) -> bool {
    name.split(|&b| b == b'/' || b == b'\\')
        .any(|part| part == b"..")
}

fn is_dir_mode(mode: u32) -> bool {
    mode & 0o170000 == 0o040000
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use zip::write::SimpleFileOptions;

    use super::*;

    /// Produced with terraform 1.11.4: a zip of exactly [`GOLDEN_ENTRIES`]
    /// (made with Python's zipfile) put into a packed `filesystem_mirror`
    /// as `registry.terraform.io/hashicorp/null/
    /// terraform-provider-null_1.0.0_linux_amd64.zip`, then
    /// `terraform providers lock -fs-mirror=DIR -platform=linux_amd64` in a
    /// directory requiring `hashicorp/null` 1.0.0 (CHECKPOINT_DISABLE=1,
    /// empty TF_CLI_CONFIG_FILE, HOME in a temp dir, no network).
    const GOLDEN_H1: &str = "h1:eYLktPTEHENE6sMoz4Sct3VPD45zgjzVZ23ZHaj6bY8=";

    /// HashZip of the same zip. With only [`GOLDEN_H1`] in the lock file,
    /// `terraform init` from that mirror failed ("doesn't match any of the
    /// checksums previously recorded"); with this one added it succeeded.
    const GOLDEN_H1_ARCHIVE: &str = "h1:PAjgXgfuEkGlc2aukE2Ec52J2tRMf46phEKqArcT8tk=";

    /// Unsorted on purpose, with a directory entry.
    const GOLDEN_ENTRIES: &[(&str, &[u8])] = &[
        (
            "terraform-provider-null_v1.0.0_x5",
            b"#!/bin/sh\necho not a real provider\n",
        ),
        ("docs/", b""),
        ("docs/README.md", b"# null\n"),
        ("LICENSE", b"MIT\n"),
        ("CHANGELOG.md", b""),
    ];

    fn zip_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default();
        for (name, content) in entries {
            if name.ends_with('/') {
                writer.add_directory(*name, options).unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                writer.write_all(content).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    fn h1_of(entries: &[(&str, &[u8])]) -> Result<ZipH1, HashError> {
        zip_h1_of(Cursor::new(zip_bytes(entries)), Path::new("test.zip"))
    }

    /// The summary written out by hand, the way `sha256sum` would.
    fn by_hand(lines: &[(&str, &[u8])]) -> String {
        let summary: String = lines
            .iter()
            .map(|(name, content)| format!("{}  {name}\n", hex::encode(Sha256::digest(content))))
            .collect();
        let digest = Sha256::digest(summary.as_bytes());
        format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }

    #[test]
    fn matches_terraform() {
        let hashes = h1_of(GOLDEN_ENTRIES).unwrap();
        assert_eq!(hashes.unpacked, GOLDEN_H1);
        assert_eq!(hashes.archive, GOLDEN_H1_ARCHIVE);
        assert_eq!(hashes.values(), [GOLDEN_H1, GOLDEN_H1_ARCHIVE]);
    }

    #[test]
    fn matches_the_summary_computed_by_hand() {
        let hashes = h1_of(GOLDEN_ENTRIES).unwrap();
        let expected = by_hand(&[
            ("CHANGELOG.md", b""),
            ("LICENSE", b"MIT\n"),
            ("docs/README.md", b"# null\n"),
            (
                "terraform-provider-null_v1.0.0_x5",
                b"#!/bin/sh\necho not a real provider\n",
            ),
        ]);
        assert_eq!(hashes.unpacked, expected);
        let with_dir = by_hand(&[
            ("CHANGELOG.md", b""),
            ("LICENSE", b"MIT\n"),
            ("docs/", b""),
            ("docs/README.md", b"# null\n"),
            (
                "terraform-provider-null_v1.0.0_x5",
                b"#!/bin/sh\necho not a real provider\n",
            ),
        ]);
        assert_eq!(hashes.archive, with_dir);
    }

    #[test]
    fn a_zip_without_directory_entries_has_one_h1() {
        let hashes = h1_of(&[("b", b"2"), ("a", b"1")]).unwrap();
        assert_eq!(hashes.unpacked, by_hand(&[("a", b"1"), ("b", b"2")]));
        assert_eq!(hashes.values(), [hashes.unpacked.as_str()]);
    }

    #[test]
    fn sorts_by_bytes_not_case() {
        let hashes = h1_of(&[("a", b"1"), ("B", b"2"), ("_", b"3")]).unwrap();
        assert_eq!(
            hashes.unpacked,
            by_hand(&[("B", b"2"), ("_", b"3"), ("a", b"1")])
        );
    }

    #[test]
    fn names_are_cleaned_as_unpacking_does() {
        // The zip crate refuses to write a name twice: rename afterwards.
        let mut bytes = zip_bytes(&[("./x//y", b"1"), ("x/z", b"2"), ("x/Z", b"3")]);
        for at in 0..bytes.len() - 2 {
            if &bytes[at..at + 3] == b"x/Z" {
                bytes[at + 2] = b'z';
            }
        }
        let hashes = zip_h1_of(Cursor::new(bytes), Path::new("test.zip")).unwrap();
        assert_eq!(hashes.unpacked, by_hand(&[("x/y", b"1"), ("x/z", b"3")]));
        // HashZip would list "x/z" twice; see `zip_h1_of`.
        assert_eq!(hashes.archive, by_hand(&[("./x//y", b"1"), ("x/z", b"3")]));
    }

    #[test]
    fn refuses_what_terraform_refuses() {
        let err = h1_of(&[("../evil", b"")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"test.zip has an entry Terraform refuses to unpack: "../evil""#
        );
        assert!(matches!(
            h1_of(&[("a/b", b""), ("x\n", b"")]),
            Err(HashError::BadName { .. })
        ));
        assert!(matches!(h1_of(&[]), Err(HashError::Empty { .. })));
    }

    #[test]
    fn corrupt_zips_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.zip");
        std::fs::write(&path, b"not a zip at all").unwrap();
        let err = zip_h1(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} is not a readable zip", path.display())));

        // A flipped byte in stored content fails the entry's CRC check.
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        writer.start_file("file", stored).unwrap();
        writer.write_all(b"hello, provider").unwrap();
        let mut bytes = writer.finish().unwrap().into_inner();
        let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
        bytes[at] = b'j';
        std::fs::write(&path, &bytes).unwrap();
        let err = zip_h1(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} is corrupt: cannot read entry \"file\"",
                path.display()
            )),
            "{err}"
        );

        let missing = dir.path().join("missing.zip");
        let err = zip_h1(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot read {}", missing.display())));
    }

    #[test]
    fn an_unpacked_directory_hashes_to_the_recorded_h1() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in GOLDEN_ENTRIES {
            let path = dir.path().join(name);
            if name.ends_with('/') {
                std::fs::create_dir_all(path).unwrap();
            } else {
                std::fs::write(path, content).unwrap();
            }
        }
        assert_eq!(dir_h1(dir.path()).unwrap(), GOLDEN_H1);
    }

    #[test]
    fn zh_is_the_hex_sha256_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.zip");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            zh_of_file(&path).unwrap(),
            "zh:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
