//! Writing an edited lock file back, atomically.

use std::collections::BTreeMap;
use std::path::Path;

use super::{LockFile, LockFileError, ProviderAddress};

impl LockFile {
    /// Adds `additions` to the file on disk (see [`LockFile::with_added_hashes`])
    /// and returns whether anything changed. The file is replaced at once:
    /// a temporary file in the same directory, with the same permissions,
    /// flushed to disk and renamed over it, so an interrupted run leaves
    /// the old lock file, never half of the new one. A symlink is followed
    /// and stays a symlink.
    pub fn add_hashes(
        &self,
        additions: &BTreeMap<ProviderAddress, Vec<String>>,
    ) -> Result<bool, LockFileError> {
        let text = self.with_added_hashes(additions);
        if text == self.text {
            return Ok(false);
        }
        replace_file(&self.path, &text).map_err(|source| LockFileError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(true)
    }
}

fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let permissions = std::fs::metadata(&target)?.permissions();
    crate::replace_file::replace(&target, text.as_bytes(), Some(permissions))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "provider \"registry.terraform.io/hashicorp/null\" {\n  version = \"3.2.0\"\n  hashes = [\n    \"zh:00\",\n  ]\n}\n";

    #[test]
    fn replacing_keeps_permissions_and_symlinks_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".terraform.lock.hcl");
        std::fs::write(&path, LOCK).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.hcl");
        std::os::unix::fs::symlink(&path, &link).unwrap();

        let lock = LockFile::read(&link).unwrap();
        let address = lock.providers[0].address.clone();
        let additions = BTreeMap::from([(address, vec!["h1:AA=".to_owned()])]);
        assert!(lock.add_hashes(&additions).unwrap());

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("    \"h1:AA=\",\n    \"zh:00\","), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        let again = LockFile::read(&path).unwrap();
        assert!(!again.add_hashes(&additions).unwrap(), "nothing new to add");
    }
}
