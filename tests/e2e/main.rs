//! The end-to-end tests, in one test binary so that the fixtures and the
//! harness are compiled once: one module per area, each the former
//! `tests/<area>.rs`. The tests that measure time, memory or processes
//! under load run apart, in `tests/heavy/`.
//!
//! `tests/fixtures/` and `tests/harness/` stay where they are: the
//! benchmark (`examples/tfmirror-bench`) and the unit tests of
//! `src/providers/signature.rs` use them there too.

#[path = "../fixtures/mod.rs"]
mod fixtures;
#[path = "../harness/mod.rs"]
mod harness;

mod audit;
mod bundle_import;
mod bundles;
mod cache_admin;
mod cli_basics;
mod concurrency;
mod corporate_network;
mod crash_safety;
mod demo;
mod fake_git_upstream;
mod fake_module_registry;
mod fake_registry;
mod fast_path;
mod git;
mod git_local;
mod lifecycle;
mod modules;
mod network_mirror;
mod offline;
mod policy;
mod private_content;
mod providers;
mod reporting;
mod serve;
mod service;
mod shared_push;
mod shared_tier;
mod trust_boundary;
mod trust_import;
mod unpacked_tree;
mod user_routing;
mod warm_lock;
