//! Checking a downloaded module archive before it is stored: it must
//! unpack completely (every entry read to the end, so checksums and
//! truncation are caught) and every entry must stay inside the directory
//! it is unpacked into.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path};

/// Reads the whole archive at `path`; returns how many entries it holds.
pub fn check_archive(path: &Path, extension: &str) -> Result<usize, String> {
    let file = File::open(path).map_err(|e| format!("cannot open the download: {e}"))?;
    match extension {
        "zip" => check_zip(file),
        "tar.gz" | "tgz" => check_tar(flate2::read::GzDecoder::new(BufReader::new(file))),
        "tar.bz2" | "tbz2" => check_tar(bzip2::read::BzDecoder::new(BufReader::new(file))),
        "tar.xz" | "txz" => {
            let mut tar = Vec::new();
            lzma_rs::xz_decompress(&mut BufReader::new(file), &mut tar)
                .map_err(|e| format!("not a valid xz file: {e}"))?;
            check_tar(io::Cursor::new(tar))
        }
        other => Err(format!("unknown archive type {other}")),
    }
}

fn check_tar(reader: impl Read) -> Result<usize, String> {
    let mut archive = tar::Archive::new(reader);
    let mut count = 0;
    let entries = archive
        .entries()
        .map_err(|e| format!("not a valid tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a valid tar archive: {e}"))?;
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
        count += 1;
    }
    Ok(count)
}

fn check_zip(file: File) -> Result<usize, String> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a valid zip archive: {e}"))?;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| format!("not a valid zip archive: {e}"))?;
        let name = entry.name().to_owned();
        check_entry_path(Path::new(&name))?;
        io::copy(&mut entry, &mut io::sink())
            .map_err(|e| format!("entry {name} is damaged: {e}"))?;
    }
    Ok(archive.len())
}

/// Relative, without `..`: the zip-slip check.
fn check_entry_path(name: &Path) -> Result<(), String> {
    let safe = name
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if safe && !name.as_os_str().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "entry {:?} would be unpacked outside the module directory",
            name
        ))
    }
}

/// A link may point anywhere inside the archive, never out of it.
fn check_link_target(name: &Path, target: &Path) -> Result<(), String> {
    let mut depth = name.components().count().saturating_sub(1) as isize;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth -= 1,
            _ => depth = -1,
        }
        if depth < 0 {
            return Err(format!(
                "link {:?} points outside the module directory",
                name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn check(bytes: &[u8], extension: &str) -> Result<usize, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        check_archive(file.path(), extension)
    }

    #[test]
    fn accepts_a_whole_archive() {
        let bytes = tar_gz(&[("main.tf", b"x"), ("modules/sub/main.tf", b"y")]);
        assert_eq!(check(&bytes, "tar.gz"), Ok(2));
    }

    #[test]
    fn refuses_escapes_truncation_and_garbage() {
        let escape = tar_gz(&[("../escape.tf", b"x")]);
        assert!(check(&escape, "tgz").unwrap_err().contains("outside"));
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
