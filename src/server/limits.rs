//! How many connections the server holds, so a flood of idle or slow
//! clients cannot use up its file descriptors (after which every accept
//! fails, health checks included).
//!
//! Up to `max_connections` are served normally. Past that, a small overflow
//! pool is still accepted, but each of its connections gets one request,
//! read within [`OVERFLOW_HEADER_TIMEOUT`]: a health check is answered, and
//! anything else gets 503. Idle flooders in the overflow are closed within
//! that short time, so the listen queue keeps draining and a health check
//! behind thousands of idle connections is still answered at once. When
//! both are full, the server stops accepting until a connection closes:
//! clients wait in the kernel's queue rather than seeing accept fail.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept for everything but client connections: the index,
/// artifacts being written, upstream connections, git processes' pipes.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Connections accepted past `max_connections`, each for one quick request.
const OVERFLOW_CONNECTIONS: usize = 4096;

/// How long an overflow connection has to send its request head. A client
/// that waited in the listen queue has sent it already.
pub const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_millis(250);

/// How long an overflow connection over TLS has for its handshake: a few
/// round trips, where a normal connection gets `HANDSHAKE_TIMEOUT`.
pub const OVERFLOW_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The permits for client connections.
pub struct ConnectionLimits {
    served: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
}

/// How an accepted connection is served; dropping it frees its place.
pub enum Admission {
    /// Within `max_connections`: served normally.
    Served(#[allow(dead_code)] OwnedSemaphorePermit),
    /// Past the limit: one request, health only.
    Overflow(#[allow(dead_code)] OwnedSemaphorePermit),
}

impl ConnectionLimits {
    /// Raises the descriptor limit, then fits `max_connections` and the
    /// overflow pool below it.
    pub fn new(max_connections: usize) -> ConnectionLimits {
        let descriptors = raise_descriptor_limit();
        let (served, overflow) = fit(max_connections, descriptors);
        if served < max_connections {
            tracing::warn!(
                "max_connections lowered from {max_connections} to {served} to fit the \
                 descriptor limit ({descriptors}); raise `ulimit -n` to serve more"
            );
        }
        ConnectionLimits {
            served: Arc::new(Semaphore::new(served)),
            overflow: Arc::new(Semaphore::new(overflow)),
        }
    }

    /// Waits until a connection may be accepted: a normal place if one is
    /// free, else an overflow place, else whichever frees first.
    pub async fn admit(&self) -> Admission {
        if let Ok(permit) = self.served.clone().try_acquire_owned() {
            return Admission::Served(permit);
        }
        if let Ok(permit) = self.overflow.clone().try_acquire_owned() {
            return Admission::Overflow(permit);
        }
        tokio::select! {
            biased;
            Ok(permit) = self.served.clone().acquire_owned() => Admission::Served(permit),
            Ok(permit) = self.overflow.clone().acquire_owned() => Admission::Overflow(permit),
        }
    }
}

/// Normal and overflow places that fit in `descriptors` with the reserve
/// kept; at least one normal place whatever the limit.
fn fit(max_connections: usize, descriptors: u64) -> (usize, usize) {
    let budget =
        usize::try_from(descriptors.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    let overflow = OVERFLOW_CONNECTIONS.min(budget / 4).max(1);
    let served = max_connections.min(budget.saturating_sub(overflow)).max(1);
    (served, overflow)
}

/// Raises the soft limit on open files to the hard one and returns the
/// limit now in force: the default soft limit (often 1024) is far below
/// what a server facing many clients needs.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(
            "cannot read the descriptor limit: {}",
            std::io::Error::last_os_error()
        );
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            tracing::debug!(
                "cannot raise the descriptor limit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_fits_below_the_descriptors() {
        assert_eq!(fit(4096, 1_048_576), (4096, OVERFLOW_CONNECTIONS));
        assert_eq!(fit(4096, 20_000), (4096, 4096));
        assert_eq!(fit(4096, 1024), (1024 - 256 - 192, 192));
        assert_eq!(fit(10, 100), (1, 1));
    }

    #[tokio::test]
    async fn past_the_limit_comes_the_overflow_then_waiting() {
        let limits = ConnectionLimits {
            served: Arc::new(Semaphore::new(1)),
            overflow: Arc::new(Semaphore::new(1)),
        };
        let first = limits.admit().await;
        assert!(matches!(first, Admission::Served(_)));
        let second = limits.admit().await;
        assert!(matches!(second, Admission::Overflow(_)));
        let third = tokio::time::timeout(Duration::from_millis(50), limits.admit()).await;
        assert!(third.is_err(), "waits while both are full");
        drop(first);
        let fourth = limits.admit().await;
        assert!(matches!(fourth, Admission::Served(_)));
    }
}
