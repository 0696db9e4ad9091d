//! When mirrors meet the [`BundleShelf`]: a new mirror is seeded from the
//! shelf's bundle, and a mirror whose refs changed offers the shelf a
//! fresh bundle, at most once per [`SHARE_INTERVAL`].
//!
//! A bundle holds the whole repository, so sharing one after every fetch
//! of a busy mirror would upload it again and again. The first change of
//! a mirror in this process is shared at once (a new mirror is the one
//! other runners most likely lack); a change within the interval after a
//! bundle was made is shared when the interval ends, by one bundle that
//! also covers every change made meanwhile. A bundle a little behind costs
//! a seeded runner only a slightly bigger fetch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use super::bundle::{self, BundleShelf, SeedError};
use super::mirror::{GitError, Mirror, Updated};
use super::repo_id::RepoId;
use crate::metrics::GIT_BUNDLES;
use crate::store::layout;

/// At most one bundle of a mirror per this long.
pub const SHARE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Bundles made at once. Each is a `git pack-objects` reading a whole
/// mirror; an init that creates fifty mirrors should not start fifty
/// beside the clients it serves.
const BUNDLES_AT_ONCE: usize = 2;

/// A shelf and the bookkeeping of what was offered to it.
pub struct BundleSharing {
    shelf: Arc<dyn BundleShelf>,
    debounce: Debounce,
    making: Semaphore,
}

impl BundleSharing {
    pub fn new(shelf: Arc<dyn BundleShelf>) -> BundleSharing {
        BundleSharing {
            shelf,
            debounce: Debounce::new(SHARE_INTERVAL),
            making: Semaphore::new(BUNDLES_AT_ONCE),
        }
    }

    /// Seeds `staging`, a new bare repository for `repo`, from the shelf:
    /// the [`super::mirror::Seed`] of a new mirror. Blocks (see
    /// [`bundle::seed_from_shelf`]). A failure is logged here, once, and
    /// the mirror is cloned from the upstream instead.
    pub fn seed(&self, runtime: &Handle, repo: &RepoId, staging: &Path) -> bool {
        match bundle::seed_from_shelf(&*self.shelf, runtime, repo, staging) {
            Ok(()) => {
                tracing::info!("seeded the new mirror of {repo} from the shared bundle");
                true
            }
            Err(SeedError::Missing) => {
                tracing::debug!("no shared bundle of {repo}; cloning from the upstream");
                false
            }
            Err(e) => {
                tracing::warn!(
                    "cannot seed the mirror of {repo} from the shared bundle, cloning from \
                     the upstream: {e}"
                );
                GIT_BUNDLES.with_label_values(&["seed_failed"]).inc();
                false
            }
        }
    }

    /// After a successful update of `mirror`: counts a mirror seeded from
    /// the shelf, and if the update changed a ref, makes a fresh bundle in
    /// the background and offers it to the shelf, now or when
    /// [`SHARE_INTERVAL`] since the last one ends. Returns at once; called
    /// from the async runtime.
    pub fn after_update(self: &Arc<Self>, repo: &RepoId, mirror: &Mirror, updated: Updated) {
        if updated.seeded {
            GIT_BUNDLES.with_label_values(&["seeded"]).inc();
        }
        if !updated.changed {
            return;
        }
        let key = repo.upstream_url();
        let Some(delay) = self.debounce.schedule(&key, Instant::now()) else {
            return;
        };
        let this = self.clone();
        let repo = repo.clone();
        let mirror = mirror.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _turn = this.making.acquire().await.expect("never closed");
            this.debounce.started(&key, Instant::now());
            let worker = mirror.clone();
            let made = tokio::task::spawn_blocking(move || bundle_beside(&worker)).await;
            match made {
                Ok(Ok(Some(bundle))) => {
                    GIT_BUNDLES.with_label_values(&["shared"]).inc();
                    this.shelf.offer(&repo, bundle);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!("cannot share a bundle of {repo}: {e}"),
                Err(e) => tracing::warn!("cannot share a bundle of {repo}: {e}"),
            }
        });
    }
}

/// A bundle of `mirror` in a temporary file beside it (swept at the next
/// start if tfmirror dies before the shelf takes it); `None` when the
/// mirror has no ref. Blocks.
fn bundle_beside(mirror: &Mirror) -> Result<Option<PathBuf>, GitError> {
    if !bundle::has_refs(mirror)? {
        return Ok(None);
    }
    let (Some(parent), Some(name)) = (mirror.dir.parent(), mirror.dir.file_name()) else {
        return Err(GitError::Bundle(format!(
            "{} is not a mirror's directory",
            mirror.dir.display()
        )));
    };
    let temp = tempfile::Builder::new()
        .prefix(&layout::temp_prefix(&format!(
            "{}.",
            name.to_string_lossy()
        )))
        .suffix(".bundle")
        .tempfile_in(parent)
        .map_err(GitError::io(format!(
            "cannot create a file in {}",
            parent.display()
        )))?
        .into_temp_path();
    bundle::create_bundle(mirror, &temp)?;
    let kept = temp.keep().map_err(|e| GitError::Io {
        context: "cannot keep the new bundle".to_owned(),
        source: e.error,
    })?;
    Ok(Some(kept))
}

