//! `GET /_tfmirror/health`: what a running server says of itself. A
//! command trusts the server recorded in `server.json` only when this
//! answer's `pid` and `cache_dir` match the record and the cache.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`; a client never needed it, so it may be missing.
    #[serde(default)]
    pub status: String,
    pub version: String,
    pub pid: u32,
    /// The server's address from this machine, without the secret.
    pub url: String,
    /// A team server's public URL (`null` otherwise).
    #[serde(default)]
    pub public_url: Option<String>,
    pub cache_dir: PathBuf,
    pub uptime_secs: u64,
    /// The shared tier on object storage, when `[shared]` is configured.
    #[serde(default)]
    pub shared: Option<SharedHealth>,
    /// Why the server is sealed (offline: it contacts no upstream), e.g.
    /// `offline = true in /etc/tfmirror.toml`; `null` when it is online.
    #[serde(default)]
    pub offline: Option<String>,
    /// How long the server stays up without clients, when it exits then
    /// (one a command started in the background, `serve --idle-timeout`).
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Whether it listens on a port the system picked (no `listen` set),
    /// so the next server of this cache will be elsewhere. `false` from
    /// servers before this field, which are taken to be fixed.
    #[serde(default)]
    pub random_port: bool,
}

impl Health {
    /// How long the server's address may outlive the last client, when an
    /// address exported for later (`tfmirror env`) would die with it: it
    /// exits when idle, and the next one picks another port.
    pub fn ephemeral(&self) -> Option<Duration> {
        self.idle_timeout_secs
            .filter(|_| self.random_port)
            .map(Duration::from_secs)
    }
}

/// The shared tier as `tfmirror status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedHealth {
    /// The `[shared] url`, which never holds credentials.
    pub url: String,
    pub state: SharedState,
    /// Why the bucket last failed, while it is failing.
    #[serde(default)]
    pub last_error: Option<String>,
    /// How long ago it started failing.
    #[serde(default)]
    pub failing_for_secs: Option<u64>,
    /// Whether this server writes to the bucket (`[shared] upload`).
    pub upload: bool,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub uploads: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedState {
    /// Not asked yet.
    Unknown,
    Ok,
    /// The last request failed; requests skip the bucket for a while.
    Failing,
}

impl SharedState {
    pub fn as_str(self) -> &'static str {
        match self {
            SharedState::Unknown => "unknown",
            SharedState::Ok => "ok",
            SharedState::Failing => "failing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_null_public_url() {
        let answer = Health {
            status: "ok".into(),
            version: "0.3.0".into(),
            pid: 42,
            url: "http://127.0.0.1:4000".into(),
            public_url: None,
            cache_dir: "/cache".into(),
            uptime_secs: 7,
            shared: None,
            offline: Some("TFMIRROR_OFFLINE=1".into()),
            idle_timeout_secs: Some(900),
            random_port: true,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["status"], "ok");
        assert!(json["public_url"].is_null());
        assert_eq!(serde_json::from_value::<Health>(json).unwrap(), answer);
    }

    #[test]
    fn an_answer_without_the_shared_tier_still_reads() {
        let json = r#"{"version":"0.2.0","pid":1,"url":"http://127.0.0.1:1",
            "cache_dir":"/c","uptime_secs":0}"#;
        let health: Health = serde_json::from_str(json).unwrap();
        assert_eq!(health.shared, None);
        assert_eq!(
            health.offline, None,
            "a server of before sealed mode is online"
        );
        assert_eq!(
            health.ephemeral(),
            None,
            "a server of before the lifetime fields is taken as lasting"
        );
        let state: SharedState = serde_json::from_str("\"failing\"").unwrap();
        assert_eq!(state.as_str(), "failing");
    }

    #[test]
    fn only_an_idle_timeout_on_a_random_port_is_ephemeral() {
        let json = r#"{"version":"0.3.0","pid":1,"url":"http://127.0.0.1:1",
            "cache_dir":"/c","uptime_secs":0}"#;
        let base: Health = serde_json::from_str(json).unwrap();
        let with = |idle_timeout_secs, random_port| Health {
            idle_timeout_secs,
            random_port,
            ..base.clone()
        };
        assert_eq!(
            with(Some(900), true).ephemeral(),
            Some(Duration::from_secs(900))
        );
        assert_eq!(with(Some(900), false).ephemeral(), None, "a fixed listen");
        assert_eq!(with(None, true).ephemeral(), None, "runs until stopped");
    }
}
