//! `tfmirror cache stats`: how much the cache holds, by kind.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::inventory::{self, ago};
use crate::catalog::{Entry, Kind};
use crate::human_size::human_bytes;

#[derive(Debug, Serialize)]
struct Stats<'a> {
    total_bytes: u64,
    artifacts: usize,
    by_kind: BTreeMap<Kind, KindStats>,
    largest: Vec<&'a Entry>,
    oldest_last_use_ms: Option<u64>,
    metadata_entries: usize,
}

#[derive(Debug, Default, Serialize)]
struct KindStats {
    count: usize,
    bytes: u64,
}

/// Exit 1 with no cache at `cache_dir`.
pub async fn run(cache_dir: &Path, json: bool) -> anyhow::Result<i32> {
    let Some(inventory) = inventory::fetch(cache_dir).await? else {
        inventory::say_no_cache(cache_dir);
        return Ok(1);
    };
    let stats = stats(&inventory.artifacts, inventory.metadata_entries);
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print(&stats);
    }
    Ok(0)
}

fn stats(artifacts: &[Entry], metadata_entries: usize) -> Stats<'_> {
    let mut by_kind: BTreeMap<Kind, KindStats> = BTreeMap::new();
    for entry in artifacts {
        let kind = by_kind.entry(entry.kind).or_default();
        kind.count += 1;
        kind.bytes += entry.size;
    }
    let mut largest: Vec<&Entry> = artifacts.iter().collect();
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(5);
    Stats {
        total_bytes: artifacts.iter().map(|e| e.size).sum(),
        artifacts: artifacts.len(),
        by_kind,
        largest,
        oldest_last_use_ms: artifacts.iter().map(|e| e.last_used_ms).min(),
        metadata_entries,
    }
}

fn print(stats: &Stats) {
    println!(
        "{} in {} artifacts, {} metadata entries",
        human_bytes(stats.total_bytes),
        stats.artifacts,
        stats.metadata_entries
    );
    for (kind, kind_stats) in &stats.by_kind {
        println!(
            "  {:<9} {:>8} in {}",
            kind.as_str(),
            human_bytes(kind_stats.bytes),
            kind_stats.count
        );
    }
    if let Some(oldest) = stats.oldest_last_use_ms {
        println!("least recently used: {}", ago(oldest));
    }
    if !stats.largest.is_empty() {
        println!("largest:");
        for entry in &stats.largest {
            println!("  {:>8}  {}", human_bytes(entry.size), entry.name);
        }
    }
}
