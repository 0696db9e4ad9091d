//! One worker per key: whoever holds a key's lock fetches, the others wait
//! and then find the result on disk, or the reason the fetch failed: a
//! waiter given that reason answers with it rather than trying the same
//! failing fetch again, so a stalled or oversized download costs every
//! waiter one timeout, not one each in turn.
//!
//! [`OncePerKey`] is the other shape of single flight: nobody waits for a
//! turn; whoever comes while a key's work runs joins it (or, for a
//! background refresh, leaves it be).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// What a key's lock holds: why the last holder's work failed, if it did,
/// kept for those that waited on it until nobody waits any more.
type EarlierFailure = Option<Arc<str>>;

#[derive(Clone, Default)]
pub struct KeyedLocks {
    locks: Arc<Mutex<HashMap<String, Arc<AsyncMutex<EarlierFailure>>>>>,
}

/// Held while working on a key; releasing the last holder forgets the key,
/// so the map only holds keys that are being worked on.
pub struct KeyGuard {
    key: String,
    locks: KeyedLocks,
    guard: Option<OwnedMutexGuard<EarlierFailure>>,
}

impl KeyGuard {
    /// Why an earlier holder's work failed while this one waited for it.
    pub fn earlier_failure(&self) -> Option<Arc<str>> {
        self.guard.as_ref().and_then(|guard| (**guard).clone())
    }

