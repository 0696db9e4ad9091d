//! Git module sources served from local bare mirrors kept with gitoxide:
//! one mirror per upstream repository, however many module calls and refs
//! use it.

mod archive_route;
mod bounded_git;
pub mod bundle;
mod bundle_sharing;
pub mod commit_archive;
mod freshness;
mod local;
pub mod mirror;
mod mirror_prefix;
mod refcheck;
pub mod refs;
mod repack;
mod repo_id;
mod smart_http;
mod snapshot;

/// For the test that ties the event to the layer that files it.
#[cfg(test)]
pub use freshness::report_fetched;
pub use freshness::GitMirrors;
pub use mirror_prefix::{InvalidMirrorPrefix, MirrorPrefix};
pub use repo_id::RepoId;
