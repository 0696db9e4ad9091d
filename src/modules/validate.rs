//! Checking a downloaded module archive before it is stored: it must
//! unpack completely (every entry read to the end, so checksums and
//! truncation are caught) and every entry must stay inside the directory
//! it is unpacked into.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path};
use std::rc::Rc;

use crate::config::Limits;
use crate::human_size::human_bytes;

/// The most memory the xz decoder may take. `xz -9` needs 65 MiB to
/// unpack; an archive asking for more is refused rather than let the
/// server's memory grow with what an upstream declares.
const XZ_MEMORY_LIMIT: u64 = 128 << 20;

/// What one archive may unpack to (`max_module_unpacked_size`,
/// `max_module_archive_entries`): a small download can unpack to far more
/// than any module holds.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveCaps {
    pub unpacked_size: u64,
    pub entries: u64,
}

impl From<&Limits> for ArchiveCaps {
    fn from(limits: &Limits) -> ArchiveCaps {
        ArchiveCaps {
            unpacked_size: limits.module_unpacked_size,
            entries: limits.module_archive_entries,
        }
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ArchiveError {
    #[error("the module archive unpacks to more than {} (max_module_unpacked_size)", human_bytes(*.0))]
    TooLarge(u64),
    #[error("the module archive holds more than {0} entries (max_module_archive_entries)")]
    TooManyEntries(u64),
    #[error("not a usable archive: {0}")]
    Unusable(String),
    /// The zip-slip check.
    #[error("not a usable archive: entry {0:?} would be unpacked outside the module directory")]
    EntryOutside(std::path::PathBuf),
    #[error("not a usable archive: link {0:?} points outside the module directory")]
    LinkOutside(std::path::PathBuf),
}

impl From<String> for ArchiveError {
    fn from(reason: String) -> ArchiveError {
        ArchiveError::Unusable(reason)
    }
}

/// Reads the whole archive at `path` as a stream, in bounded memory;
/// returns how many entries it holds. Blocking: run it off the runtime.
pub fn check_archive(path: &Path, extension: &str, caps: ArchiveCaps) -> Result<u64, ArchiveError> {
    let meter = Meter::new(caps.unpacked_size);
    let checked = match extension {
        "zip" => check_zip(open(path)?, caps, &meter),
        _ => check_tar(|| tar_stream(path, extension), caps, &meter),
    };
    // Whatever error the reading reports, passing the cap is its cause.
    match checked {
        Err(_) if meter.exceeded() => Err(ArchiveError::TooLarge(caps.unpacked_size)),
        other => other,
    }
}

fn open(path: &Path) -> Result<File, ArchiveError> {
    File::open(path).map_err(|e| ArchiveError::Unusable(format!("cannot open the download: {e}")))
}

/// The unpacked tar stream of a compressed tar at `path`, opened afresh for
/// each pass over it.
fn tar_stream(path: &Path, extension: &str) -> Result<Box<dyn Read>, ArchiveError> {
    let file = BufReader::new(open(path)?);
    Ok(match extension {
        "tar.gz" | "tgz" => Box::new(flate2::read::GzDecoder::new(file)),
        "tar.bz2" | "tbz2" => Box::new(bzip2::read::BzDecoder::new(file)),
        "tar.xz" | "txz" => Box::new(xz_reader(file)?),
        other => {
            return Err(ArchiveError::Unusable(format!(
                "unknown archive type {other}"
            )))
        }
    })
}

/// liblzma's decoder, unpacking as it is read, with its memory capped.
fn xz_reader(file: BufReader<File>) -> Result<impl Read, ArchiveError> {
    let stream =
        xz2::stream::Stream::new_stream_decoder(XZ_MEMORY_LIMIT, xz2::stream::CONCATENATED)
            .map_err(|e| format!("cannot start the xz decoder: {e}"))?;
    Ok(xz2::read::XzDecoder::new_stream(
        BufReader::new(file),
        stream,
    ))
}

/// Counts unpacked bytes across all the readers it meters, and fails a
/// read once the count passes the cap, so no entry is read far beyond it.
#[derive(Clone)]
struct Meter {
    read: Rc<Cell<u64>>,
    cap: u64,
}

impl Meter {
    fn new(cap: u64) -> Meter {
        Meter {
            read: Rc::new(Cell::new(0)),
            cap,
        }
    }

    fn exceeded(&self) -> bool {
        self.read.get() > self.cap
    }

    fn reader<R: Read>(&self, inner: R) -> Metered<R> {
        Metered {
            inner,
            meter: self.clone(),
        }
    }
}

struct Metered<R> {
    inner: R,
    meter: Meter,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.read.set(self.meter.read.get() + n as u64);
        if self.meter.exceeded() {
            return Err(io::Error::other("over the unpacked-size cap"));
        }
        Ok(n)
    }
}

fn count_entry(count: &mut u64, caps: ArchiveCaps) -> Result<(), ArchiveError> {
    *count += 1;
    if *count > caps.entries {
        return Err(ArchiveError::TooManyEntries(caps.entries));
    }
    Ok(())
}

/// Two passes over the stream. The tar crate reads a long-name or pax
/// header whole into memory, so the first pass, over raw entries, refuses
/// one larger than [`MAX_TAR_METADATA`] and meters the whole stream
/// (headers and padding too) against the unpacked-size cap; the second
/// checks each entry as it would be unpacked.
fn check_tar(
    open: impl Fn() -> Result<Box<dyn Read>, ArchiveError>,
    caps: ArchiveCaps,
    meter: &Meter,
) -> Result<u64, ArchiveError> {
    check_tar_metadata(meter.reader(open()?))?;
    check_tar_entries(open()?, caps)
}

/// Long names of more than 4 KiB are refused by most file systems; pax
/// records beyond that are not what a module needs either.
const MAX_TAR_METADATA: u64 = 1 << 20;

fn check_tar_metadata(reader: impl Read) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a valid tar archive: {e}"))?;
    for entry in entries.raw(true) {
        let entry = entry.map_err(|e| format!("not a valid tar archive: {e}"))?;
        let kind = entry.header().entry_type();
        let metadata = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if metadata && entry.size() > MAX_TAR_METADATA {
            return Err(ArchiveError::Unusable(format!(
                "a tar name or pax header of {} bytes (at most {MAX_TAR_METADATA})",
                entry.size()
            )));
        }
    }
    Ok(())
}