    /// Records why this holder's work failed, for those waiting on the key.
    pub fn fail(&mut self, reason: &str) {
        if let Some(guard) = self.guard.as_mut() {
            **guard = Some(Arc::from(reason));
        }
    }
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let mutex = {
            let mut locks = self.locks.lock().expect("lock map poisoned");
            locks.entry(key.to_owned()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            key: key.to_owned(),
            locks: self.clone(),
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().expect("lock map poisoned");
        // With the guard gone, a count of one means only the map refers to
        // the mutex: nobody holds or waits for this key.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

/// At most one piece of work per key at a time, such as one background
/// refresh of a mirror or one upstream fetch of a document; `V` is what
/// later comers get of the running work (a shared future to join), `()`
/// when they only need to know it runs. The work holds a [`OnceGuard`],
/// and the key is free again when the guard is dropped, however the work
/// ends: a panic cannot leave a key taken.
pub struct OncePerKey<V = ()> {
    running: Arc<Mutex<HashMap<String, V>>>,
}

impl<V> Clone for OncePerKey<V> {
    fn clone(&self) -> Self {
        OncePerKey {
            running: self.running.clone(),
        }
    }
}

impl<V> Default for OncePerKey<V> {
    fn default() -> Self {
        OncePerKey {
            running: Arc::default(),
        }
    }
}

/// Held by the work on a key; dropping it frees the key.
pub struct OnceGuard<V> {
    key: String,
    running: Arc<Mutex<HashMap<String, V>>>,
    state: Arc<AtomicU8>,
}

/// Where a guard's key stands. A guard made by
/// [`OncePerKey::join_or_start`] is handed to `start` before its key is
/// entered: dropped then (the work ended at once, or `start` panicked
/// while the map is locked), it only says so, and the key is never
/// entered; once entered, dropping it removes the key.
const STARTING: u8 = 0;
const ENTERED: u8 = 1;
const ENDED_BEFORE_ENTERED: u8 = 2;

impl<V> OncePerKey<V> {
    /// The map, whatever a panicking holder left: each entry is whole,
    /// since entries are only inserted and removed.
    fn running(&self) -> MutexGuard<'_, HashMap<String, V>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn guard(&self, key: &str, state: u8) -> OnceGuard<V> {
        OnceGuard {
            key: key.to_owned(),
            running: self.running.clone(),
            state: Arc::new(AtomicU8::new(state)),
        }
    }
}

impl OncePerKey<()> {
    /// Takes `key` for a piece of work; `None` while another holds it.
    pub fn claim(&self, key: &str) -> Option<OnceGuard<()>> {
        let mut running = self.running();
        if running.contains_key(key) {
            return None;
        }
        running.insert(key.to_owned(), ());
        Some(self.guard(key, ENTERED))
    }
}

impl<V: Clone> OncePerKey<V> {
    /// What the running work on `key` left for later comers, or, when none
    /// runs, what `start` returns for it. `start` gets the work's guard
    /// and should only start the work (spawn it, handing it the guard); it
    /// runs under the map's lock, so that two callers cannot both start.
    pub fn join_or_start(&self, key: &str, start: impl FnOnce(OnceGuard<V>) -> V) -> V {
        let mut running = self.running();
        if let Some(value) = running.get(key) {
            return value.clone();
        }
        let guard = self.guard(key, STARTING);
        let state = guard.state.clone();
        let value = start(guard);
        // The work may already be over; its key is then left out.
        if state
            .compare_exchange(STARTING, ENTERED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            running.insert(key.to_owned(), value.clone());
        }
        value
    }
}

impl<V> Drop for OnceGuard<V> {
    fn drop(&mut self) {
        let before_entered = self
            .state
            .compare_exchange(
                STARTING,
                ENDED_BEFORE_ENTERED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !before_entered {
            self.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_at_a_time_per_key() {
        let locks = KeyedLocks::default();
        let first = locks.lock("a").await;
        let _other_key = locks.lock("b").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock("a").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(first);
        drop(waiter.await.unwrap());
        assert!(!locks.locks.lock().unwrap().contains_key("a"));
    }

    #[tokio::test]
    async fn waiters_learn_why_the_holder_failed_until_nobody_waits() {
        let locks = KeyedLocks::default();
        let mut first = locks.lock("a").await;
        assert!(first.earlier_failure().is_none());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let locks = locks.clone();
                tokio::spawn(async move { locks.lock("a").await.earlier_failure() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        first.fail("stalled");
        drop(first);
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().as_deref(), Some("stalled"));
        }
        let later = locks.lock("a").await;
        assert!(
            later.earlier_failure().is_none(),
            "forgotten once nobody waits"
        );
    }

    #[test]
    fn a_key_is_claimed_once_until_its_guard_is_dropped() {
        let once = OncePerKey::default();
        let first = once.claim("a").unwrap();
        assert!(once.claim("a").is_none());
        let other = once.claim("b").unwrap();
        drop(first);
        assert!(once.claim("a").is_some());
        drop(other);
        assert!(once.running().is_empty());
    }

    #[tokio::test]
    async fn a_panicking_worker_frees_its_key() {
        let once = OncePerKey::default();
        let guard = once.claim("a").unwrap();
        let worker = tokio::spawn(async move {
            let _guard = guard;
            panic!("the refresh failed badly");
        });
        assert!(worker.await.unwrap_err().is_panic());
        assert!(once.claim("a").is_some());
    }

    #[test]
    fn later_comers_join_the_running_work() {
        let once: OncePerKey<u32> = OncePerKey::default();
        let mut kept = None;
        assert_eq!(
            once.join_or_start("a", |guard| {
                kept = Some(guard);
                1
            }),
            1
        );
        assert_eq!(once.join_or_start("a", |_| unreachable!("a runs")), 1);
        drop(kept);
        assert_eq!(once.join_or_start("a", |_guard| 2), 2);
        // That work ended inside `start`: its key was never entered.
        assert!(once.running().is_empty());
    }

    #[test]
    fn a_panic_while_starting_leaves_the_key_free() {
        let once: OncePerKey<u32> = OncePerKey::default();
        let starting = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            once.join_or_start("a", |_guard| panic!("could not start"))
        }));
        assert!(starting.is_err());
        assert_eq!(once.join_or_start("a", |_guard| 3), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_that_ends_on_another_thread_frees_its_key() {
        let once: OncePerKey<u32> = OncePerKey::default();
        let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
        once.join_or_start("a", |guard| {
            tokio::spawn(async move {
                drop(guard);
                let _ = ended_tx.send(());
            });
            1
        });
        tokio::time::timeout(Duration::from_secs(5), ended_rx)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(once.join_or_start("a", |_guard| 2), 2);
    }
}
