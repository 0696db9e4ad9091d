//! The record in `<cache>/server.json` (see `server::state_file` for the
//! file itself): how other tfmirror processes find the server that owns a
//! cache directory, and the secret that makes them its owner.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerInfo {
    pub pid: u32,
    /// The server's address from this machine, without the secret.
    pub url: String,
    pub version: String,
    /// The owner's secret; servers before 0.2 had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl ServerInfo {
    /// This process's record, serving at `url` with `secret`.
    pub fn current(url: &str, secret: &str) -> ServerInfo {
        ServerInfo {
            pid: std::process::id(),
            url: url.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            secret: Some(secret.to_owned()),
        }
    }

    /// What every request of the owner's starts with: the address and,
    /// where the server has one, its secret.
    pub fn base_url(&self) -> String {
        match &self.secret {
            Some(secret) => format!("{}/{secret}", self.url),
            None => self.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_record_without_a_secret_reads() {
        let old: ServerInfo =
            serde_json::from_str(r#"{"pid": 7, "url": "http://127.0.0.1:1", "version": "0.1.0"}"#)
                .unwrap();
        assert_eq!(old.secret, None);
        assert_eq!(old.base_url(), "http://127.0.0.1:1");
        let json = serde_json::to_value(&old).unwrap();
        assert!(json.get("secret").is_none());
        let new = ServerInfo::current("http://127.0.0.1:1", "abc");
        assert_eq!(new.base_url(), "http://127.0.0.1:1/abc");
        let back: ServerInfo = serde_json::from_value(serde_json::to_value(&new).unwrap()).unwrap();
        assert_eq!(back, new);
    }
}
