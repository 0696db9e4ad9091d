//! One worker per key: whoever holds a key's lock fetches, the others wait
//! and then find the result on disk, or the reason the fetch failed: a
//! waiter given that reason answers with it rather than trying the same
//! failing fetch again, so a stalled or oversized download costs every
//! waiter one timeout, not one each in turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
}