fn check_tar_entries(reader: impl Read, caps: ArchiveCaps) -> Result<u64, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut count = 0;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a valid tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a valid tar archive: {e}"))?;
        count_entry(&mut count, caps)?;
        let name = entry
            .path()
            .map_err(|e| format!("bad entry name: {e}"))?
            .into_owned();
        check_entry_path(&name)?;
        if let Some(target) = entry
            .link_name()
            .map_err(|e| format!("bad link in {}: {e}", name.display()))?
        {
            check_link_target(&name, &target)?;
        }
        io::copy(&mut entry, &mut io::sink())
            .map_err(|e| format!("entry {} is cut short: {e}", name.display()))?;
    }
    Ok(count)
}

/// A zip's entries are counted from its directory before any is read.
fn check_zip(file: File, caps: ArchiveCaps, meter: &Meter) -> Result<u64, ArchiveError> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a valid zip archive: {e}"))?;
    let count = archive.len() as u64;
    if count > caps.entries {
        return Err(ArchiveError::TooManyEntries(caps.entries));
    }
    for index in 0..archive.len() {
        let entry = archive
            .by_index(index)
            .map_err(|e| format!("not a valid zip archive: {e}"))?;
        let name = entry.name().to_owned();
        check_entry_path(Path::new(&name))?;
        io::copy(&mut meter.reader(entry), &mut io::sink())
            .map_err(|e| format!("entry {name} is damaged: {e}"))?;
    }
    Ok(count)
}

/// Relative, without `..`: the zip-slip check.
fn check_entry_path(name: &Path) -> Result<(), ArchiveError> {
    let safe = name
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if safe && !name.as_os_str().is_empty() {
        Ok(())
    } else {
        Err(ArchiveError::EntryOutside(name.to_owned()))
    }
}

