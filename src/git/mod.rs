//! Git module sources served from local bare mirrors kept with gitoxide:
//! one mirror per upstream repository, however many module calls and refs
//! use it.

pub mod archive;
pub mod mirror;
pub mod refs;
mod repo_id;
mod service;
mod smart_http;
mod tarball;

pub use repo_id::{proxy_prefix, RepoId};
pub use service::GitMirrors;
