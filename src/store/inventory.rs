//! What the cache holds, read from the files: they are the truth, the
//! index only adds when and how often each was used.
//!
//! A git mirror or a derived tree (an unpacked provider package) is one
//! artifact however many files it has: its size is the directory's, its
//! age that of its last change unless the index knows better.

use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::index::{Index, Usage};
use super::layout::{self, Kind};

/// One stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// The path below the cache root, `/`-separated: the index key.
    pub key: String,
    pub size: u64,
    /// Stored-at and last-use times in ms since the epoch, and uses.
    pub usage: Usage,
    /// Made from another artifact, and made again on demand: gc takes it
    /// first.
    pub derived: bool,
}

/// What [`walk`] finds: an artifact file, or a directory that is one
/// artifact (a git mirror, a derived tree).
pub(super) enum Found {
    File {
        key: String,
        path: PathBuf,
        metadata: std::fs::Metadata,
    },
    Directory {
        key: String,
        path: PathBuf,
        derived: bool,
    },
}

/// Visits every artifact below `root`, as [`layout::classify`] tells them
/// apart: files, skipping temporary files and directories, what mirror
/// fetches leave beside the mirrors, tfmirror's bookkeeping and the index,
/// and each git mirror and derived tree as one whole.
/// Shared by the inventory and the index rebuild, so both count the same
/// things.
pub(super) fn walk(root: &Path, mut visit: impl FnMut(Found) -> io::Result<()>) -> io::Result<()> {
    layout::walk(root, root, |entry| {
        let layout::Entry {
            path,
            key,
            file_type,
            kind,
        } = entry;
        match kind {
            Kind::Whole { derived, .. } => visit(Found::Directory { key, path, derived })?,
            Kind::Directory => return Ok(true),
            Kind::File(_) if file_type.is_file() => {
                let metadata = std::fs::symlink_metadata(&path)?;
                visit(Found::File {
                    key,
                    path,
                    metadata,
                })?;
            }
            // Not followed: symbolic links and other special files.
            Kind::File(_) => {}
            Kind::Leftover(_) | Kind::Bookkeeping | Kind::Part(_) => {}
        }
        Ok(false)
    })
}

/// Every artifact below `root`, sorted by key; without an index, each
/// counts as stored and last used when its files last changed.
pub fn list(root: &Path, index: Option<&Index>) -> io::Result<Vec<StoredArtifact>> {
    let mut found = Vec::new();
    walk(root, |item| {
        found.push(match item {
            Found::Directory { key, path, derived } => directory(&path, key, derived, index)?,
            Found::File { key, metadata, .. } => StoredArtifact {
                size: metadata.len(),
                usage: recorded(index, &key).unwrap_or_else(|| from_metadata(&metadata)),
                key,
                derived: false,
            },
        });
        Ok(())
    })?;
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

fn directory(
    path: &Path,
    key: String,
    derived: bool,
    index: Option<&Index>,
) -> io::Result<StoredArtifact> {
    let (size, modified_ms) = dir_size(path)?;
    let usage = recorded(index, &key).unwrap_or(Usage {
        size,
        stored_at_ms: modified_ms,
        last_used_ms: modified_ms,
        ..Usage::default()
    });
    Ok(StoredArtifact {
        key,
        size,
        usage,
        derived,
    })
}

fn recorded(index: Option<&Index>, key: &str) -> Option<Usage> {
    index?.usage(key).ok().flatten()
}

/// A file the index does not know (it was lost, or the file was copied
/// in by hand) counts as stored and last used when it was last modified.
fn from_metadata(metadata: &std::fs::Metadata) -> Usage {
    let modified = modified_ms(metadata);
    Usage {
        size: metadata.len(),
        stored_at_ms: modified,
        last_used_ms: modified,
        ..Usage::default()
    }
}

fn modified_ms(metadata: &std::fs::Metadata) -> u64 {
    metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Total size of the files below `dir`, and the newest modification time.
/// A file that goes while it is counted is skipped: a mirror's repack
/// deletes the packs it replaced, and its temporary packs come and go.
fn dir_size(dir: &Path) -> io::Result<(u64, u64)> {
    let (mut size, mut newest) = (0, 0);
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if metadata.is_dir() {
                dirs.push(entry.path());
            } else {
                size += metadata.len();
                newest = newest.max(modified_ms(&metadata));
            }
        }
    }
    Ok((size, newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_mirrors_but_not_bookkeeping() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let index = Index::open(&root.join("index")).unwrap().index;
        std::fs::create_dir_all(root.join("providers/h/ns/t")).unwrap();
        std::fs::write(root.join("providers/h/ns/t/p.zip"), b"zip").unwrap();
        std::fs::write(root.join("providers/h/ns/t/.tmp-x"), b"partial").unwrap();
        std::fs::create_dir_all(root.join("git/h/org/r.git/objects")).unwrap();
        std::fs::write(root.join("git/h/org/r.git/HEAD"), b"ref").unwrap();
        std::fs::write(root.join("git/h/org/r.git/objects/p"), b"objects").unwrap();
        // Left by a killed fetch: the lock file and a half-made clone.
        std::fs::write(root.join("git/h/org/r.git.lock"), b"").unwrap();
        std::fs::create_dir_all(root.join("git/h/org/.s.git.Xy12.tmp/objects")).unwrap();
        std::fs::write(root.join("git/h/org/.s.git.Xy12.tmp/HEAD"), b"ref").unwrap();
        std::fs::write(root.join(layout::SERVER_JSON), b"{}").unwrap();
        let tree = root.join("providers-unpacked/h/ns/t/1.0.0/linux_amd64");
        std::fs::create_dir_all(tree.join("docs")).unwrap();
        std::fs::write(tree.join("provider"), b"binary").unwrap();
        std::fs::write(tree.join("docs/README"), b"doc").unwrap();
        let staging = root.join("providers-unpacked/h/ns/t/1.0.0/.tmp-abc");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("provider"), b"half").unwrap();
        index
            .record_stored("providers/h/ns/t/p.zip", 3, None)
            .unwrap();
        index.record_hit("providers/h/ns/t/p.zip", 3).unwrap();

        let listed = list(root, Some(&index)).unwrap();
        let keys: Vec<_> = listed
            .iter()
            .map(|a| (a.key.as_str(), a.size, a.derived))
            .collect();
        assert_eq!(
            keys,
            [
                ("git/h/org/r.git", 10, false),
                ("providers-unpacked/h/ns/t/1.0.0/linux_amd64", 9, true),
                ("providers/h/ns/t/p.zip", 3, false)
            ]
        );
        assert_eq!(listed[2].usage.hits, 1);
    }
}
