//! `/_tfmirror/runs/<id>`: one `exec` run. `exec` puts the run id in every
//! URL of the CLI config it writes (`/run/<id>/...`), announces the run's
//! start, and ends it to read what it took from the cache.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::upstream::HostRoute;

/// The path segment in front of a run id: every URL of an `exec` run's
/// CLI config starts `<owner url>/run/<id>/`, so the server can count
/// what that run took.
pub const RUN_SEGMENT: &str = "run";

/// The URL an `exec` run's requests start with, below `base`.
pub fn run_url(base: &str, run: &RunId) -> String {
    format!("{base}/{RUN_SEGMENT}/{run}")
}

/// The id of one `exec` run: 8 to 32 lowercase hex digits. `exec` makes
/// one ([`RunId::fresh`]) and the router accepts only what
/// [`RunId::parse`] does, so the format is written down once: a path
/// segment that is not a run id is routed as an ordinary path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

/// A path segment that is no run id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a run id (8 to 32 lowercase hex digits): {0:?}")]
pub struct BadRunId(String);

impl RunId {
    /// How many hex digits a run id may have; a fresh one has 16.
    const LENGTHS: std::ops::RangeInclusive<usize> = 8..=32;

    /// A new run id: 16 hex digits of a hash of the process id, the time
    /// and the thread, unique enough across processes.
    pub fn fresh() -> RunId {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!(
            "{} {} {:?}",
            std::process::id(),
            now.as_nanos(),
            std::thread::current().id()
        );
        RunId(hex::encode(&Sha256::digest(seed.as_bytes())[..8]))
    }

    /// `text` as a run id, if it has the format [`RunId::fresh`] makes.
    pub fn parse(text: &str) -> Result<RunId, BadRunId> {
        let hex = text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match Self::LENGTHS.contains(&text.len()) && hex {
            true => Ok(RunId(text.to_owned())),
            false => Err(BadRunId(text.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `POST /_tfmirror/runs/<id>`: an `exec` begins. For an `init` in
/// `workdir`, the module version lists its last run asked for can be
/// fetched ahead; `routes` are the `host` blocks of the user's config for
/// this run, where its requests for those hosts go (see
/// `upstream::UserRoutes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default)]
    pub routes: Vec<HostRoute>,
}

/// An answer with nothing to say: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// `GET` or `DELETE /_tfmirror/runs/<id>`: the counters of one run, as
/// `exec` reads them at its end.
///
/// "From cache" means what was in the cache before the run needed it: an
/// artifact another request downloaded while this run was under way (a
/// download it waited for, or shared with a parallel run) saved this run
/// no download time, so it counts as downloaded (a miss), never as a hit.
/// Git fetches made for the run's requests count as downloads too.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCounters {
    pub hits: u64,
    pub misses: u64,
    pub bytes_from_cache: u64,
    /// Everything downloaded for the run: its own downloads and git
    /// fetches, and what it waited for while another request downloaded it.
    pub bytes_from_upstream: u64,
    /// Time spent on the run's own downloads, [`RunCounters::measured_bytes`].
    pub upstream_secs: f64,
    /// The bytes of the run's own downloads, timed by `upstream_secs`: a
    /// throughput to estimate the time saved with. Older servers do not
    /// send it (0: no estimate).
    #[serde(default)]
    pub measured_bytes: u64,
    /// The server's recent large downloads, for a run too small to measure
    /// the upstream's speed on its own; older servers do not send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent: Option<Throughput>,
    /// What went wrong while serving this run, grouped and deduplicated;
    /// older servers send none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// Bytes downloaded in so many seconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub bytes: u64,
    pub secs: f64,
}

/// One problem the server met while serving a run, as `exec` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// An upstream host could not be reached: `why` is short ("dns error:
    /// no such host"); `missing` names what the run needed and could not
    /// get, `stale` what it was served from the cache instead.
    Unreachable {
        host: String,
        why: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing: Vec<String>,
        #[serde(default)]
        stale: usize,
    },
    /// Any other warning or error, one short line.
    Other { level: String, message: String },
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
            r#"{"workdir":"/w","routes":[]}"#
        );
    }

    #[test]
    fn a_run_start_may_carry_routes_only() {
        let text = r#"{"routes":[{"host":"registry.terraform.io","services":{"providers.v1":"https://a/p/"}}]}"#;
        let start: RunStart = serde_json::from_str(text).unwrap();
        assert_eq!(start.workdir, None);
        assert_eq!(start.routes[0].host, "registry.terraform.io");
        assert_eq!(serde_json::to_string(&start).unwrap(), text);
    }

    #[test]
    fn a_run_url_has_the_run_segment() {
        let run = RunId::parse("0a1b2c3d").unwrap();
        assert_eq!(run_url("http://h/s", &run), "http://h/s/run/0a1b2c3d");
    }

    #[test]
    fn a_fresh_run_id_parses_back() {
        let run = RunId::fresh();
        assert_eq!(run.as_str().len(), 16);
        assert_eq!(RunId::parse(&run.to_string()), Ok(run));
    }

    #[test]
    fn only_8_to_32_lowercase_hex_digits_are_a_run_id() {
        for good in ["01234567", "0123456789abcdef0123456789abcdef"] {
            assert_eq!(RunId::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "0123456",
            "0123456789abcdef0123456789abcdef0",
            "0123456789ABCDEF",
            "0123456g",
            "providers",
        ] {
            assert_eq!(RunId::parse(bad), Err(BadRunId(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn counters_round_trip() {
        let counters = RunCounters {
            hits: 3,
            misses: 1,
            bytes_from_cache: 10,
            bytes_from_upstream: 20,
            upstream_secs: 0.5,
            measured_bytes: 20,
            recent: Some(Throughput {
                bytes: 30,
                secs: 1.5,
            }),
            problems: vec![
                Problem::Unreachable {
                    host: "registry.example".to_owned(),
                    why: "connection refused".to_owned(),
                    missing: vec!["acme/x".to_owned()],
                    stale: 2,
                },
                Problem::Other {
                    level: "ERROR".to_owned(),
                    message: "refusing y".to_owned(),
                },
            ],
        };
        let json = serde_json::to_string(&counters).unwrap();
        assert_eq!(
            serde_json::from_str::<RunCounters>(&json).unwrap(),
            counters
        );
    }

    /// An older server's answer still reads, with no estimate and no
    /// problems.
    #[test]
    fn an_older_servers_counters_read() {
        let old = r#"{"hits":1,"misses":2,"bytes_from_cache":3,"bytes_from_upstream":4,"upstream_secs":0.5}"#;
        let counters: RunCounters = serde_json::from_str(old).unwrap();
        assert_eq!((counters.measured_bytes, counters.recent), (0, None));
        assert!(counters.problems.is_empty());
    }
}
