//! Git module sources served from local bare mirrors kept with gitoxide:
//! one mirror per upstream repository, however many module calls and refs
//! use it.

pub mod archive;
mod local;
pub mod mirror;
mod mirror_prefix;
mod refcheck;
pub mod refs;
mod repack;
mod repo_id;
mod service;
mod smart_http;
mod snapshot;
mod tarball;

pub use mirror_prefix::{InvalidMirrorPrefix, MirrorPrefix};
pub use repo_id::RepoId;
pub use service::GitMirrors;
