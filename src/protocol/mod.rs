//! The protocol between tfmirror's own commands and their server: every
//! endpoint under `/_tfmirror/`, its request and answer types, the header
//! names, and the `server.json` record by which a command finds the
//! server. The server's router and handlers and the commands' client
//! (`commands::owner_call`) both use these, so the two sides cannot drift.
//!
//! Terraform's own protocols (registry, network mirror, git smart HTTP)
//! are not here: tfmirror answers them, it does not define them.
//!
//! Layering: `server` and `commands` use this module; `providers` and
//! `git` use the wire types of the endpoints they answer. This module uses
//! nothing above it.

pub mod admin;
pub mod closure;
mod endpoint;
pub mod git_local;
mod health;
pub mod prepare;
mod runs;
mod server_file;

pub use endpoint::{Endpoint, LOCK_FILE_HEADER, OWN_PREFIX};
pub use health::{Health, SharedHealth, SharedState};
pub use runs::{run_url, Ack, Problem, RunCounters, RunId, RunStart, Throughput, RUN_SEGMENT};
pub use server_file::ServerInfo;
