//! `.terraform.lock.hcl`: reading it, and adding provider hashes to it.
//!
//! `tfmirror lock` fills in the `h1:`/`zh:` hashes of platforms other than
//! the one `terraform init` ran on, so that every CI runner and laptop
//! accepts the same lock file. The file belongs to the user's repository,
//! so an edit only inserts hash strings and leaves every other byte as it
//! was: comments, spacing, block order.
//!
//! - `address`: provider addresses as a lock file must spell them.
//! - `decode`: checks a file the way Terraform's `internal/depsfile` does.
//! - `edit`: inserts hashes where Terraform's own sorted order puts them.
//! - `find`: the lock files (and Terraform files) under some directories.
//! - `write`: puts an edited lock file in place atomically.

mod address;
mod decode;
mod edit;
mod find;
mod write;

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use address::ProviderAddress;
pub use find::{find_lock_files, walk_files};

/// The file name Terraform and OpenTofu use.
pub const LOCK_FILE_NAME: &str = ".terraform.lock.hcl";

/// A parsed lock file, with the text it was parsed from: edits are made to
/// that text, never to a re-rendering of the parsed values.
#[derive(Debug, Clone)]
pub struct LockFile {
    pub path: PathBuf,
    pub text: String,
    pub providers: Vec<LockedProvider>,
}

/// One `provider` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedProvider {
    pub address: ProviderAddress,
    pub version: String,
    pub constraints: Option<String>,
    /// In file order, which is sorted when Terraform wrote them.
    pub hashes: Vec<String>,
    /// The 1-based line of the block's `provider` keyword.
    pub line: usize,
    /// Where new hashes go.
    pub(crate) hashes_at: HashesAt,
}

/// Byte offsets in [`LockFile::text`] that an edit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HashesAt {
    /// The span of each string in the `hashes` list, quotes included.
    List(Vec<Range<usize>>),
    /// No `hashes` argument: one is added at the end of the block.
    Missing {
        /// The block's `{` and `}`.
        open: usize,
        close: usize,
        /// The spans of the block's arguments.
        arguments: Vec<Range<usize>>,
    },
}

/// Why a lock file cannot be used; shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum LockFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl LockFile {
    pub fn read(path: &Path) -> Result<LockFile, LockFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| LockFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        LockFile::parse(path, &text)
    }

    /// `path` is where `text` came from, for error messages.
    pub fn parse(path: &Path, text: &str) -> Result<LockFile, LockFileError> {
        let providers = decode::decode(path, text)?;
        Ok(LockFile {
            path: path.to_owned(),
            text: text.to_owned(),
            providers,
        })
    }

    #[cfg(test)]
    pub fn provider(&self, address: &ProviderAddress) -> Option<&LockedProvider> {
        self.providers.iter().find(|p| &p.address == address)
    }
}
