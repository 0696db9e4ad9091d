//! `tfmirror cache gc`, `delete` and `prune`: asked of the cache's server,
//! which owns the cache and knows what is in use.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::commands::launch::Launch;
use crate::human_size::human_bytes;
use crate::protocol::admin::{DeleteRequest, GcRequest, PruneRequest, Pruned, Removed};
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
    pub min_age: Duration,
    pub dry_run: bool,
    pub json: bool,
}

pub async fn gc(launch: Launch<'_>, options: GcOptions) -> anyhow::Result<i32> {
    let request = GcRequest {
        unused_for_secs: Some(options.unused_for.as_secs()),
        max_size: options.max_size,
        min_age_secs: options.min_age.as_secs(),
        dry_run: options.dry_run,
    };
    report(ask(&launch, Endpoint::Gc, &request).await?, options.json)
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
    let nothing = answer.removed.is_empty();
    report(answer, json)?;
    if nothing {
        eprintln!("tfmirror: nothing in the cache matches {pattern:?}");
        return Ok(1);
    }
    Ok(0)
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

fn report(removed: Removed, json: bool) -> anyhow::Result<i32> {
    if json {
        // Through a `Value`, whose keys print sorted, as they always have.
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(&removed)?)?
        );
        return Ok(0);
    }
    let verb = if removed.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for entry in &removed.removed {
        println!("{verb} {} ({})", entry.name, human_bytes(entry.size));
    }
    let freed = if removed.dry_run {
        "would free"
    } else {
        "freed"
    };
    println!(
        "{freed} {} in {} artifacts",
        human_bytes(removed.bytes_freed),
        removed.removed.len()
    );
    Ok(0)
}
