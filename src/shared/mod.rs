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

// The lookups, background uploads, document and bundle keys are for the
// store's `get_or_produce` and the git bundles (issue 18), wired in
// separately; until then only `cache push` and `status` use the tier.
#![allow(dead_code, unused_imports)]

mod circuit;
mod error;
mod key;
mod open;
mod tier;
mod upload;

pub use error::SharedError;
pub use key::{KeyError, ObjectKey};
pub use tier::{Fetched, SharedTier, MAX_UPLOADS};

use crate::store::Bucket;

/// The cache buckets whose artifacts are shared: immutable by name and
/// verified before they are stored. Derived trees are made again from
/// these, snapshots are per run, and git mirrors travel as bundles
/// ([`ObjectKey::git_bundle`]), not as directories.
pub const SHARED_BUCKETS: [Bucket; 4] = [
    Bucket::Providers,
    Bucket::ProviderChecksums,
    Bucket::ModuleArchives,
    Bucket::GitArchives,
];

/// Whether the artifact at `cache_key` (a `/`-separated path below the
/// cache root) belongs in the bucket.
pub fn is_shared(cache_key: &str) -> bool {
    Bucket::split(cache_key).is_some_and(|(bucket, _)| SHARED_BUCKETS.contains(&bucket))
}

#[cfg(test)]
mod tests;
