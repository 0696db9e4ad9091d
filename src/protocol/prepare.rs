//! The wire types of `POST /_tfmirror/providers/prepare`
//! ([`Endpoint::PrepareProviders`](super::Endpoint::PrepareProviders)), shared by the
//! server (which prepares) and `exec` (which asks before `terraform init`).
//!
//! The client sends the providers a lock file pins, with that lock file's
//! hashes; for each, the server makes sure the verified zip for the
//! platform is cached, checks it against those hashes (the lock file wins),
//! unpacks it into the unpacked `filesystem_mirror` tree and answers with
//! the tree's root and each entry's `h1:`. Terraform then installs from
//! the tree by hashing the directory against the lock file's `h1:` and
//! symlinking it, without unpacking anything itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The most providers one request may name; a real lock file has tens.
pub const MAX_PREPARE_PROVIDERS: usize = 1000;

/// What `exec` asks for: every locked provider, for one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// `<os>_<arch>`, e.g. `linux_amd64`.
    pub platform: String,
    pub providers: Vec<PrepareItem>,
    /// The `exec` run asking: what is not cached is fetched by its user's
    /// `host` blocks (see `upstream::UserRoutes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// One provider of the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareItem {
    /// `<host>/<namespace>/<type>`, e.g. `registry.terraform.io/hashicorp/aws`.
    pub address: String,
    /// The exact version the lock file pins.
    pub version: String,
    /// The lock file's hashes for this provider (`zh:` and `h1:`, every
    /// platform): the zip is used only if its `zh:` or `h1:` is among them.
    #[serde(default)]
    pub hashes: Vec<String>,
}

/// The server's answer, its `providers` in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareAnswer {
    /// The root of the unpacked tree: the `path` of a `filesystem_mirror`.
    pub tree: PathBuf,
    pub providers: Vec<Prepared>,
}

/// What became of one provider. Ready: its entry is in the tree, with the
/// `h1:` Terraform will compute of it and the zip's `zh:`. Not ready: the
/// reason, and the provider should go through the registry path instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub address: String,
    pub version: String,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Prepared {
    /// An entry that is in the tree.
    pub fn ready(item: &PrepareItem, h1: String, zh: String) -> Prepared {
        Prepared {
            address: item.address.clone(),
            version: item.version.clone(),
            ready: true,
            h1: Some(h1),
            zh: Some(zh),
            reason: None,
        }
    }

    /// A provider that could not be prepared, and why.
    pub fn not_ready(item: &PrepareItem, reason: impl Into<String>) -> Prepared {
        Prepared {
            address: item.address.clone(),
            version: item.version.clone(),
            ready: false,
            h1: None,
            zh: None,
            reason: Some(reason.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_request() {
        let body = r#"{"platform": "linux_amd64", "providers": [
            {"address": "registry.terraform.io/hashicorp/aws", "version": "5.1.0",
             "hashes": ["zh:00", "h1:AA="]}]}"#;
        let request: PrepareRequest = serde_json::from_str(body).unwrap();
        assert_eq!(request.platform, "linux_amd64");
        assert_eq!(request.providers[0].hashes, ["zh:00", "h1:AA="]);
    }

    #[test]
    fn an_answer_leaves_out_what_it_lacks() {
        let item = PrepareItem {
            address: "registry.terraform.io/hashicorp/aws".into(),
            version: "5.1.0".into(),
            hashes: vec![],
        };
        let answer = PrepareAnswer {
            tree: "/cache/providers-unpacked".into(),
            providers: vec![
                Prepared::ready(&item, "h1:x".into(), "zh:y".into()),
                Prepared::not_ready(&item, "no"),
            ],
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["providers"][0]["h1"], "h1:x");
        assert!(json["providers"][0].get("reason").is_none());
        assert_eq!(json["providers"][1]["ready"], false);
        assert!(json["providers"][1].get("h1").is_none());
        let back: PrepareAnswer = serde_json::from_value(json).unwrap();
        assert_eq!(back, answer);
    }
}
