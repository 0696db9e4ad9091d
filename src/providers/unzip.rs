//! Unpacking a provider zip into a directory, safely: every entry's path is
//! checked to stay inside it, links and special files are refused, each
//! file keeps its executable bit, and the total size and entry count are
//! capped so a zip bomb fails cleanly instead of filling the disk.
//!
//! Names become paths the way Terraform's own unzip does (and as
//! [`super::hashes`] reads them for the `h1:` of the unpacked package):
//! empty and `.` components dropped, so the tree hashes to the zip's `h1:`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::hashes::unpacked_path;

/// The most bytes one package may unpack to. The largest providers unpack
/// to under 1 GiB (`hashicorp/aws` 6.x: about 830 MB); the config key for
/// it belongs to the limits issue (16).
pub const MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// The most entries one package may hold. Providers ship a binary and a
/// few text files.
pub const MAX_UNPACKED_ENTRIES: usize = 10_000;

/// What one package may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: MAX_UNPACKED_BYTES,
            max_entries: MAX_UNPACKED_ENTRIES,
        }
    }
}

/// Why a zip was not unpacked; the message names the entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum UnzipError {
    #[error("not a readable zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("entry {name:?} would be unpacked outside the package directory")]
    Escapes { name: String },
    #[error("entry {name:?} is a symbolic link or special file; providers hold only files")]
    NotAFile { name: String },
    #[error("the package has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("the package unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot unpack entry {name:?}: {source}")]
    Io { name: String, source: io::Error },
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unzipped {
    pub files: usize,
    pub bytes: u64,
}

const FILE_TYPE_MASK: u32 = 0o170000;
const REGULAR: u32 = 0o100000;
const DIRECTORY: u32 = 0o040000;

