//! `tfmirror cache push`: uploads what the local cache holds to the shared
//! tier, e.g. after `tfmirror warm`, to seed a fleet's bucket.
//!
//! The list comes from the cache's server (as for `cache list`), kept to
//! the buckets the tier shares ([`crate::store::Bucket::is_shared`]); an
//! object already in the bucket (a HEAD) is skipped, since keys are
//! immutable by name.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{stream, StreamExt};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::inventory;
use crate::catalog::Entry;
use crate::commands::launch::Launch;
use crate::config::Config;
use crate::shared::{self, ObjectKey, SharedError, SharedTier};

/// One object to push.
struct Item {
    key: ObjectKey,
    path: PathBuf,
    /// How it is shown: its path below the cache.
    shown: String,
}

enum Outcome {
    Pushed(u64),
    WouldPush(u64),
    AlreadyThere,
}

pub async fn run(launch: Launch<'_>, config: &Config, dry_run: bool) -> anyhow::Result<i32> {
    let Some(settings) = &config.shared else {
        anyhow::bail!(
            "there is no shared tier to push to: add a [shared] section with a url to the config file"
        );
    };
    if !settings.upload && !dry_run {
        anyhow::bail!("[shared] upload = false: this machine does not write to the bucket");
    }
    let tier = SharedTier::from_config(settings, config.upstream_retry_after)?;
    let listing = inventory::fetch(&launch).await?;
    let items = artifacts(&listing.cache_dir, &listing.artifacts)?;
    let progress = Progress::new(items.len() as u64);
    let outcomes: Vec<(Item, Result<Outcome, SharedError>)> = stream::iter(items)
        .map(|item| {
            let tier = &tier;
            async move {
                let outcome = push_one(tier, &item, dry_run).await;
                (item, outcome)
            }
        })
        .buffer_unordered(shared::MAX_UPLOADS)
        .inspect(|(item, outcome)| progress.done(item, outcome))
        .collect()
        .await;
    progress.finish();
    let (mut pushed, mut bytes, mut there, mut failed) = (0, 0, 0, 0);
    for (_, outcome) in &outcomes {
        match outcome {
            Ok(Outcome::Pushed(size) | Outcome::WouldPush(size)) => {
                pushed += 1;
                bytes += size;
            }
            Ok(Outcome::AlreadyThere) => there += 1,
            Err(_) => failed += 1,
        }
    }
    let verb = if dry_run { "would push" } else { "pushed" };
    let mut summary = format!(
        "{verb} {pushed} objects ({}), {there} already there",
        super::human_bytes(bytes)
    );
    if failed > 0 {
        summary.push_str(&format!(", {failed} failed"));
    }
    println!("{summary} ({})", settings.url);
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The shared artifacts of the listing, as objects to push. Git bundles
/// of mirrors join this list once the store makes them.
fn artifacts(cache_dir: &Path, listing: &[Entry]) -> anyhow::Result<Vec<Item>> {
    listing
        .iter()
        .filter(|entry| shared::is_shared(&entry.path))
        .map(|entry| {
            Ok(Item {
                key: ObjectKey::artifact_at(&entry.path)?,
                path: cache_dir.join(&entry.path),
                shown: entry.path.clone(),
            })
        })
        .collect()
}

async fn push_one(tier: &SharedTier, item: &Item, dry_run: bool) -> Result<Outcome, SharedError> {
    if tier.exists(&item.key).await? {
        return Ok(Outcome::AlreadyThere);
    }
    if dry_run {
        let size = tokio::fs::metadata(&item.path)
            .await
            .map_err(|source| SharedError::Read {
                path: item.path.clone(),
                source,
            })?
            .len();
        return Ok(Outcome::WouldPush(size));
    }
    tier.upload_file_now(&item.key, &item.path)
        .await
        .map(Outcome::Pushed)
}

/// A bar on a terminal; elsewhere a line per object pushed.
struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} objects, {elapsed} {wide_msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            let bar = ProgressBar::new(total).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }

    fn done(&self, item: &Item, outcome: &Result<Outcome, SharedError>) {
        let line = match outcome {
            Ok(Outcome::Pushed(size)) => Some(format!(
                "pushed      {} ({})",
                item.shown,
                HumanBytes(*size)
            )),
            Ok(Outcome::WouldPush(size)) => Some(format!(
                "would push  {} ({})",
                item.shown,
                HumanBytes(*size)
            )),
            Ok(Outcome::AlreadyThere) => None,
            Err(e) => Some(format!("tfmirror: {}: {e}", item.shown)),
        };
        match &self.bar {
            Some(bar) => {
                if let (Err(_), Some(line)) = (outcome, &line) {
                    bar.println(line);
                }
                bar.set_message(item.shown.clone());
                bar.inc(1);
            }
            None => {
                if let Some(line) = line {
                    eprintln!("{line}");
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
