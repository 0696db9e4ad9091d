//! Rebuilding usage records from the artifact files.
//!
//! Runs when the index is new or was lost. Hashes are recomputed because
//! they are what later checks compare against; the cost is one read of the
//! cache, paid once.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::index::Index;
use super::inventory::Found;

/// Records every artifact file below `root`, as the inventory finds them
/// (git mirrors and derived trees are directories and have no record:
/// their files give their age; the layout's bookkeeping files are not
/// artifacts).
/// Returns how many were recorded.
pub fn rebuild(root: &Path, index: &Index) -> io::Result<usize> {
    let mut count = 0;
    super::inventory::walk(root, |found| {
        let Found::File { key, path, .. } = found else {
            return Ok(());
        };
        let (size, sha256) = hash_file(&path)?;
        if let Err(e) = index.record_stored(&key, size, Some(sha256)) {
            tracing::warn!("cannot re-index {key}: {e}");
        }
        count += 1;
        Ok(())
    })?;
    Ok(count)
}

pub(super) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_artifacts_and_skips_bookkeeping() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("providers/h/ns/t")).unwrap();
        std::fs::write(root.join("providers/h/ns/t/p.zip"), b"zip").unwrap();
        std::fs::write(root.join("providers/h/ns/t/.tmp-x"), b"partial").unwrap();
        std::fs::write(root.join(crate::store::layout::SERVER_JSON), b"{}").unwrap();
        std::fs::write(root.join(crate::store::layout::TERRAFORM_RC), b"host {}").unwrap();
        std::fs::create_dir_all(root.join("git/h/r.git/objects")).unwrap();
        std::fs::write(root.join("git/h/r.git/objects/pack"), b"pack").unwrap();
        let index = Index::open(&root.join("index")).unwrap().index;
        assert_eq!(rebuild(root, &index).unwrap(), 1);
        let usage = index.usage("providers/h/ns/t/p.zip").unwrap().unwrap();
        assert_eq!(usage.size, 3);
    }
}
