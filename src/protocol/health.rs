//! `GET /_tfmirror/health`: what a running server says of itself. A
//! command trusts the server recorded in `server.json` only when this
//! answer's `pid` and `cache_dir` match the record and the cache.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthAnswer {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_a_null_public_url() {
        let answer = HealthAnswer {
            status: "ok".into(),
            version: "0.3.0".into(),
            pid: 42,
            url: "http://127.0.0.1:4000".into(),
            public_url: None,
            cache_dir: "/cache".into(),
            uptime_secs: 7,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["status"], "ok");
        assert!(json["public_url"].is_null());
        assert_eq!(
            serde_json::from_value::<HealthAnswer>(json).unwrap(),
            answer
        );
    }
}