/// A link may point anywhere inside the archive, never out of it.
fn check_link_target(name: &Path, target: &Path) -> Result<(), ArchiveError> {
    let mut depth = name.components().count().saturating_sub(1) as isize;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth -= 1,
            _ => depth = -1,
        }
        if depth < 0 {
            return Err(ArchiveError::LinkOutside(name.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &plain_tar(entries)).unwrap();
        gz.finish().unwrap()
    }

    /// A plain tar of `entries`.
    fn plain_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    const GENEROUS: ArchiveCaps = ArchiveCaps {
        unpacked_size: 1 << 30,
        entries: 1000,
    };

    fn check_within(bytes: &[u8], extension: &str, caps: ArchiveCaps) -> Result<u64, ArchiveError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        check_archive(file.path(), extension, caps)
    }

    fn check(bytes: &[u8], extension: &str) -> Result<u64, ArchiveError> {
        check_within(bytes, extension, GENEROUS)
    }

    #[test]
    fn refuses_an_oversized_long_name_before_reading_it() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.as_mut_bytes()[..13].copy_from_slice(b"././@LongLink");
        header.set_entry_type(tar::EntryType::GNULongName);
        let long = vec![b'a'; 2 << 20];
        header.set_size(long.len() as u64);
        header.set_cksum();
        builder.append(&header, &long[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let tar = [
            builder.into_inner().unwrap(),
            plain_tar(&[("main.tf", b"x")]),
        ]
        .concat();
        io::Write::write_all(&mut gz, &tar).unwrap();
        let err = check(&gz.finish().unwrap(), "tar.gz")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a tar name or pax header of 2097152 bytes"),
            "{err}"
        );
    }

    #[test]
    fn refuses_an_archive_over_its_caps_naming_the_key() {
        let bytes = tar_gz(&[("a.tf", &[0u8; 10_000]), ("b.tf", b"y"), ("c.tf", b"z")]);
        let small = ArchiveCaps {
            unpacked_size: 5_000,
            ..GENEROUS
        };
        let err = check_within(&bytes, "tar.gz", small).unwrap_err();
        assert_eq!(err, ArchiveError::TooLarge(5_000));
        assert_eq!(
            err.to_string(),
            "the module archive unpacks to more than 5.0 kB (max_module_unpacked_size)"
        );
        let few = ArchiveCaps {
            entries: 2,
            ..GENEROUS
        };
        assert_eq!(
            check_within(&bytes, "tgz", few),
            Err(ArchiveError::TooManyEntries(2))
        );
    }

    #[test]
    fn unpacks_xz_as_a_stream() {
        let tar = plain_tar(&[("main.tf", &[1u8; 300_000])]);
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        io::Write::write_all(&mut xz, &tar).unwrap();
        let xz = xz.finish().unwrap();
        assert_eq!(check(&xz, "tar.xz"), Ok(1));
        let small = ArchiveCaps {
            unpacked_size: 100_000,
            ..GENEROUS
        };
        assert_eq!(
            check_within(&xz, "txz", small),
            Err(ArchiveError::TooLarge(100_000))
        );
    }

    #[test]
    fn accepts_a_whole_archive() {
        let bytes = tar_gz(&[("main.tf", b"x"), ("modules/sub/main.tf", b"y")]);
        assert_eq!(check(&bytes, "tar.gz"), Ok(2));
    }

    #[test]
    fn refuses_escapes_truncation_and_garbage() {
        let escape = tar_gz(&[("../escape.tf", b"x")]);
        let err = check(&escape, "tgz").unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let whole = tar_gz(&[("main.tf", &[7u8; 50_000])]);
        assert!(check(&whole[..whole.len() / 2], "tar.gz").is_err());
        assert!(check(b"this is not an archive", "zip").is_err());
        assert!(check(b"this is not an archive", "tar.gz").is_err());
    }

    #[test]
    fn links_stay_inside() {
        assert!(check_link_target(Path::new("a/link"), Path::new("../b")).is_ok());
        assert!(check_link_target(Path::new("link"), Path::new("../b")).is_err());
        assert!(check_link_target(Path::new("link"), Path::new("/etc/passwd")).is_err());
    }
}
