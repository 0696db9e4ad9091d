//! `tfmirror cache gc`, `delete` and `prune`: asked of the cache's server,
//! which owns the cache and knows what is in use.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::commands::launch::Launch;
use crate::human_size::human_bytes;
use crate::protocol::admin::{DeleteRequest, GcRequest, KeptYoung, PruneRequest, Pruned, Removed};
use crate::protocol::Endpoint;

/// Sends one admin request and returns the server's answer.
async fn ask<A: DeserializeOwned>(
    launch: &Launch<'_>,
    action: Endpoint<'_>,
    request: &impl Serialize,
) -> anyhow::Result<A> {
    let server = launch.connect().await?;
    server
        .post(action, request, None)
        .await
        .map_err(|e| e.plain())
}

pub struct GcOptions {
    pub unused_for: Duration,
    pub max_size: Option<u64>,
    pub min_age: MinAge,
    pub dry_run: bool,
    pub json: bool,
}

/// `gc`'s protection of what is new, and where it was set: a gc that
/// keeps something for it names the setting to change.
#[derive(Debug, Clone, Copy)]
pub enum MinAge {
    /// `--min-age`.
    Flag(Duration),
    /// The config's `gc_min_age` (or its default).
    Config(Duration),
}

impl MinAge {
    fn duration(self) -> Duration {
        match self {
            MinAge::Flag(d) | MinAge::Config(d) => d,
        }
    }
}

impl std::fmt::Display for MinAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            MinAge::Flag(d) => write!(f, "--min-age {}", humantime::format_duration(d)),
            MinAge::Config(d) => write!(f, "gc_min_age = {}", humantime::format_duration(d)),
        }
    }
}

pub async fn gc(launch: Launch<'_>, options: GcOptions) -> anyhow::Result<i32> {
    let request = GcRequest {
        unused_for_secs: Some(options.unused_for.as_secs()),
        max_size: options.max_size,
        min_age_secs: options.min_age.duration().as_secs(),
        dry_run: options.dry_run,
    };
    let removed: Removed = ask(&launch, Endpoint::Gc, &request).await?;
    if options.json {
        print_json(&removed)?;
    } else {
        print!("{}", gc_text(&removed, &options));
    }
    Ok(0)
}

/// What `gc` removed, and why it removed no more: what `min_age` kept,
/// else that nothing met the rules.
fn gc_text(removed: &Removed, options: &GcOptions) -> String {
    let young = removed.kept_young.filter(|young| young.entries > 0);
    let count = |young: KeptYoung| {
        let entries = match young.entries {
            1 => "1 entry".to_owned(),
            n => format!("{n} entries"),
        };
        format!("{entries} ({})", human_bytes(young.bytes))
    };
    let min_age = options.min_age;
    if removed.removed.is_empty() {
        let why = match young {
            Some(young) => {
                let verb = if young.entries == 1 { "is" } else { "are" };
                format!("{} {verb} younger than {min_age}", count(young))
            }
            None => {
                let unused = humantime::format_duration(options.unused_for);
                let size = options.max_size.map_or(String::new(), |max| {
                    format!(", and the cache is within {}", human_bytes(max))
                });
                format!("nothing was unused for {unused}{size}")
            }
        };
        return format!("nothing to free: {why}\n");
    }
    let mut text = removed_text(removed);
    if let Some(young) = young {
        let keep = if removed.dry_run {
            "would keep"
        } else {
            "kept"
        };
        text.push_str(&format!("{keep} {} younger than {min_age}\n", count(young)));
    }
    text
}

pub async fn delete(
    launch: Launch<'_>,
    pattern: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let request = DeleteRequest {
        pattern: pattern.to_owned(),
        dry_run,
    };
    let answer: Removed = ask(&launch, Endpoint::Delete, &request).await?;
    if json {
        print_json(&answer)?;
    } else if answer.removed.is_empty() {
        eprintln!("tfmirror: {}", no_match_text(pattern));
    } else {
        print!("{}", removed_text(&answer));
    }
    Ok(if answer.removed.is_empty() { 1 } else { 0 })
}

