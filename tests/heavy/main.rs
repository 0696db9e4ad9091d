//! The end-to-end tests that measure the server under load: its time
//! budgets, memory, descriptors and git processes. They were each a test
//! binary of their own, run one after another, so the load of one never
//! met the budget of another. Here each test first waits for its turn
//! ([`file_turn`]): the tests of one module may still run together, as
//! they did in their own binary, but never with another module's.
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
mod mirror_files;
mod pusher;
mod server_bounds;
mod upstream_down;

use std::sync::{Condvar, Mutex, MutexGuard};

/// The module whose tests may run now, and how many of them are running.
static RUNNING: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
static TURN_ENDED: Condvar = Condvar::new();

fn running() -> MutexGuard<'static, (Option<&'static str>, usize)> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A test's turn, held until the test ends (also by a panic).
pub struct FileTurn;

/// Waits until no test of another module runs; call as
/// `let _turn = crate::file_turn(module_path!());` first in a test.
pub fn file_turn(module: &'static str) -> FileTurn {
    let mut state = running();
    while state.0.is_some_and(|current| current != module) {
        state = TURN_ENDED
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    *state = (Some(module), state.1 + 1);
    FileTurn
}

impl Drop for FileTurn {
    fn drop(&mut self) {
        let mut state = running();
        state.1 -= 1;
        if state.1 == 0 {
            state.0 = None;
            TURN_ENDED.notify_all();
        }
    }
}
