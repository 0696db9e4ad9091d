//! Replacing a small file outside the cache's artifacts (a lock file, a
//! service unit, `server.json`) so that a reader sees the old contents or
//! the new, never half: a temporary file beside it, flushed to disk,
//! renamed over it, and the directory synced so the rename lasts.
//!
//! Artifacts have their own, streaming and hashing, writer in
//! `store::blob`.

use std::fs::Permissions;
use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `path` in one step, with `permissions` (else the
/// temporary file's private 0600). The temporary name has no suffix of its
/// own, so nothing watching the directory for `*.service`, `*.plist` or
/// `*.hcl` mistakes it for the real file; in the cache directory, its
/// `.tmp-` prefix gets a leftover swept at the next server start.
pub fn replace(path: &Path, contents: &[u8], permissions: Option<Permissions>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(&crate::store::layout::temp_prefix("tfmirror-"))
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    if let Some(permissions) = permissions {
        temp.as_file().set_permissions(permissions)?;
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_with_the_given_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.service");
        std::fs::write(&path, "old").unwrap();
        replace(&path, b"new", Some(Permissions::from_mode(0o644))).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o644);
        replace(&path, b"private", None).unwrap();
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
