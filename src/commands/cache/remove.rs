//! `tfmirror cache gc`, `delete` and `prune`: asked of the cache's server,
//! which owns the cache and knows what is in use.

use std::time::Duration;

use serde::Deserialize;

use super::inventory::human_bytes;
use crate::commands::launch::Launch;

/// Sends one admin request and returns the server's JSON answer.
async fn ask(
    launch: &Launch<'_>,
    action: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let server = launch.connect().await?;
    let response = server
        .client(None)?
        .post(format!("{}/_tfmirror/{action}", server.url))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(reqwest::Error::without_url)?;
    let status = response.status();
    let text = response.text().await.map_err(reqwest::Error::without_url)?;
    if !status.is_success() {
        anyhow::bail!("{}", text.trim().trim_start_matches("tfmirror: "));
    }
    Ok(serde_json::from_str(&text)?)
}

#[derive(Debug, Deserialize)]
struct Removed {
    removed: Vec<RemovedEntry>,
    bytes_freed: u64,
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
struct RemovedEntry {
    name: String,
    size: u64,
}

pub struct GcOptions {
    pub unused_for: Duration,
    pub max_size: Option<u64>,
    pub min_age: Duration,
    pub dry_run: bool,
    pub json: bool,
}

pub async fn gc(launch: Launch<'_>, options: GcOptions) -> anyhow::Result<i32> {
    let body = serde_json::json!({
        "unused_for_secs": options.unused_for.as_secs(),
        "max_size": options.max_size,
        "min_age_secs": options.min_age.as_secs(),
        "dry_run": options.dry_run,
    });
    report(ask(&launch, "gc", body).await?, options.json)
}

pub async fn delete(
    launch: Launch<'_>,
    pattern: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let body = serde_json::json!({ "pattern": pattern, "dry_run": dry_run });
    let answer = ask(&launch, "delete", body).await?;
    let nothing = answer["removed"].as_array().is_none_or(|r| r.is_empty());
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
    let body = serde_json::json!({
        "older_than_secs": older_than.map(|d| d.as_secs()),
        "dry_run": dry_run,
    });
    let answer = ask(&launch, "prune", body).await?;
    if json {
        println!("{answer}");
    } else {
        let verb = if dry_run { "would drop" } else { "dropped" };
        println!("{verb} {} metadata entries", answer["pruned"]);
    }
    Ok(0)
}

fn report(answer: serde_json::Value, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(0);
    }
    let removed: Removed = serde_json::from_value(answer)?;
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
