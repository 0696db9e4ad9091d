//! Choosing what to remove when the cache must shrink.
//!
//! The plan is a pure function of the inventory and the rules, so it can be
//! shown (`--dry-run`) and tested exactly; [`super::Store::remove`] carries
//! it out. Two passes:
//!
//! 1. everything unused for longer than `unused_for`;
//! 2. then, while the cache is larger than `max_size`, the least valuable
//!    artifact left: least recently used first, then fewest uses, then
//!    largest (freeing the most for the least loss).
//!
//! In both, derived artifacts (unpacked provider trees) go before any
//! other: they cost only local work to make again, and removing the zip a
//! tree was made from first would leave a tree nothing can vouch for.
//!
//! Never removed: anything stored or used within `min_age`. That protects
//! an artifact being downloaded or served right now (each use is recorded
//! when it starts) and one a running `init` is about to ask for again.
//! The plan counts what the rules chose but `min_age` kept, so that a gc
//! that frees nothing can say why.

use std::time::Duration;

use super::inventory::StoredArtifact;

#[derive(Debug, Clone, Default)]
pub struct GcRules {
    pub unused_for: Option<Duration>,
    pub max_size: Option<u64>,
    pub min_age: Duration,
}

/// Why an artifact is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Unused,
    OverSize,
    /// Named by `tfmirror cache delete`.
    Requested,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    pub key: String,
    pub size: u64,
    pub reason: Reason,
}

/// What a gc would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcPlan {
    /// The artifacts to remove, in the order they would be removed.
    pub removals: Vec<Removal>,
    /// What the rules chose but `min_age` kept.
    pub young: Young,
}

/// Artifacts the rules chose (unused, or next to go over the size) that
/// were stored or used within `min_age`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Young {
    pub entries: usize,
    pub bytes: u64,
}

impl Young {
    fn add(&mut self, artifact: &StoredArtifact) {
        self.entries += 1;
        self.bytes += artifact.size;
    }
}

/// The plan for `artifacts` under `rules` at `now_ms`.
pub fn plan(artifacts: &[StoredArtifact], rules: &GcRules, now_ms: u64) -> GcPlan {
    let ms = |d: Duration| d.as_millis() as u64;
    let protected_since = now_ms.saturating_sub(ms(rules.min_age));
    let removable =
        |a: &StoredArtifact| a.usage.last_used_ms.max(a.usage.stored_at_ms) < protected_since;
    let mut plan = GcPlan::default();
    // What the first pass keeps, and whether it was counted young there:
    // the second pass may meet it again and must not count it twice.
    let mut kept: Vec<(&StoredArtifact, bool)> = Vec::new();
    let derived_first = artifacts
        .iter()
        .filter(|a| a.derived)
        .chain(artifacts.iter().filter(|a| !a.derived));
    for artifact in derived_first {
        let unused = rules
            .unused_for
            .is_some_and(|d| artifact.usage.last_used_ms < now_ms.saturating_sub(ms(d)));
        if !unused {
            kept.push((artifact, false));
        } else if removable(artifact) {
            plan.removals.push(removal(artifact, Reason::Unused));
        } else {
            plan.young.add(artifact);
            kept.push((artifact, true));
        }
    }
    if let Some(max_size) = rules.max_size {
        let mut total: u64 = kept.iter().map(|(a, _)| a.size).sum();
        kept.sort_by(|(a, _), (b, _)| {
            (
                !a.derived,
                a.usage.last_used_ms,
                a.usage.hits,
                std::cmp::Reverse(a.size),
                &a.key,
            )
                .cmp(&(
                    !b.derived,
                    b.usage.last_used_ms,
                    b.usage.hits,
                    std::cmp::Reverse(b.size),
                    &b.key,
                ))
        });
        for (artifact, counted) in kept {
            if total <= max_size {
                break;
            }
            if removable(artifact) {
                total -= artifact.size;
                plan.removals.push(removal(artifact, Reason::OverSize));
            } else if !counted {
                plan.young.add(artifact);
            }
        }
    }
    plan
}

