//! `/_tfmirror/{artifacts,gc,delete,prune}`: listing and shrinking the
//! cache, which the server does because it owns the cache and knows what
//! is in use. The requests that change things need the owner's secret as
//! a bearer token.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::catalog::Entry;

/// `GET /_tfmirror/artifacts`: what `tfmirror cache list` and `stats`
/// show.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifacts {
    pub cache_dir: PathBuf,
    pub artifacts: Vec<Entry>,
    pub metadata_entries: usize,
}

/// `POST /_tfmirror/gc`: remove what `tfmirror cache gc`'s rules select.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub unused_for_secs: Option<u64>,
    pub max_size: Option<u64>,
    pub min_age_secs: u64,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /_tfmirror/delete`: remove what a pattern names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// A glob over names and paths, or an exact name or path.
    pub pattern: String,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /_tfmirror/prune`: drop metadata that may be fetched again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRequest {
    /// Default: past the stale window (`metadata_ttl` +
    /// `stale_while_revalidate`).
    pub older_than_secs: Option<u64>,
    #[serde(default)]
    pub dry_run: bool,
}

/// What a removal (`gc`, `delete`) did or, dry, would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub removed: Vec<RemovedEntry>,
    pub bytes_freed: u64,
    pub dry_run: bool,
    /// For `gc`: what its rules chose but `min_age_secs` kept, so that a
    /// gc freeing nothing can say why. Absent for `delete`, and from
    /// servers before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_young: Option<KeptYoung>,
}

/// Artifacts a gc kept because they were stored or used within its
/// `min_age_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptYoung {
    pub entries: usize,
    pub bytes: u64,
    pub min_age_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedEntry {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub reason: RemovalReason,
}

/// Why an artifact was removed; the wire form of `store::Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    Unused,
    OverSize,
    /// Named by `tfmirror cache delete`.
    Requested,
}

impl From<crate::store::Reason> for RemovalReason {
    fn from(reason: crate::store::Reason) -> RemovalReason {
        use crate::store::Reason;
        match reason {
            Reason::Unused => RemovalReason::Unused,
            Reason::OverSize => RemovalReason::OverSize,
            Reason::Requested => RemovalReason::Requested,
        }
    }
}

/// What `prune` dropped or, dry, would drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    pub pruned: usize,
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Reason;

    #[test]
    fn a_reason_reads_as_the_store_writes_it() {
        for reason in [Reason::Unused, Reason::OverSize, Reason::Requested] {
            let store = serde_json::to_value(reason).unwrap();
            assert_eq!(
                serde_json::to_value(RemovalReason::from(reason)).unwrap(),
                store
            );
            let wire: RemovalReason = serde_json::from_value(store).unwrap();
            assert_eq!(wire, RemovalReason::from(reason));
        }
    }

    #[test]
    fn requests_read_as_the_client_sent_them_before() {
        let gc: GcRequest = serde_json::from_str(
            r#"{"unused_for_secs": 60, "max_size": null, "min_age_secs": 0, "dry_run": true}"#,
        )
        .unwrap();
        assert_eq!(gc.unused_for_secs, Some(60));
        let json = serde_json::to_value(&gc).unwrap();
        assert!(json["max_size"].is_null(), "null, not left out");
        let delete: DeleteRequest = serde_json::from_str(r#"{"pattern": "x"}"#).unwrap();
        assert!(!delete.dry_run);
        let prune: PruneRequest = serde_json::from_str(r#"{"dry_run": false}"#).unwrap();
        assert_eq!(prune.older_than_secs, None);
    }

    #[test]
    fn removed_round_trips() {
        let removed = Removed {
            removed: vec![RemovedEntry {
                name: "registry.terraform.io/hashicorp/aws 5.1.0 linux_amd64".into(),
                path: "providers/x.zip".into(),
                size: 12,
                reason: RemovalReason::OverSize,
            }],
            bytes_freed: 12,
            dry_run: false,
            kept_young: Some(KeptYoung {
                entries: 2,
                bytes: 30,
                min_age_secs: 3600,
            }),
        };
        let json = serde_json::to_value(&removed).unwrap();
        assert_eq!(json["removed"][0]["reason"], "over_size");
        assert_eq!(json["kept_young"]["min_age_secs"], 3600);
        assert_eq!(serde_json::from_value::<Removed>(json).unwrap(), removed);
        let older: Removed =
            serde_json::from_str(r#"{"removed": [], "bytes_freed": 0, "dry_run": true}"#).unwrap();
        assert_eq!(older.kept_young, None, "a server before kept_young");
        let deleted = Removed {
            kept_young: None,
            ..older
        };
        assert!(serde_json::to_value(&deleted)
            .unwrap()
            .get("kept_young")
            .is_none());
        let pruned = serde_json::to_string(&Pruned {
            pruned: 3,
            dry_run: true,
        })
        .unwrap();
        assert_eq!(pruned, r#"{"pruned":3,"dry_run":true}"#);
    }
}
