//! The shared tier: a second cache on object storage (S3 and the
//! S3-compatible Garage, MinIO and Ceph; GCS; Azure Blob; a shared file
//! system) that a team or a CI fleet shares. Disk first, then the bucket,
//! then the upstream.
//!
//! The bucket is a cache, never a source of truth: what comes from it is
//! verified by the caller exactly as what comes from the upstream, and the
//! bucket failing never fails a request: to a lookup it is a miss. This
//! module knows the bucket (keys, reads, uploads, health); the store and
//! the protocol handlers decide when to ask it.
//!
//! - `key`: [`ObjectKey`], where each cache thing lives in the bucket.
//! - `open`: the object store client `[shared]` names.
//! - `tier`: [`SharedTier`], reads bounded in size and time, health.
//! - `upload`: background and immediate uploads, multipart when large.
//! - `circuit`: when the bucket is asked, one warning when it fails.
//! - `second_tier`: the tier as the store's second tier and the git
//!   mirrors' bundle shelf.

mod circuit;
mod error;
mod key;
mod open;
mod second_tier;
mod tier;
mod upload;

pub use error::SharedError;
pub use key::ObjectKey;
pub use second_tier::SharedStore;
pub use tier::{Fetched, SharedTier, MAX_UPLOADS};

use crate::store::Bucket;

/// Whether the artifact at `cache_key` (a `/`-separated path below the
/// cache root) belongs in the bucket: see [`Bucket::is_shared`]. Git
/// mirrors travel as bundles ([`ObjectKey::git_bundle`]), not as
/// directories.
pub fn is_shared(cache_key: &str) -> bool {
    Bucket::split(cache_key).is_some_and(|(bucket, _)| bucket.is_shared())
}

#[cfg(test)]
mod tests;
