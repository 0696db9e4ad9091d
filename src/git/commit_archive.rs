//! A commit's whole tree as a tar.gz, the way Terraform unpacks a module
//! archive: paths relative to the repository root, no prefix directory.
//!
//! The output depends on the commit alone: entries come in tree order,
//! every entry and the gzip header carry the commit time, and the
//! repository is opened isolated, so the user's git configuration (global
//! attributes, filter drivers) cannot change the bytes. As with `git
//! archive`, `.gitattributes` in the tree apply (`export-ignore`, `eol`),
//! and submodules are left out.

use std::io::Write;
use std::path::Path;

use gix::ObjectId;

use super::mirror::{chain, GitError};
use super::refs;

/// Fixed so that the same commit always yields the same bytes.
const COMPRESSION_LEVEL: u8 = 6;

/// Writes a deterministic tar.gz of the tree of `commit` to `out`.
pub fn write_tar_gz(mirror: &Path, commit: &ObjectId, out: &mut dyn Write) -> Result<(), GitError> {
    let repo = refs::open(mirror)?;
    let fail = |e: &(dyn std::error::Error + 'static)| {
        GitError::Archive(format!(
            "cannot archive commit {commit} of the mirror at {}: {}",
            mirror.display(),
            chain(e)
        ))
    };
    let commit = repo.find_commit(*commit).map_err(|e| fail(&e))?;
    let mtime = commit
        .time()
        .map_err(|e| fail(&e))?
        .seconds
        .clamp(0, i64::from(u32::MAX));
    let tree = commit.tree_id().map_err(|e| fail(&e))?.detach();
    let (mut stream, _index) = repo.worktree_stream(tree).map_err(|e| fail(&e))?;

    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let options = gix_archive::Options {
        format: gix_archive::Format::TarGz {
            compression_level: Some(COMPRESSION_LEVEL),
        },
        tree_prefix: None,
        modification_time: mtime,
    };
    gix_archive::write_stream(&mut stream, |stream| stream.next_entry(), &mut out, options)
        .map_err(|e| fail(&e))?;
    out.flush().map_err(GitError::io(format!(
        "cannot write the archive of commit {}",
        commit.id
    )))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;

    use super::super::mirror::tests::{mirror_of, Upstream};
    use super::*;

    fn entries(archive: &[u8]) -> BTreeMap<String, (tar::EntryType, u64, String)> {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        let mut out = BTreeMap::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_str().unwrap().to_owned();
            let header = entry.header().clone();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            out.insert(
                path,
                (header.entry_type(), header.mtime().unwrap(), content),
            );
        }
        out
    }

    #[test]
    fn archives_deterministically() {
        let upstream = Upstream::new();
        let (_cache, mirror) = mirror_of(&upstream);
        mirror.update().unwrap();
        let feature = upstream.rev("feature");

        let mut first = Vec::new();
        write_tar_gz(&mirror.dir, &feature, &mut first).unwrap();
        let mut second = Vec::new();
        write_tar_gz(&mirror.dir, &feature, &mut second).unwrap();
        assert_eq!(first, second);

        let files = entries(&first);
        let regular: Vec<_> = files
            .iter()
            .filter(|(_, (kind, ..))| kind.is_file())
            .map(|(path, (_, _, content))| (path.as_str(), content.as_str()))
            .collect();
        assert_eq!(
            regular,
            [
                (".gitmodules", ""),
                ("README.md", "readme\n"),
                ("main.tf", "variable \"a\" {}\n"),
                ("modules/vpc/main.tf", "# vpc\n"),
            ]
        );
        // 2024-01-02T03:04:05Z, the commit time.
        assert!(
            files.values().all(|(_, mtime, _)| *mtime == 1_704_164_645),
            "{files:?}"
        );
        assert!(files
            .keys()
            .all(|p| !p.starts_with('/') && !p.contains("..")));

        // Another commit, another archive.
        let mut v1 = Vec::new();
        write_tar_gz(&mirror.dir, &upstream.rev("v1^{commit}"), &mut v1).unwrap();
        assert!(!entries(&v1).contains_key("README.md"));

        let missing = ObjectId::null(gix::hash::Kind::Sha1);
        let error = write_tar_gz(&mirror.dir, &missing, &mut Vec::new()).unwrap_err();
        assert!(matches!(error, GitError::Archive(_)), "{error:?}");
    }
}
