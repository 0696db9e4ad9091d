//! Module version lists fetched ahead of Terraform.
//!
//! Every module version list is asked of the upstream on every init (see
//! `VERSIONS_REVALIDATE`), and Terraform asks for them one module after
//! another: 24 modules at 50 ms from the registry cost 1.2 s of round trips
//! in a row. So `exec` of an `init` names its working directory when the run
//! begins; the server remembers which lists the last run from that directory
//! asked for, and fetches them all at once as the next run begins. Within the
//! run, a list fetched since the run began counts as fresh: Terraform gets
//! what it would have got by asking itself, only sooner.
//!
//! Only lists asked for without a registry credential are remembered, as the
//! early fetch has none to send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::{now_ms, Freshness};

/// Version lists fetched at once when a run begins.
pub const CONCURRENCY: usize = 8;
/// A run whose `exec` never came back for its counters is forgotten after this.
const FORGET_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The runs under way that named a working directory, by run id.
#[derive(Clone, Default)]
pub struct RunPlans {
    runs: Arc<Mutex<HashMap<String, Plan>>>,
}

struct Plan {
    started_ms: u64,
    /// Where the lists this run asks for are remembered.
    key: String,
    asked: Vec<String>,
}

/// What a run asked for, to be stored under `key` for the next run.
pub struct Remembered {
    pub key: String,
    pub body: String,
}

impl RunPlans {
    /// Starts a plan for `run`; returns the document key under which the
    /// lists of `workdir`'s last run are remembered, and the run's start.
    pub fn begin(&self, run: &str, workdir: &str) -> (String, u64) {
        let key = wanted_key(workdir);
        let now = now_ms();
        let mut runs = self.lock();
        runs.retain(|_, plan| {
            now.saturating_sub(plan.started_ms) < FORGET_AFTER.as_millis() as u64
        });
        runs.insert(
            run.to_owned(),
            Plan {
                started_ms: now,
                key: key.clone(),
                asked: Vec::new(),
            },
        );
        (key, now)
    }

    pub fn end(&self, run: &str) {
        self.lock().remove(run);
    }

    /// How fresh a list must be for `run`: fetched since the run began.
    /// `None` for a request outside any plan.
    pub fn freshness(&self, run: Option<&str>) -> Option<Freshness> {
        let started_ms = self.lock().get(run?)?.started_ms;
        Some(Freshness::fetched_since(started_ms))
    }

    /// Notes that `run` asked for `addr`; returns the run's list so far to
    /// store when `addr` is new to it.
    pub fn record(&self, run: Option<&str>, addr: &str) -> Option<Remembered> {
        let mut runs = self.lock();
        let plan = runs.get_mut(run?)?;
        if plan.asked.iter().any(|a| a == addr) {
            return None;
        }
        plan.asked.push(addr.to_owned());
        Some(Remembered {
            key: plan.key.clone(),
            body: serde_json::to_string(&plan.asked).expect("strings serialize"),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Plan>> {
        self.runs.lock().expect("run plans poisoned")
    }
}

/// The working directory is hashed: the key is a name, not a path to show.
fn wanted_key(workdir: &str) -> String {
    let digest = Sha256::digest(workdir.as_bytes());
    format!("modules/wanted/{}", hex::encode(&digest[..16]))
}

/// The addresses a stored list names; an unreadable one names none.
pub fn parse_remembered(body: &str) -> Vec<String> {
    serde_json::from_str(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_records_each_address_once_under_its_directory() {
        let plans = RunPlans::default();
        let (key, _) = plans.begin("r1", "/work/a");
        assert_eq!(key, plans.begin("r2", "/work/a").0, "one key per directory");
        assert_ne!(key, RunPlans::default().begin("r3", "/work/b").0);

        let first = plans.record(Some("r1"), "h/a/b/c").unwrap();
        assert_eq!(
            (first.key.as_str(), first.body.as_str()),
            (key.as_str(), r#"["h/a/b/c"]"#)
        );
        assert!(plans.record(Some("r1"), "h/a/b/c").is_none());
        let second = plans.record(Some("r1"), "h/x/y/z").unwrap();
        assert_eq!(parse_remembered(&second.body), ["h/a/b/c", "h/x/y/z"]);

        assert!(plans.record(None, "h/a/b/c").is_none());
        assert!(plans.record(Some("unknown"), "h/a/b/c").is_none());
        plans.end("r1");
        assert!(plans.record(Some("r1"), "h/q/q/q").is_none());
        assert!(plans.freshness(Some("r1")).is_none());
        assert!(plans.freshness(Some("r2")).is_some());
    }

    #[test]
    fn garbage_remembers_nothing() {
        assert!(parse_remembered("{").is_empty());
        assert!(parse_remembered(r#"{"a":1}"#).is_empty());
    }
}