/// Unpacks the zip at `zip` into the existing, empty directory `into`.
/// Blocking: call it off the async threads.
pub fn unzip(zip: &Path, into: &Path, limits: Limits) -> Result<Unzipped, UnzipError> {
    let file = File::open(zip).map_err(|source| UnzipError::Io {
        name: zip.display().to_string(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(file))?;
    if archive.len() > limits.max_entries {
        return Err(UnzipError::TooManyEntries {
            limit: limits.max_entries,
        });
    }
    let mut unzipped = Unzipped { files: 0, bytes: 0 };
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let mode = entry.unix_mode();
        let file_type = mode.map_or(0, |m| m & FILE_TYPE_MASK);
        let is_dir = entry.name_raw().ends_with(b"/") || file_type == DIRECTORY;
        if !is_dir && file_type != 0 && file_type != REGULAR {
            return Err(UnzipError::NotAFile { name });
        }
        let Some(rel) = checked_path(entry.name_raw()) else {
            if is_dir && is_the_package_itself(entry.name_raw()) {
                continue;
            }
            return Err(UnzipError::Escapes { name });
        };
        let path = into.join(rel);
        let io_error = |source| UnzipError::Io {
            name: name.clone(),
            source,
        };
        if is_dir {
            fs::create_dir_all(&path).map_err(io_error)?;
            continue;
        }
        let parent = path.parent().expect("below `into`");
        fs::create_dir_all(parent).map_err(io_error)?;
        let executable = mode.is_some_and(|m| m & 0o111 != 0);
        let budget = limits.max_bytes - unzipped.bytes;
        let written = write_file(&mut entry, &path, executable, budget).map_err(io_error)?;
        if written > budget {
            return Err(UnzipError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        unzipped.files += 1;
        unzipped.bytes += written;
    }
    Ok(unzipped)
}

/// The relative path an entry unpacks to, or `None` if it would leave the
/// directory: an absolute name, a `..` component, a backslash (a separator
/// elsewhere), a NUL, or nothing left once `.` and empty parts are gone.
fn checked_path(name: &[u8]) -> Option<PathBuf> {
    if name.starts_with(b"/") || name.contains(&b'\\') || name.contains(&0) {
        return None;
    }
    let clean = unpacked_path(name)?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(&clean)))
}

/// A directory entry like `./` that names the package directory itself.
fn is_the_package_itself(name: &[u8]) -> bool {
    !name.starts_with(b"/")
        && name
            .split(|&b| b == b'/')
            .all(|p| p.is_empty() || p == b".")
}

/// Copies at most `budget + 1` bytes, so the caller can tell a file that
/// went over from one that fits exactly. A name seen twice is overwritten,
/// as it would be by Terraform.
fn write_file(
    entry: &mut impl Read,
    path: &Path,
    executable: bool,
    budget: u64,
) -> io::Result<u64> {
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    let written = io::copy(&mut entry.take(budget.saturating_add(1)), &mut file)?;
    // `mode` applied only if the file is new, and through the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(written)
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::{Cursor, Write};

    use zip::write::SimpleFileOptions;

    use super::*;

    /// One entry of a test zip: a name, its bytes, its unix mode (with the
    /// file type bits, or without for a plain permission).
    pub struct Entry<'a>(pub &'a str, pub &'a [u8], pub u32);

    pub fn zip_bytes(entries: &[Entry]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for Entry(name, content, mode) in entries {
            let options = SimpleFileOptions::default().unix_permissions(*mode);
            if *mode & FILE_TYPE_MASK == 0o120000 {
                writer
                    .add_symlink(*name, std::str::from_utf8(content).unwrap(), options)
                    .unwrap();
            } else if name.ends_with('/') {
                writer.add_directory(*name, options).unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                writer.write_all(content).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    pub fn write_zip(dir: &Path, entries: &[Entry]) -> PathBuf {
        let path = dir.join("package.zip");
        fs::write(&path, zip_bytes(entries)).unwrap();
        path
    }

    fn unzip_entries(
        entries: &[Entry],
        limits: Limits,
    ) -> (tempfile::TempDir, Result<Unzipped, UnzipError>) {
        let dir = tempfile::tempdir().unwrap();
        let zip = write_zip(dir.path(), entries);
        fs::create_dir(dir.path().join("out")).unwrap();
        let result = unzip(&zip, &dir.path().join("out"), limits);
        (dir, result)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keeps_contents_and_the_executable_bit() {
        let (dir, result) = unzip_entries(
            &[
                Entry("terraform-provider-x_v1.0.0", b"#!/bin/sh\n", 0o755),
                Entry("docs/", b"", 0o755),
                Entry("docs/README.md", b"# x\n", 0o644),
                Entry("./LICENSE", b"MIT\n", 0o600),
            ],
            Limits::default(),
        );
        assert_eq!(
            result.unwrap(),
            Unzipped {
                files: 3,
                bytes: 18
            }
        );
        let out = dir.path().join("out");
        assert_eq!(
            fs::read(out.join("terraform-provider-x_v1.0.0")).unwrap(),
            b"#!/bin/sh\n"
        );
        assert_eq!(mode(&out.join("terraform-provider-x_v1.0.0")), 0o755);
        assert_eq!(mode(&out.join("docs/README.md")), 0o644);
        assert_eq!(fs::read(out.join("LICENSE")).unwrap(), b"MIT\n");
        assert_eq!(mode(&out.join("LICENSE")), 0o644);
    }

    #[test]
    fn refuses_names_that_escape() {
        for name in [
            "../evil",
            "a/../../evil",
            "/etc/evil",
            "a\\..\\evil",
            "a\\b",
        ] {
            let (dir, result) = unzip_entries(&[Entry(name, b"x", 0o644)], Limits::default());
            assert!(
                matches!(result, Err(UnzipError::Escapes { .. })),
                "{name}: {result:?}"
            );
            let parent = fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(parent, 2, "{name}: nothing written beside the output");
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn refuses_symbolic_links() {
        let (dir, result) = unzip_entries(
            &[
                Entry("file", b"x", 0o644),
                Entry("link", b"/etc/passwd", 0o120777),
            ],
            Limits::default(),
        );
        let err = result.unwrap_err();
        assert!(
            matches!(err, UnzipError::NotAFile { ref name } if name == "link"),
            "{err}"
        );
        assert!(fs::symlink_metadata(dir.path().join("out/link")).is_err());
    }

    #[test]
    fn a_bomb_fails_cleanly_at_the_limits() {
        let zeros = vec![0u8; 1 << 20];
        let entries = [Entry("a", &zeros[..], 0o644), Entry("b", &zeros[..], 0o644)];
        let limits = Limits {
            max_bytes: (3 << 20) / 2,
            max_entries: 10,
        };
        let (dir, result) = unzip_entries(&entries, limits);
        assert!(
            matches!(result, Err(UnzipError::TooLarge { limit }) if limit == limits.max_bytes),
            "{result:?}"
        );
        let written = fs::metadata(dir.path().join("out/b")).unwrap().len();
        assert!(
            written <= (1 << 19) + 1,
            "stopped at the limit, wrote {written}"
        );

        let fits = Limits {
            max_bytes: 2 << 20,
            ..limits
        };
        assert!(
            unzip_entries(&entries, fits).1.is_ok(),
            "exactly the limit fits"
        );

        let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let many: Vec<Entry> = names.iter().map(|n| Entry(n, b"", 0o644)).collect();
        let (_dir, result) = unzip_entries(&many, limits);
        assert!(
            matches!(result, Err(UnzipError::TooManyEntries { limit: 10 })),
            "{result:?}"
        );
    }

    #[test]
    fn a_corrupt_zip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("package.zip");
        fs::write(&zip, b"not a zip").unwrap();
        let result = unzip(&zip, dir.path(), Limits::default());
        assert!(matches!(result, Err(UnzipError::Zip(_))), "{result:?}");
    }
}
