//! Whether the bucket is asked, and what the tier says of its health.
//!
//! The upstream's [`Breakers`](crate::upstream::breaker::Breakers) speak
//! of hosts and cached copies and log in those words; the tier needs the
//! same rule with its own words, and its state for `tfmirror status`. Once
//! a request to the bucket fails (a timeout, a 5xx, refused credentials, a
//! missing bucket), the bucket is left alone for `upstream_retry_after`,
//! every lookup a miss at once; then one request goes through as the
//! probe. One warning when the tier starts failing, one info line when it
//! works again: never one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::{SharedHealth, SharedState};

pub struct Circuit {
    /// The tier's URL, for the log lines.
    url: String,
    period: Duration,
    phase: Mutex<Phase>,
    pub counters: Counters,
}

enum Phase {
    Unknown,
    Ok,
    Failing {
        since: Instant,
        /// The last failure: when, and why.
        last: Instant,
        why: String,
        /// When the probe now under way started; a probe that never
        /// reports (its caller gave up) frees the slot after a period.
        probe: Option<Instant>,
    },
}

/// What the tier has done since start, for `tfmirror status`.
#[derive(Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub uploads: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Circuit {
    pub fn new(url: String, period: Duration) -> Circuit {
        Circuit {
            url,
            period,
            phase: Mutex::new(Phase::Unknown),
            counters: Counters::default(),
        }
    }

    /// Whether a request may go to the bucket now: always while it works;
    /// while it fails, one probe per period.
    /// The tier's URL, as the log names it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn allows(&self) -> bool {
        let mut phase = self.phase.lock().expect("circuit poisoned");
        match &mut *phase {
            Phase::Unknown | Phase::Ok => true,
            Phase::Failing { last, probe, .. } => {
                let now = Instant::now();
                let probe_due = now.duration_since(*last) >= self.period;
                let no_live_probe = probe.is_none_or(|p| now.duration_since(p) >= self.period);
                if probe_due && no_live_probe {
                    *probe = Some(now);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The bucket answered (an object, or "no such key").
    pub fn succeeded(&self) {
        let mut phase = self.phase.lock().expect("circuit poisoned");
        if let Phase::Failing { since, .. } = &*phase {
            tracing::info!(
                "shared tier {} works again after {}s",
                self.url,
                since.elapsed().as_secs()
            );
        }
        *phase = Phase::Ok;
    }

    /// A request to the bucket failed: the first failure warns, the rest
    /// only keep the reason.
    pub fn failed(&self, why: &str) {
        Counters::add(&self.counters.errors, 1);
        let mut phase = self.phase.lock().expect("circuit poisoned");
        let now = Instant::now();
        match &mut *phase {
            Phase::Failing {
                last,
                why: reason,
                probe,
                ..
            } => {
                *last = now;
                *reason = why.to_owned();
                *probe = None;
            }
            Phase::Unknown | Phase::Ok => {
                tracing::warn!(
                    "shared tier {} unavailable: {why}; using the upstream, and trying the \
                     bucket again in {}s",
                    self.url,
                    self.period.as_secs()
                );
                *phase = Phase::Failing {
                    since: now,
                    last: now,
                    why: why.to_owned(),
                    probe: None,
                };
            }
        }
    }

    pub fn health(&self, upload: bool) -> SharedHealth {
        let (state, last_error, failing_for_secs) =
            match &*self.phase.lock().expect("circuit poisoned") {
                Phase::Unknown => (SharedState::Unknown, None, None),
                Phase::Ok => (SharedState::Ok, None, None),
                Phase::Failing { since, why, .. } => (
                    SharedState::Failing,
                    Some(why.clone()),
                    Some(since.elapsed().as_secs()),
                ),
            };
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let c = &self.counters;
        SharedHealth {
            url: self.url.clone(),
            state,
            last_error,
            failing_for_secs,
            upload,
            hits: read(&c.hits),
            misses: read(&c.misses),
            errors: read(&c.errors),
            bytes_read: read(&c.bytes_read),
            bytes_written: read(&c.bytes_written),
            uploads: read(&c.uploads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_closes_the_bucket_for_a_period_then_lets_one_probe_through() {
        let circuit = Circuit::new("s3://b/p".into(), Duration::from_millis(50));
        assert_eq!(circuit.health(true).state, SharedState::Unknown);
        assert!(circuit.allows());
        circuit.succeeded();
        assert_eq!(circuit.health(true).state, SharedState::Ok);
        circuit.failed("connection refused");
        let health = circuit.health(true);
        assert_eq!(health.state, SharedState::Failing);
        assert_eq!(health.last_error.as_deref(), Some("connection refused"));
        assert_eq!(health.errors, 1);
        assert!(!circuit.allows());
        std::thread::sleep(Duration::from_millis(60));
        assert!(circuit.allows(), "the probe");
        assert!(!circuit.allows(), "one probe at a time");
        circuit.failed("connection refused");
        assert!(
            !circuit.allows(),
            "a failed probe closes it for another period"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(circuit.allows());
        circuit.succeeded();
        assert!(circuit.allows() && circuit.allows());
        assert_eq!(circuit.health(true).state, SharedState::Ok);
    }

    #[test]
    fn a_probe_that_never_reports_frees_its_slot_after_a_period() {
        let circuit = Circuit::new("s3://b/p".into(), Duration::from_millis(30));
        circuit.failed("timed out");
        std::thread::sleep(Duration::from_millis(35));
        assert!(circuit.allows());
        assert!(!circuit.allows());
        std::thread::sleep(Duration::from_millis(35));
        assert!(circuit.allows());
    }
}