/// When each mirror's bundle was last made, and whether one is waiting.
struct Debounce {
    interval: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Default)]
struct Slot {
    last: Option<Instant>,
    pending: bool,
}

impl Debounce {
    fn new(interval: Duration) -> Debounce {
        Debounce {
            interval,
            slots: Mutex::default(),
        }
    }

    /// A change of `key` at `now`: how long to wait before making its
    /// bundle, or `None` when one is already waiting (it is made later, so
    /// it covers this change too).
    fn schedule(&self, key: &str, now: Instant) -> Option<Duration> {
        let mut slots = self.slots.lock().expect("debounce poisoned");
        let slot = slots.entry(key.to_owned()).or_default();
        if slot.pending {
            return None;
        }
        slot.pending = true;
        Some(slot.last.map_or(Duration::ZERO, |last| {
            (last + self.interval).saturating_duration_since(now)
        }))
    }

    /// The waiting bundle of `key` is being made, at `now`.
    fn started(&self, key: &str, now: Instant) {
        let mut slots = self.slots.lock().expect("debounce poisoned");
        let slot = slots.entry(key.to_owned()).or_default();
        slot.last = Some(now);
        slot.pending = false;
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::bundle::tests::{repo_id, DirShelf};
    use super::super::mirror::tests::{git, mirror_of, Upstream};
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn one_bundle_per_interval_and_one_waiting_at_most() {
        let debounce = Debounce::new(10 * MINUTE);
        let start = Instant::now();
        assert_eq!(debounce.schedule("a", start), Some(Duration::ZERO));
        assert_eq!(debounce.schedule("a", start), None, "one is waiting");
        assert_eq!(debounce.schedule("b", start), Some(Duration::ZERO));
        debounce.started("a", start);
        assert_eq!(debounce.schedule("a", start + MINUTE), Some(9 * MINUTE));
        assert_eq!(debounce.schedule("a", start + 2 * MINUTE), None);
        debounce.started("a", start + 10 * MINUTE);
        assert_eq!(
            debounce.schedule("a", start + 25 * MINUTE),
            Some(Duration::ZERO)
        );
    }

    /// Waits (boundedly) until the shelf holds `count` offered bundles.
    async fn offers(shelf: &DirShelf, count: usize) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let offered = shelf.offered.lock().unwrap().clone();
            if offered.len() >= count || Instant::now() > deadline {
                return offered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn a_changed_mirror_offers_one_bundle_per_interval() {
        let upstream = Upstream::new();
        let (_cache, mirror) = mirror_of(&upstream);
        let shelf = DirShelf::new();
        let sharing = Arc::new(BundleSharing::new(shelf.clone()));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let repo = repo_id();

        let created = mirror.update().unwrap();
        assert!(created.changed);
        let unchanged = mirror.update().unwrap();
        assert!(!unchanged.changed, "a fetch of nothing new changes nothing");
        runtime.block_on(async { sharing.after_update(&repo, &mirror, unchanged) });
        std::thread::sleep(Duration::from_millis(300));
        assert!(shelf.offered.lock().unwrap().is_empty());

        git(
            &upstream.dir,
            &["commit", "-q", "--allow-empty", "-m", "four"],
        );
        let changed = mirror.update().unwrap();
        assert!(changed.changed);
        let offered = runtime.block_on(async {
            sharing.after_update(&repo, &mirror, changed);
            offers(&shelf, 1).await
        });
        assert_eq!(offered.len(), 1);
        let bundle = offered[0].to_str().unwrap().to_owned();
        assert_eq!(offered[0].parent(), mirror.dir.parent());
        let empty = tempfile::tempdir().unwrap();
        git(empty.path(), &["init", "-q", "--bare"]);
        git(empty.path(), &["bundle", "verify", "--quiet", &bundle]);
        let heads = git(empty.path(), &["bundle", "list-heads", &bundle]);
        let main = format!("{} refs/heads/main", upstream.rev("main"));
        assert!(heads.lines().any(|l| l == main), "{heads}");
        fs::remove_file(&offered[0]).unwrap();

        // Within the interval, another change is not shared yet.
        git(
            &upstream.dir,
            &["commit", "-q", "--allow-empty", "-m", "five"],
        );
        let changed = mirror.update().unwrap();
        assert!(changed.changed);
        let offered = runtime.block_on(async {
            sharing.after_update(&repo, &mirror, changed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            shelf.offered.lock().unwrap().len()
        });
        assert_eq!(offered, 1, "no second bundle within {SHARE_INTERVAL:?}");
    }
}
