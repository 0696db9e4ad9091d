//! When the server was last used, so one started in the background for
//! `exec` goes away by itself once nobody needs it.
//!
//! Activity is counted per connection, not per request: a provider zip is
//! still streaming long after its handler returned, and Terraform keeps a
//! connection open for the whole of an `init`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Activity {
    open: AtomicUsize,
    last: Mutex<Instant>,
}

/// Held while a connection is open.
pub struct ConnectionGuard(Arc<Activity>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            open: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ConnectionGuard(self.clone())
    }

    fn touch(&self) {
        *self.last.lock().expect("activity lock") = Instant::now();
    }

    /// How long no connection has been open; zero while one is.
    fn idle(&self) -> Duration {
        if self.open.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        self.last.lock().expect("activity lock").elapsed()
    }

    /// Completes once no connection has been open for `timeout`.
    pub async fn idle_for(self: Arc<Self>, timeout: Duration) {
        loop {
            let idle = self.idle();
            if idle >= timeout {
                return;
            }
            // Re-checked at least every second, so a connection that opens
            // and closes in between is noticed through `last`.
            let wait = (timeout - idle).min(Duration::from_secs(1));
            tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_connection_keeps_it_busy() {
        let activity = Activity::new();
        let guard = activity.connection();
        let idle = tokio::spawn(activity.clone().idle_for(Duration::from_millis(50)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!idle.is_finished(), "idle while a connection was open");
        drop(guard);
        tokio::time::timeout(Duration::from_secs(2), idle)
            .await
            .expect("idle after the connection closed")
            .unwrap();
    }
}
