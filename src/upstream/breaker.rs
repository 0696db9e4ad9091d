//! A circuit breaker per upstream host, so a dead upstream costs a run one
//! timeout rather than one per request.
//!
//! A host's breaker opens when a request to it is refused or times out, or
//! has had no answer for [`NOT_ANSWERING_AFTER`] (the shortest time a
//! caller with a cached copy waits, so the next caller need not wait too).
//! While it is open, requests to the host fail at once, and the callers
//! serve their cached copies. Once the period has passed, the next request
//! goes through as the probe while the others keep failing fast; any answer
//! from the host, whatever its status, closes the breaker. Only "the
//! upstream is unreachable or not answering" opens it: an answer, even a
//! 404 or a 500, means the host is there.
//!
//! An opening caused only by a slow request (nothing has failed yet) lets
//! requests with no cached copy through: they have nothing better to do
//! than wait, and a merely slow upstream must not turn into errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request may go unanswered before its host counts as not
/// answering: the module version list deadline, the shortest a caller with
/// a cached copy waits.
pub const NOT_ANSWERING_AFTER: Duration = Duration::from_secs(2);

/// How long an open breaker fails requests at once before one request is
/// let through to try the host again (`upstream_retry_after`).
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Breakers {
    period: Duration,
    hosts: Arc<Mutex<HashMap<String, Host>>>,
}

#[derive(Default)]
struct Host {
    /// `None`: closed.
    open: Option<Open>,
    /// When the host last answered: a request that started before then and
    /// failed since says nothing about the host now.
    last_answer: Option<Instant>,
}

struct Open {
    since: Instant,
    /// Why it opened, for the error message.
    why: String,
    /// A request failed outright (refused, timed out), as opposed to one
    /// only being slow so far.
    failed: bool,
    /// A request let through after the period is under way.
    probing: bool,
}

/// What a request to a host may do.
#[derive(Debug, PartialEq, Eq)]
pub enum Permit {
    /// Go ahead.
    Go,
    /// Go ahead as the probe of an open breaker.
    Probe,
}

/// A request not sent because its host's breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} is not answering: {why} {ago_secs}s ago; tfmirror tries it again in {retry_in_secs}s"
)]
pub struct NotAnswering {
    host: String,
    why: String,
    ago_secs: u64,
    retry_in_secs: u64,
}

impl Breakers {
    pub fn new(period: Duration) -> Breakers {
        Breakers {
            period,
            hosts: Arc::default(),
        }
    }

    /// Whether a request to `host` may go to the upstream now;
    /// `has_fallback` says the caller has a cached copy to serve instead.
    /// The error names the host and how long ago it failed.
    pub fn check(&self, host: &str, has_fallback: bool) -> Result<Permit, NotAnswering> {
        let mut hosts = self.hosts.lock().expect("breaker map poisoned");
        let Some(open) = hosts.get_mut(host).and_then(|h| h.open.as_mut()) else {
            return Ok(Permit::Go);
        };
        let elapsed = open.since.elapsed();
        if elapsed >= self.period && !open.probing {
            open.probing = true;
            return Ok(Permit::Probe);
        }
        if !open.failed && !has_fallback {
            return Ok(Permit::Go);
        }
        let retry_in = self.period.saturating_sub(elapsed);
        Err(NotAnswering {
            host: host.to_owned(),
            why: open.why.clone(),
            ago_secs: elapsed.as_secs(),
            retry_in_secs: retry_in.as_secs().max(1),
        })
    }

    /// `host` answered: its breaker closes.
    pub fn answered(&self, host: &str) {
        let mut hosts = self.hosts.lock().expect("breaker map poisoned");
        let entry = hosts.entry(host.to_owned()).or_default();
        entry.last_answer = Some(Instant::now());
        if let Some(open) = entry.open.take() {
            tracing::warn!(
                "upstream {host} answers again after {}s; requests go to it again",
                open.since.elapsed().as_secs()
            );
        }
    }

    /// A request to `host` that began at `started` was refused or timed out
    /// (`failed`), or has not been answered within [`NOT_ANSWERING_AFTER`]:
    /// its breaker opens, or stays open for another period, unless the host
    /// has answered since the request began.
    pub fn not_answering(&self, host: &str, why: &str, failed: bool, started: Instant) {
        let mut hosts = self.hosts.lock().expect("breaker map poisoned");
        let entry = hosts.entry(host.to_owned()).or_default();
        if entry.last_answer.is_some_and(|answer| answer > started) {
            return;
        }
        match entry.open.as_mut() {
            Some(open) => {
                // A slow request noticed after a failure says nothing new.
                if failed || open.probing {
                    open.since = Instant::now();
                    open.why = why.to_owned();
                    open.failed |= failed;
                    open.probing = false;
                }
            }
            None => {
                tracing::warn!(
                    "upstream {host} is not answering ({why}); serving cached copies for {}s \
                     before trying it again",
                    self.period.as_secs()
                );
                entry.open = Some(Open {
                    since: Instant::now(),
                    why: why.to_owned(),
                    failed,
                    probing: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_opens_then_one_probe_then_an_answer_closes() {
        let breakers = Breakers::new(Duration::from_millis(50));
        assert_eq!(breakers.check("h:1", true), Ok(Permit::Go));
        breakers.not_answering("h:1", "connection refused", true, Instant::now());
        let err = breakers.check("h:1", false).unwrap_err();
        assert!(err.to_string().contains("h:1 is not answering"), "{err}");
        assert!(breakers.check("h:1", true).is_err());
        assert_eq!(breakers.check("other:1", true), Ok(Permit::Go));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breakers.check("h:1", true), Ok(Permit::Probe));
        assert!(breakers.check("h:1", true).is_err(), "one probe at a time");
        breakers.answered("h:1");
        assert_eq!(breakers.check("h:1", true), Ok(Permit::Go));
    }

    #[test]
    fn a_failed_probe_opens_for_another_period() {
        let breakers = Breakers::new(Duration::from_millis(50));
        breakers.not_answering("h:1", "timed out", true, Instant::now());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breakers.check("h:1", true), Ok(Permit::Probe));
        breakers.not_answering("h:1", "timed out", true, Instant::now());
        assert!(breakers.check("h:1", true).is_err());
    }

    #[test]
    fn a_slow_host_fails_only_requests_with_a_fallback() {
        let breakers = Breakers::new(Duration::from_secs(30));
        breakers.not_answering("h:1", "no answer for 2s", false, Instant::now());
        assert!(breakers.check("h:1", true).is_err());
        assert_eq!(breakers.check("h:1", false), Ok(Permit::Go));
        breakers.not_answering("h:1", "timed out", true, Instant::now());
        assert!(breakers.check("h:1", false).is_err());
    }

    #[test]
    fn a_request_older_than_the_last_answer_does_not_reopen() {
        let breakers = Breakers::new(Duration::from_secs(30));
        let old = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        breakers.answered("h:1");
        breakers.not_answering("h:1", "timed out", true, old);
        assert_eq!(breakers.check("h:1", true), Ok(Permit::Go));
    }
}
