//! One worker per key: whoever holds a key's lock fetches, the others wait
//! and then find the result on disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Clone, Default)]
pub struct KeyedLocks {
    locks: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
}

/// Held while working on a key; releasing the last holder forgets the key,
/// so the map only holds keys that are being worked on.
pub struct KeyGuard {
    key: String,
    locks: KeyedLocks,
    guard: Option<OwnedMutexGuard<()>>,
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
}
