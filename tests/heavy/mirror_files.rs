//! What the git tests see of a mirror on disk (its directory and packs),
//! and how they wait for it to change.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::World;

/// The mirror's directory in the cache; panics when there is none yet.
pub fn mirror_dir(world: &World) -> PathBuf {
    let stamp = world
        .cache_files()
        .into_iter()
        .find(|f| f.starts_with("git/") && f.ends_with(".git/tfmirror-fetched"))
        .expect("the mirror exists");
    world.cache_dir().join(stamp).parent().unwrap().to_owned()
}

pub fn pack_dir_names(mirror: &Path) -> Vec<String> {
    std::fs::read_dir(mirror.join("objects/pack"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The mirror's packs, git's temporary ones left out.
pub fn packs(mirror: &Path) -> usize {
    pack_dir_names(mirror)
        .iter()
        .filter(|n| n.starts_with("pack-") && n.ends_with(".pack"))
        .count()
}

/// Polls `done` every couple of milliseconds until it holds, for at most
/// `patience`; panics with `what` past it. Returns how long it took.
pub fn wait_for(patience: Duration, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < patience,
            "waited {patience:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}
