//! Which locked providers Terraform may install from the tree, given the
//! server's answers: a provider is included only if, in every lock file
//! that pins it, its entry is ready and the lock has (or may be given) the
//! entry's `h1:`, which is what Terraform checks the directory against.

use std::collections::{BTreeMap, BTreeSet};

use crate::lockfile::{LockFile, LockedProvider, ProviderAddress};
use crate::protocol::prepare::{PrepareItem, Prepared};

/// An `h1:` to add to a lock entry, on the strength of its zip's `zh:`
/// being listed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H1Addition {
    pub version: String,
    pub zh: String,
    pub h1: String,
}

/// What the fast path does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub include: BTreeSet<ProviderAddress>,
    /// By index into the lock files, the `h1:` each needs for `include`.
    pub additions: BTreeMap<usize, BTreeMap<ProviderAddress, H1Addition>>,
    /// Why a provider goes through the registry instead: one message each.
    pub excluded: BTreeMap<ProviderAddress, String>,
}

/// The items to ask the server for: every provider `eligible` of every lock
/// file, each distinct one once.
pub fn items(locks: &[LockFile], eligible: impl Fn(&ProviderAddress) -> bool) -> Vec<PrepareItem> {
    let mut items: Vec<PrepareItem> = Vec::new();
    for provider in locks.iter().flat_map(|lock| &lock.providers) {
        if !eligible(&provider.address) {
            continue;
        }
        let item = item_of(provider);
        if !items.contains(&item) {
            items.push(item);
        }
    }
    items
}

fn item_of(provider: &LockedProvider) -> PrepareItem {
    PrepareItem {
        address: provider.address.to_string(),
        version: provider.version.clone(),
        hashes: provider.hashes.clone(),
    }
}

/// Judges each lock entry of `items` by its answer in `answers` (same
/// order); `update_lock` allows adding a missing `h1:`.
pub fn judge(
    locks: &[LockFile],
    items: &[PrepareItem],
    answers: &[Prepared],
    update_lock: bool,
) -> Verdict {
    let mut verdict = Verdict::default();
    let mut candidates = BTreeSet::new();
    for (index, lock) in locks.iter().enumerate() {
        for provider in &lock.providers {
            let item = item_of(provider);
            let Some(answer) = items.iter().position(|i| *i == item).map(|at| &answers[at]) else {
                continue;
            };
            candidates.insert(provider.address.clone());
            match judge_entry(provider, answer, update_lock) {
                Ok(None) => {}
                Ok(Some(addition)) => {
                    verdict
                        .additions
                        .entry(index)
                        .or_default()
                        .insert(provider.address.clone(), addition);
                }
                Err(why) => {
                    let message = format!("{} {}: {why}", provider.address, provider.version);
                    verdict
                        .excluded
                        .entry(provider.address.clone())
                        .or_insert(message);
                }
            }
        }
    }
    verdict.include = candidates
        .into_iter()
        .filter(|address| !verdict.excluded.contains_key(address))
        .collect();
    for additions in verdict.additions.values_mut() {
        additions.retain(|address, _| verdict.include.contains(address));
    }
    verdict
        .additions
        .retain(|_, additions| !additions.is_empty());
    verdict
}

/// Why a lock file entry cannot be served from the prepared tree.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    /// The server's reason, when it gave one.
    #[error("{}", .0.as_deref().unwrap_or("not prepared"))]
    NotPrepared(Option<String>),
    #[error("the prepared package ({zh}, {h1}) matches none of the lock file's hashes")]
    MatchesNone { zh: String, h1: String },
    #[error("the lock file has no h1: hash for this platform, and update_lock = false")]
    NoH1,
}

