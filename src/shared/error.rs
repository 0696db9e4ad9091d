//! What can go wrong with the shared tier. None of it fails a client's
//! request: to a lookup, any of these is a miss.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The `[shared]` settings could not make a client (e.g. a URL the
    /// store's builder refuses); names the key.
    #[error("[shared] url = {url:?}: {source}")]
    Open {
        url: String,
        source: object_store::Error,
    },
    /// The bucket answered with an error, or could not be reached.
    #[error("{0}")]
    Store(#[from] object_store::Error),
    #[error("no answer within {0:?} ([shared] timeout)")]
    Timeout(Duration),
    #[error("the transfer stalled: no data for {0:?} ([shared] timeout)")]
    Stalled(Duration),
    #[error("the object ended after {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The tier failed recently; the bucket is left alone for a while.
    #[error("skipped: the shared tier is failing ({0})")]
    Skipped(String),
    #[error("uploads are off ([shared] upload = false)")]
    UploadDisabled,
    /// A git mirror could not be made into a bundle to push.
    #[error("cannot bundle the mirror: {0}")]
    Bundle(String),
}
