//! The end-to-end tests that measure the server under load: its time
//! budgets, memory, descriptors and git processes. They were each a test
//! binary of their own; they stay apart from the others here, in a
//! binary of their own.
//!
//! The other end-to-end tests are in `tests/e2e/`.

#[path = "../fixtures/mod.rs"]
mod fixtures;
#[path = "../harness/mod.rs"]
mod harness;

mod bounded_downloads;
mod git_bounds;
mod git_crash;
mod git_repack;
mod index_loss;
mod server_bounds;
mod upstream_down;