fn removal(artifact: &StoredArtifact, reason: Reason) -> Removal {
    Removal {
        key: artifact.key.clone(),
        size: artifact.size,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::Usage;

    const HOUR: u64 = 3_600_000;
    const NOW: u64 = 1_000 * HOUR;

    fn artifact(key: &str, size: u64, last_used_hours_ago: u64, hits: u64) -> StoredArtifact {
        let last_used = NOW - last_used_hours_ago * HOUR;
        StoredArtifact {
            key: key.to_owned(),
            size,
            usage: Usage {
                size,
                sha256: None,
                stored_at_ms: last_used.min(NOW - 500 * HOUR),
                last_used_ms: last_used,
                hits,
            },
            derived: false,
        }
    }

    #[test]
    fn removes_the_unused_then_the_least_valuable_until_small_enough() {
        let artifacts = [
            artifact("a-old-unused", 100, 800, 9),
            artifact("b-lru-small", 10, 100, 1),
            artifact("c-lru-big", 50, 100, 1),
            artifact("d-lru-popular", 70, 100, 5),
            artifact("e-recent", 40, 50, 0),
            artifact("f-used-a-moment-ago", 500, 0, 0),
        ];
        let rules = GcRules {
            unused_for: Some(Duration::from_secs(30 * 24 * 3600)),
            max_size: Some(560),
            min_age: Duration::from_secs(12 * 3600),
        };
        insta::assert_json_snapshot!(plan(&artifacts, &rules, NOW));
    }

    #[test]
    fn derived_trees_go_first_but_not_within_min_age() {
        let tree = |key, hours_ago| StoredArtifact {
            derived: true,
            ..artifact(key, 100, hours_ago, 9)
        };
        let artifacts = [
            artifact("providers/zip-long-unused", 10, 400, 0),
            tree("providers-unpacked/tree-used-lately", 200),
            tree("providers-unpacked/tree-in-use", 1),
            artifact("providers/zip-of-a-tree", 100, 300, 0),
        ];
        let rules = GcRules {
            unused_for: Some(Duration::from_secs(100 * 3600)),
            max_size: Some(150),
            min_age: Duration::from_secs(12 * 3600),
        };
        let keys: Vec<_> = plan(&artifacts, &rules, NOW)
            .removals
            .into_iter()
            .map(|r| (r.key, r.reason))
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "providers-unpacked/tree-used-lately".to_owned(),
                    Reason::Unused
                ),
                ("providers/zip-long-unused".to_owned(), Reason::Unused),
                ("providers/zip-of-a-tree".to_owned(), Reason::Unused),
            ],
            "the tree in use stays; every other goes, the tree first"
        );

        let rules = GcRules {
            unused_for: None,
            max_size: Some(250),
            ..rules
        };
        let keys: Vec<_> = plan(&artifacts, &rules, NOW)
            .removals
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(
            keys,
            ["providers-unpacked/tree-used-lately"],
            "over size, a tree used more lately than a zip still goes first"
        );
    }

    #[test]
    fn keeps_what_was_used_within_min_age_even_over_the_limit() {
        let artifacts = [artifact("big", 1000, 1, 0), artifact("small", 10, 2, 0)];
        let rules = GcRules {
            max_size: Some(0),
            min_age: Duration::from_secs(12 * 3600),
            ..GcRules::default()
        };
        let plan = plan(&artifacts, &rules, NOW);
        assert_eq!(plan.removals, []);
        assert_eq!(
            plan.young,
            Young {
                entries: 2,
                bytes: 1010
            },
            "both were chosen by size and kept by age"
        );
    }

    #[test]
    fn counts_what_min_age_kept_once() {
        let artifacts = [
            artifact("young-unused", 100, 1, 0),
            artifact("young-used", 10, 0, 0),
            artifact("old-unused", 5, 900, 0),
            artifact("old-used", 1, 100, 0),
        ];
        let rules = GcRules {
            unused_for: Some(Duration::ZERO),
            max_size: Some(0),
            min_age: Duration::from_secs(2 * 3600),
        };
        let plan = plan(&artifacts, &rules, NOW);
        let keys: Vec<_> = plan.removals.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["old-unused", "old-used"]);
        assert_eq!(
            plan.young,
            Young {
                entries: 2,
                bytes: 110
            },
            "the unused young one counts once, though the size pass meets it too"
        );

        let quiet = GcRules {
            unused_for: Some(Duration::from_secs(24 * 3600)),
            max_size: None,
            ..rules
        };
        assert_eq!(
            super::plan(&artifacts, &quiet, NOW).young,
            Young::default(),
            "nothing young was chosen: used within a day is not unused"
        );
    }
}