/// `Ok(None)`: usable as it is; `Ok(Some)`: usable once the `h1:` is added.
fn judge_entry(
    provider: &LockedProvider,
    answer: &Prepared,
    update_lock: bool,
) -> Result<Option<H1Addition>, Unusable> {
    let (true, Some(h1), Some(zh)) = (answer.ready, &answer.h1, &answer.zh) else {
        return Err(Unusable::NotPrepared(answer.reason.clone()));
    };
    let listed = |hash: &String| provider.hashes.contains(hash);
    if listed(h1) {
        Ok(None)
    } else if !listed(zh) {
        Err(Unusable::MatchesNone {
            zh: zh.clone(),
            h1: h1.clone(),
        })
    } else if update_lock {
        Ok(Some(H1Addition {
            version: provider.version.clone(),
            zh: zh.clone(),
            h1: h1.clone(),
        }))
    } else {
        Err(Unusable::NoH1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lock(path: &str, entries: &[(&str, &[&str])]) -> LockFile {
        let text: String = entries
            .iter()
            .map(|(address, hashes)| {
                let hashes: Vec<String> = hashes.iter().map(|h| format!("\"{h}\"")).collect();
                format!(
                    "provider \"{address}\" {{\n  version = \"1.0.0\"\n  hashes = [{}]\n}}\n",
                    hashes.join(", ")
                )
            })
            .collect();
        LockFile::parse(Path::new(path), &text).unwrap()
    }

    const A: &str = "registry.terraform.io/hashicorp/a";
    const B: &str = "registry.terraform.io/hashicorp/b";

    fn address(text: &str) -> ProviderAddress {
        ProviderAddress::parse(text).unwrap()
    }

    fn ready(item: &PrepareItem) -> Prepared {
        Prepared::ready(item, "h1:local=".into(), "zh:11".into())
    }

    #[test]
    fn ready_entries_with_an_h1_or_a_matching_zh_are_included() {
        let locks = [lock(
            "one",
            &[(A, &["h1:local=", "zh:11"]), (B, &["h1:other=", "zh:11"])],
        )];
        let items = items(&locks, |_| true);
        let answers: Vec<Prepared> = items.iter().map(ready).collect();

        let verdict = judge(&locks, &items, &answers, true);
        assert_eq!(verdict.include, BTreeSet::from([address(A), address(B)]));
        let added = &verdict.additions[&0][&address(B)];
        assert_eq!(
            (added.h1.as_str(), added.zh.as_str()),
            ("h1:local=", "zh:11")
        );
        assert!(!verdict.additions[&0].contains_key(&address(A)));

        let verdict = judge(&locks, &items, &answers, false);
        assert_eq!(verdict.include, BTreeSet::from([address(A)]));
        assert!(verdict.additions.is_empty());
        assert!(verdict.excluded[&address(B)].contains("update_lock = false"));
    }

    #[test]
    fn one_lock_file_that_cannot_use_the_tree_excludes_the_provider() {
        let locks = [
            lock("one", &[(A, &["zh:11"])]),
            lock("two", &[(A, &["zh:22"])]),
        ];
        let items = items(&locks, |_| true);
        assert_eq!(items.len(), 2, "different hashes, asked separately");
        let answers = vec![
            ready(&items[0]),
            Prepared::not_ready(&items[1], "zip does not match"),
        ];
        let verdict = judge(&locks, &items, &answers, true);
        assert!(verdict.include.is_empty());
        assert!(
            verdict.additions.is_empty(),
            "nothing added for an excluded provider"
        );
        assert!(verdict.excluded[&address(A)].ends_with("zip does not match"));

        let answers = vec![ready(&items[0]), ready(&items[1])];
        let verdict = judge(&locks, &items, &answers, true);
        assert!(verdict.include.is_empty(), "zh:11 is not listed in two");
        assert!(verdict.excluded[&address(A)].contains("matches none"));
    }

    #[test]
    fn only_eligible_providers_are_asked_for() {
        let locks = [lock("one", &[(A, &["zh:11"]), (B, &["zh:11"])])];
        let items = items(&locks, |address| *address == address_b());
        assert_eq!(items.len(), 1);
        let verdict = judge(&locks, &items, &[ready(&items[0])], true);
        assert_eq!(verdict.include, BTreeSet::from([address(B)]));
    }

    fn address_b() -> ProviderAddress {
        address(B)
    }
}