/// The one message of a `delete` that matched nothing.
fn no_match_text(pattern: &str) -> String {
    format!("nothing in the cache matches {pattern:?}; `tfmirror cache list` shows what it holds")
}

pub async fn prune(
    launch: Launch<'_>,
    older_than: Option<Duration>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let request = PruneRequest {
        older_than_secs: older_than.map(|d| d.as_secs()),
        dry_run,
    };
    let answer: Pruned = ask(&launch, Endpoint::Prune, &request).await?;
    if json {
        // Through a `Value`, whose keys print sorted, as they always have.
        println!("{}", serde_json::to_value(&answer)?);
    } else {
        let verb = if dry_run { "would drop" } else { "dropped" };
        println!("{verb} {} metadata entries", answer.pruned);
    }
    Ok(0)
}

/// Through a `Value`, whose keys print sorted, as they always have.
fn print_json(removed: &Removed) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::to_value(removed)?)?
    );
    Ok(())
}

/// One line per artifact removed, and the total.
fn removed_text(removed: &Removed) -> String {
    let (verb, freed) = if removed.dry_run {
        ("would remove", "would free")
    } else {
        ("removed", "freed")
    };
    let mut text = String::new();
    for entry in &removed.removed {
        text.push_str(&format!(
            "{verb} {} ({})\n",
            entry.name,
            human_bytes(entry.size)
        ));
    }
    let artifacts = match removed.removed.len() {
        1 => "1 artifact".to_owned(),
        n => format!("{n} artifacts"),
    };
    text.push_str(&format!(
        "{freed} {} in {artifacts}\n",
        human_bytes(removed.bytes_freed)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::admin::{RemovalReason, RemovedEntry};

    const HOUR: Duration = Duration::from_secs(3600);

    fn options(min_age: MinAge, max_size: Option<u64>) -> GcOptions {
        GcOptions {
            unused_for: 30 * 24 * HOUR,
            max_size,
            min_age,
            dry_run: false,
            json: false,
        }
    }

    fn removed(entries: &[(&str, u64)], young: (usize, u64), dry_run: bool) -> Removed {
        let removed: Vec<RemovedEntry> = entries
            .iter()
            .map(|(name, size)| RemovedEntry {
                name: (*name).to_owned(),
                path: format!("providers/{name}"),
                size: *size,
                reason: RemovalReason::Unused,
            })
            .collect();
        Removed {
            bytes_freed: removed.iter().map(|r| r.size).sum(),
            removed,
            dry_run,
            kept_young: Some(KeptYoung {
                entries: young.0,
                bytes: young.1,
                min_age_secs: 3600,
            }),
        }
    }

    #[test]
    fn a_gc_that_frees_nothing_says_why() {
        let config = options(MinAge::Config(HOUR), None);
        let flag = options(
            MinAge::Flag(10 * 60 * Duration::from_secs(1)),
            Some(10_000_000_000),
        );
        let zip = (
            "registry.terraform.io/hashicorp/tls 4.0.5 linux_amd64",
            3_400_000,
        );
        let text = [
            gc_text(&removed(&[], (7, 48_300_000), false), &config),
            gc_text(&removed(&[], (1, 900), true), &flag),
            gc_text(&removed(&[], (0, 0), false), &config),
            gc_text(&removed(&[], (0, 0), false), &flag),
            gc_text(&removed(&[zip], (2, 5_000), false), &config),
            gc_text(&removed(&[zip], (0, 0), true), &config),
        ]
        .join("---\n");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn an_answer_of_a_server_before_kept_young_reads_as_before() {
        let older = Removed {
            kept_young: None,
            ..removed(&[], (0, 0), false)
        };
        assert_eq!(
            gc_text(&older, &options(MinAge::Config(HOUR), None)),
            "nothing to free: nothing was unused for 30days\n"
        );
    }

    #[test]
    fn a_delete_that_matches_nothing_says_so_once() {
        insta::assert_snapshot!(no_match_text("hashicorp/nope"));
    }
}
