//! One audit line: what was fetched from which upstream, for whom, how it
//! was verified and what became of it.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::redact::redact_url;

/// What kind of upstream fetch a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A registry's `/.well-known/terraform.json`.
    Discovery,
    /// A provider's or module's list of versions.
    VersionList,
    /// A provider's download answer, or a module's download location.
    DownloadAnswer,
    ProviderPackage,
    /// A provider version's SHA256SUMS.
    Checksums,
    /// The detached signature of a SHA256SUMS.
    ChecksumsSignature,
    /// An HTTP module archive.
    ModuleArchive,
    /// A clone or fetch of a git mirror from its upstream.
    GitFetch,
}

impl Kind {
    /// The name in the log and in `tfmirror audit`'s table.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Discovery => "discovery",
            Kind::VersionList => "version_list",
            Kind::DownloadAnswer => "download_answer",
            Kind::ProviderPackage => "provider_package",
            Kind::Checksums => "checksums",
            Kind::ChecksumsSignature => "checksums_signature",
            Kind::ModuleArchive => "module_archive",
            Kind::GitFetch => "git_fetch",
        }
    }
}

/// What became of a fetch. Flattened into the line as `"outcome"` and,
/// for a refusal or failure, `"rule"` or `"reason"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Fetched, verified and kept in the cache.
    Stored,
    /// Refused by the `[policy]` before any upstream request: `rule` names
    /// the rule (e.g. `[policy] providers in config.toml`).
    Refused { rule: String },
    /// The fetch or its verification failed; nothing was kept.
    Failed { reason: String },
}

/// Who a fetch was made for: the run of `tfmirror exec` (from a
/// `/run/<id>/` path) and the client's User-Agent (`Terraform/1.9.8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub run: Option<String>,
    pub client: Option<String>,
}

/// One line of the audit log. Every URL in it has passed through
/// [`redact_url`]; no other field can hold a credential (names are
/// Terraform addresses, the rest hashes, sizes and key ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC, to the millisecond.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub kind: Kind,
    /// The Terraform-level name: `registry.terraform.io/hashicorp/aws
    /// 5.1.0 linux_amd64`, a module address, a git URL.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Lowercase hex sha256 of the bytes fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How what was fetched was verified: `signature key 34365D9472D7468F`,
    /// `sha256 from SHA256SUMS`, `archive check (12 entries)`, for git the
    /// refs and the commits they moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Record {
    /// A fetch of `name` for `requester`, stored, with nothing else known
    /// yet; the builders below add what is.
    pub fn new(requester: &Requester, kind: Kind, name: impl Into<String>) -> Record {
        Record {
            time: now(),
            run: requester.run.clone(),
            client: requester.client.clone(),
            kind,
            name: name.into(),
            url: None,
            bytes: None,
            sha256: None,
            verified: None,
            outcome: Outcome::Stored,
        }
    }

    /// A request for `name` the `[policy]`'s `rule` refused: no upstream
    /// request was made, so the line names no URL, size or hash.
    pub fn refused(
        requester: &Requester,
        kind: Kind,
        name: impl Into<String>,
        rule: impl Into<String>,
    ) -> Record {
        Record {
            outcome: Outcome::Refused { rule: rule.into() },
            ..Record::new(requester, kind, name)
        }
    }

    /// The upstream URL, redacted (see [`redact_url`]).
    pub fn url(self, url: &str) -> Record {
        Record {
            url: Some(redact_url(url)),
            ..self
        }
    }

    /// The size and sha256 of a body fetched whole.
    pub fn body(self, body: &[u8]) -> Record {
        self.hashed(body.len() as u64, hex::encode(Sha256::digest(body)))
    }

    /// The size and sha256 of a body hashed while it streamed.
    pub fn hashed(self, bytes: u64, sha256: String) -> Record {
        Record {
            bytes: Some(bytes),
            sha256: Some(sha256),
            ..self
        }
    }

    /// The bytes received where there is no one body to hash: a git
    /// fetch, measured as what the mirror's object store grew by.
    pub fn received(self, bytes: u64) -> Record {
        Record {
            bytes: Some(bytes),
            ..self
        }
    }

    pub fn verified(self, how: impl Into<String>) -> Record {
        Record {
            verified: Some(how.into()),
            ..self
        }
    }

    /// The fetch failed for `reason`; nothing was kept. A reason may quote
    /// an upstream URL, so the URLs in it are redacted too.
    pub fn failed(self, reason: impl std::fmt::Display) -> Record {
        Record {
            outcome: Outcome::Failed {
                reason: super::redact::redact_text(&reason.to_string()),
            },
            ..self
        }
    }

    /// The outcome as one short word or phrase, for the table.
    pub fn outcome_text(&self) -> String {
        match &self.outcome {
            Outcome::Stored => "stored".to_owned(),
            Outcome::Refused { rule } => format!("refused: {rule}"),
            Outcome::Failed { reason } => format!("failed: {reason}"),
        }
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lead wires `[policy]` refusals in with one call: the line says
    /// who asked, what, and which rule refused it, and reads back the same.
    #[test]
    fn a_policy_refusal_is_one_line_naming_the_rule() {
        let requester = Requester {
            run: Some("r1".to_owned()),
            client: Some("Terraform/1.9.8".to_owned()),
        };
        let record = Record::refused(
            &requester,
            Kind::ProviderPackage,
            "registry.terraform.io/hashicorp/aws 4.1.0 linux_amd64",
            "[policy] deny_providers in config.toml",
        );
        let line = serde_json::to_string(&record).unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["outcome"], "refused");
        assert_eq!(json["rule"], "[policy] deny_providers in config.toml");
        assert_eq!(json["kind"], "provider_package");
        assert_eq!(json["run"], "r1");
        assert_eq!(json["client"], "Terraform/1.9.8");
        assert!(json.get("url").is_none() && json.get("sha256").is_none());
        assert!(humantime::parse_rfc3339(json["time"].as_str().unwrap()).is_ok());
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record);
        assert_eq!(
            record.outcome_text(),
            "refused: [policy] deny_providers in config.toml"
        );
    }

    #[test]
    fn a_body_is_measured_and_hashed() {
        let record = Record::new(&Requester::default(), Kind::Checksums, "x").body(b"abc");
        assert_eq!(record.bytes, Some(3));
        assert_eq!(
            record.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
