//! The line `exec` prints at its end: what this run took from the cache,
//! what it downloaded, and about how much time the cache saved.
//!
//! The server counts per run: `exec` puts a run id in every URL of the CLI
//! config it writes (`/run/<id>/...`) and asks for that run's counters
//! afterwards.

use super::Health;
use crate::human_size::human_bytes;
use crate::protocol::{Endpoint, RunCounters};

/// Ends the run on the server and returns its counters; `None` if it
/// cannot say.
pub async fn end_run(server: &Health, run: &str) -> Option<RunCounters> {
    let timeout = Some(std::time::Duration::from_secs(5));
    server.delete(Endpoint::Run(run), timeout).await.ok()
}

/// `1.2 GB from cache (34 hits), 310 MB downloaded (4 misses), ~41 s saved`;
/// the estimate comes from the upstream throughput measured on this run's
/// misses, and is left out when there were none (or it is under 0.1 s). `None` when the run used
/// no artifact at all.
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
    if counters.bytes_from_upstream > 0 && counters.upstream_secs > 0.0 {
        let throughput = counters.bytes_from_upstream as f64 / counters.upstream_secs;
        let saved = counters.bytes_from_cache as f64 / throughput;
        if saved >= 10.0 {
            line.push_str(&format!(", ~{saved:.0} s saved"));
        } else if saved >= 0.1 {
            line.push_str(&format!(", ~{saved:.1} s saved"));
        }
    }
    Some(line)
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
            upstream_secs: 10.6,
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
}
