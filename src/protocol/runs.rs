//! `/_tfmirror/runs/<id>`: one `exec` run. `exec` puts the run id in every
//! URL of the CLI config it writes (`/run/<id>/...`), announces the run's
//! start, and ends it to read what it took from the cache.

use serde::{Deserialize, Serialize};

/// The path segment in front of a run id: every URL of an `exec` run's
/// CLI config starts `<owner url>/run/<id>/`, so the server can count
/// what that run took.
pub const RUN_SEGMENT: &str = "run";

/// The URL an `exec` run's requests start with, below `base`.
pub fn run_url(base: &str, run: &str) -> String {
    format!("{base}/{RUN_SEGMENT}/{run}")
}

/// `POST /_tfmirror/runs/<id>`: an `exec` of `init` begins in `workdir`, so
/// the module version lists its last run asked for can be fetched ahead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    pub workdir: String,
}

/// An answer with nothing to say: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// `GET` or `DELETE /_tfmirror/runs/<id>`: the counters of one run, as
/// `exec` reads them at its end.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCounters {
    pub hits: u64,
    pub misses: u64,
    pub bytes_from_cache: u64,
    pub bytes_from_upstream: u64,
    /// Time spent sending responses whose bytes came from upstream.
    pub upstream_secs: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_is_an_empty_object() {
        assert_eq!(serde_json::to_string(&Ack {}).unwrap(), "{}");
        let start: RunStart = serde_json::from_str(r#"{"workdir":"/w"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&start).unwrap(),
            r#"{"workdir":"/w"}"#
        );
    }

    #[test]
    fn a_run_url_has_the_run_segment() {
        assert_eq!(run_url("http://h/s", "0a1b"), "http://h/s/run/0a1b");
    }

    #[test]
    fn counters_round_trip() {
        let counters = RunCounters {
            hits: 3,
            misses: 1,
            bytes_from_cache: 10,
            bytes_from_upstream: 20,
            upstream_secs: 0.5,
        };
        let json = serde_json::to_string(&counters).unwrap();
        assert_eq!(
            serde_json::from_str::<RunCounters>(&json).unwrap(),
            counters
        );
    }
}
