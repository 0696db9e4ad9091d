//! Writing a bundle: the entries sorted by path, hashed, listed in the
//! manifest, then stored as tar entries with fixed headers, all through
//! zstd at a fixed level, so the same entries give the same bytes (see
//! `format`). Blocking: callers on the runtime use `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::format::{self, Entry, EntryKind, Manifest};

/// One entry to write, and where its bytes are.
#[derive(Debug, Clone)]
pub struct Source {
    pub kind: EntryKind,
    pub name: String,
    pub path: String,
    pub content: Content,
}

impl Source {
    /// Its size as it is now (0 for a file that cannot be read, which
    /// writing reports).
    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File(file) => std::fs::metadata(file).map_or(0, |m| m.len()),
            Content::Bytes(bytes) => bytes.len() as u64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A file, read twice (hashed, then copied): it must not change
    /// meanwhile, as the cache's immutable artifacts do not.
    File(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Path(#[from] format::PathError),
    #[error("two different entries for {0}")]
    Conflict(String),
    #[error("a bundle holds at most {max} entries; this one would hold {count}")]
    TooMany { count: usize, max: usize },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} changed while the bundle was written")]
    Changed { path: String },
    #[error("cannot write the bundle: {0}")]
    Write(#[source] io::Error),
}

/// What a bundle holds besides its entries.
#[derive(Debug, Clone)]
pub struct Header {
    pub created: String,
    pub platforms: Vec<String>,
}

/// The entries by path: one per path, checked. The same path twice with
/// the same content is one entry (two runs touched it).
pub fn collect(sources: Vec<Source>) -> Result<BTreeMap<String, Source>, WriteError> {
    let mut by_path = BTreeMap::new();
    for source in sources {
        format::check_path(&source.path)?;
        match by_path.get(&source.path) {
            Some(Source { content, .. }) if *content != source.content => {
                return Err(WriteError::Conflict(source.path));
            }
            Some(_) => {}
            None => {
                by_path.insert(source.path.clone(), source);
            }
        }
    }
    if by_path.len() > format::MAX_ENTRIES {
        return Err(WriteError::TooMany {
            count: by_path.len(),
            max: format::MAX_ENTRIES,
        });
    }
    Ok(by_path)
}

/// Writes the bundle of `sources` to `out`; `progress` hears of every
/// chunk of entry bytes copied. Returns its manifest.
pub fn write(
    out: impl Write,
    header: Header,
    sources: Vec<Source>,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, WriteError> {
    let sources = collect(sources)?;
    let mut entries = Vec::with_capacity(sources.len());
    for source in sources.values() {
        let (size, sha256) = measure(source)?;
        entries.push(Entry {
            kind: source.kind,
            name: source.name.clone(),
            path: source.path.clone(),
            size,
            sha256,
        });
    }
    let mut platforms = header.platforms;
    platforms.sort();
    platforms.dedup();
    let manifest = Manifest {
        format: format::FORMAT,
        tfmirror_version: env!("CARGO_PKG_VERSION").to_owned(),
        created: header.created,
        platforms,
        entries,
    };
    let encoder = zstd::Encoder::new(out, format::ZSTD_LEVEL).map_err(WriteError::Write)?;
    let mut tar = tar::Builder::new(encoder);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    append(
        &mut tar,
        format::MANIFEST_PATH,
        json.len() as u64,
        &json[..],
    )
    .map_err(WriteError::Write)?;
    for (source, entry) in sources.values().zip(&manifest.entries) {
        let reader = open(source)?;
        let mut counted = Counting {
            inner: reader,
            hash: Sha256::new(),
            progress: &mut *progress,
        };
        append(&mut tar, &entry.path, entry.size, &mut counted).map_err(|e| {
            match e.kind() {
                // tar reports a file shorter than its header this way.
                io::ErrorKind::UnexpectedEof => WriteError::Changed {
                    path: entry.path.clone(),
                },
                _ => WriteError::Write(e),
            }
        })?;
        if hex::encode(counted.hash.finalize()) != entry.sha256 {
            return Err(WriteError::Changed {
                path: entry.path.clone(),
            });
        }
    }
    let encoder = tar.into_inner().map_err(WriteError::Write)?;
    let mut out = encoder.finish().map_err(WriteError::Write)?;
    out.flush().map_err(WriteError::Write)?;
    Ok(manifest)
}

fn append(
    tar: &mut tar::Builder<impl Write>,
    path: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(format::ENTRY_MODE);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    tar.append_data(&mut header, path, data)
}

fn open(source: &Source) -> Result<Box<dyn Read + '_>, WriteError> {
    Ok(match &source.content {
        Content::File(file) => Box::new(io::BufReader::new(File::open(file).map_err(|e| {
            WriteError::Read {
                path: file.display().to_string(),
                source: e,
            }
        })?)),
        Content::Bytes(bytes) => Box::new(&bytes[..]),
    })
}

fn measure(source: &Source) -> Result<(u64, String), WriteError> {
    let mut reader = open(source)?;
    let mut hash = Sha256::new();
    let size = io::copy(&mut reader, &mut hash).map_err(|e| WriteError::Read {
        path: source.path.clone(),
        source: e,
    })?;
    Ok((size, hex::encode(hash.finalize())))
}

/// A reader that hashes what passes and reports its size.
struct Counting<'a, R> {
    inner: R,
    hash: Sha256,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        (self.progress)(n as u64);
        Ok(n)
    }
}
