//! The line `exec` prints at its end: what this run took from the cache,
//! what it downloaded, and about how much time the cache saved.
//!
//! The server counts per run: `exec` puts a run id in every URL of the CLI
//! config it writes (`/run/<id>/...`) and asks for that run's counters
//! afterwards. What counts as "from cache" is the server's rule (see
//! [`RunCounters`]): never bytes downloaded while the run was under way.

use super::Health;
use crate::human_size::human_bytes;
use crate::protocol::{Endpoint, RunCounters, Throughput};

/// The least download a throughput is measured on: the time of a smaller
/// one is mostly round trips, and dividing by it claims absurd savings.
const MIN_MEASURED_BYTES: u64 = 10_000_000;

/// Ends the run on the server and returns its counters; `None` if it
/// cannot say.
pub async fn end_run(server: &Health, run: &str) -> Option<RunCounters> {
    let timeout = Some(std::time::Duration::from_secs(5));
    server.delete(Endpoint::Run(run), timeout).await.ok()
}

/// `1.2 GB from cache (34 hits), 310 MB downloaded (4 misses), ~41 s saved`.
/// `None` when the run used no artifact at all.
///
/// The time saved is what the bytes from cache would have taken at the
/// upstream's throughput, measured on at least [`MIN_MEASURED_BYTES`]:
/// this run's own downloads if they were that large, else the server's
/// recent large downloads; with neither, or under 0.1 s, it is left out.
pub fn line(counters: &RunCounters) -> Option<String> {
    if counters.hits + counters.misses == 0 {
        return None;
    }
    let mut line = format!(
        "{} from cache ({} hits), {} downloaded ({} misses)",
        human_bytes(counters.bytes_from_cache),
        counters.hits,
        human_bytes(counters.bytes_from_upstream),
        counters.misses
    );
    if let Some(bytes_per_sec) = throughput(counters) {
        let saved = counters.bytes_from_cache as f64 / bytes_per_sec;
        if saved >= 10.0 {
            line.push_str(&format!(", ~{saved:.0} s saved"));
        } else if saved >= 0.1 {
            line.push_str(&format!(", ~{saved:.1} s saved"));
        }
    }
    Some(line)
}

/// Bytes per second, from this run's own downloads or else the server's
/// recent ones, whichever was measured on enough bytes first.
fn throughput(counters: &RunCounters) -> Option<f64> {
    let own = Throughput {
        bytes: counters.measured_bytes,
        secs: counters.upstream_secs,
    };
    [Some(own), counters.recent]
        .into_iter()
        .flatten()
        .find(|t| t.bytes >= MIN_MEASURED_BYTES && t.secs > 0.0)
        .map(|t| t.bytes as f64 / t.secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_the_readme() {
        let counters = RunCounters {
            hits: 34,
            misses: 4,
            bytes_from_cache: 1_200_000_000,
            bytes_from_upstream: 310_000_000,
            measured_bytes: 310_000_000,
            upstream_secs: 10.6,
            ..RunCounters::default()
        };
        assert_eq!(
            line(&counters).unwrap(),
            "1.2 GB from cache (34 hits), 310 MB downloaded (4 misses), ~41 s saved"
        );
        let warm = RunCounters {
            hits: 3,
            bytes_from_cache: 4_000,
            ..RunCounters::default()
        };
        assert_eq!(
            line(&warm).unwrap(),
            "4.0 kB from cache (3 hits), 0 B downloaded (0 misses)"
        );
        assert_eq!(line(&RunCounters::default()), None);
    }

    /// The rule, case by case: which throughput the estimate uses, if any.
    #[test]
    fn the_estimate_needs_10_mb_measured() {
        let mb = |n: f64| (n * 1e6) as u64;
        let recent = |bytes, secs| Some(Throughput { bytes, secs });
        let cases = [
            // 4 kB downloaded in 1 ms: no estimate (the issue's ~22064 s).
            (mb(0.004), 0.001, None, None),
            // 9.9 MB of its own, nothing recent: none.
            (mb(9.9), 1.0, None, None),
            // 10 MB of its own at 10 MB/s: 38 MB from cache is ~3.8 s.
            (
                mb(10.0),
                1.0,
                recent(mb(100.0), 1.0),
                Some(", ~3.8 s saved"),
            ),
            // Too little of its own: the server's recent downloads, 1 MB/s.
            (mb(1.0), 0.01, recent(mb(20.0), 20.0), Some(", ~38 s saved")),
            // Recent downloads too small as well: none.
            (0, 0.0, recent(mb(9.0), 1.0), None),
        ];
        for (measured_bytes, upstream_secs, recent, saved) in cases {
            let counters = RunCounters {
                hits: 3,
                misses: 1,
                bytes_from_cache: mb(38.0),
                bytes_from_upstream: measured_bytes,
                measured_bytes,
                upstream_secs,
                recent,
                ..RunCounters::default()
            };
            let line = line(&counters).unwrap();
            let tail = line.split_once(" misses)").unwrap().1;
            assert_eq!(tail, saved.unwrap_or(""), "{counters:?}");
        }
    }

    /// A waiter's bytes are downloaded, not measured: they give no
    /// throughput, and no time saved is claimed for them.
    #[test]
    fn bytes_waited_for_claim_nothing() {
        let waited = RunCounters {
            misses: 1,
            bytes_from_upstream: 50_000_000,
            upstream_secs: 0.0,
            ..RunCounters::default()
        };
        assert_eq!(
            line(&waited).unwrap(),
            "0 B from cache (0 hits), 50 MB downloaded (1 misses)"
        );
    }
}
