//! `tfmirror cache list`: one row per artifact.

use globset::{Glob, GlobMatcher};

use super::inventory::{self, ago};
use crate::catalog::{Entry, Kind};
use std::path::Path;

use crate::human_size::human_bytes;

/// Exit 1 with no cache at `cache_dir`.
pub async fn run(
    cache_dir: &Path,
    kind: Option<Kind>,
    filter: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let matcher = filter.map(matcher).transpose()?;
    let Some(inventory) = inventory::fetch(cache_dir).await? else {
        inventory::say_no_cache(cache_dir);
        return Ok(1);
    };
    let rows: Vec<&Entry> = inventory
        .artifacts
        .iter()
        .filter(|entry| kind.is_none_or(|kind| entry.kind == kind))
        .filter(|entry| {
            matcher
                .as_ref()
                .is_none_or(|m| m.is_match(&entry.name) || m.is_match(&entry.path))
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(0)
}

/// A glob over the name (`*/hashicorp/aws *`) or the path below the cache.
fn matcher(pattern: &str) -> anyhow::Result<GlobMatcher> {
    Ok(Glob::new(pattern)
        .map_err(|e| anyhow::anyhow!("--filter {pattern:?}: {e}"))?
        .compile_matcher())
}

fn print_table(rows: &[&Entry]) {
    println!(
        "{:<9} {:>8}  {:<10} {:>5}  NAME",
        "KIND", "SIZE", "LAST USED", "USES"
    );
    for entry in rows {
        println!(
            "{:<9} {:>8}  {:<10} {:>5}  {}",
            entry.kind.as_str(),
            human_bytes(entry.size),
            ago(entry.last_used_ms),
            entry.uses,
            entry.name
        );
    }
}
