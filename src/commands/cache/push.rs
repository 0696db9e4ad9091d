//! `tfmirror cache push`: uploads what the local cache holds to the shared
//! tier, e.g. after `tfmirror warm`, to seed a fleet's bucket.
//!
//! The list comes from the cache's server (as for `cache list`), kept to
//! the buckets the tier shares ([`crate::store::Bucket::is_shared`]); an
//! object already in the bucket (a HEAD) is skipped, since keys are
//! immutable by name. A git mirror goes up as a `git bundle`, made here
//! from the mirror (which a bundle only reads), unless the bucket already
//! has one: a runner seeded from an older bundle fetches the rest.

use std::path::{Path, PathBuf};

use futures_util::{stream, StreamExt};

use super::inventory;
use crate::catalog::Entry;
use crate::commands::launch::Launch;
use crate::config::Config;
use crate::git::bundle::create_bundle;
use crate::git::mirror::Mirror;
use crate::human_size::human_bytes;
use crate::shared::{self, ObjectKey, SharedError, SharedTier};
use crate::store::{Bucket, RelPath, Segment};

/// One object to push.
struct Item {
    key: ObjectKey,
    source: Source,
    /// How it is shown: its path below the cache.
    shown: String,
    /// Its size in the cache (a mirror's is its directory's).
    size: u64,
}

/// Where an object's bytes come from.
enum Source {
    /// A stored file, uploaded as it is.
    File(PathBuf),
    /// A git mirror (`dir`), of the repository `upstream`, bundled first.
    Mirror { dir: PathBuf, upstream: String },
}

enum Outcome {
    Pushed(u64),
    WouldPush(u64),
    AlreadyThere,
}

/// A dry run only reads, as `cache list` does: it starts no server, and
/// exits 1 with no cache. A push lists the cache through its server,
/// started if none runs, which then reports the tier in `status`.
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
    let listing = if dry_run {
        let Some(listing) = inventory::fetch(launch.cache_dir).await? else {
            inventory::say_no_cache(launch.cache_dir);
            return Ok(1);
        };
        listing
    } else {
        inventory::fetch_from_server(&launch).await?
    };
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
        crate::human_size::human_bytes(bytes)
    );
    if failed > 0 {
        summary.push_str(&format!(", {failed} failed"));
    }
    println!("{summary} ({})", settings.url);
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The shared artifacts of the listing, and its git mirrors, as objects to
/// push.
fn artifacts(cache_dir: &Path, listing: &[Entry]) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for entry in listing {
        let path = cache_dir.join(&entry.path);
        let (key, source) = if shared::is_shared(&entry.path) {
            (ObjectKey::artifact_at(&entry.path)?, Source::File(path))
        } else if let Some(mirror) = git_mirror(&entry.path) {
            let upstream = entry.name.clone();
            let source = Source::Mirror {
                dir: path,
                upstream,
            };
            (ObjectKey::git_bundle(&mirror), source)
        } else {
            continue;
        };
        items.push(Item {
            key,
            source,
            shown: entry.path.clone(),
            size: entry.size,
        });
    }
    Ok(items)
}

/// The mirror's directory below the cache, if `cache_key` is a git mirror.
fn git_mirror(cache_key: &str) -> Option<RelPath> {
    match Bucket::split(cache_key)? {
        (Bucket::GitMirrors, parts) => {
            let segments: Result<Vec<Segment>, _> = parts.into_iter().map(Segment::new).collect();
            Some(Bucket::GitMirrors.join(segments.ok()?))
        }
        _ => None,
    }
}

async fn push_one(tier: &SharedTier, item: &Item, dry_run: bool) -> Result<Outcome, SharedError> {
    if tier.exists(&item.key).await? {
        return Ok(Outcome::AlreadyThere);
    }
    if dry_run {
        return Ok(Outcome::WouldPush(item.size));
    }
    match &item.source {
        Source::File(path) => tier
            .upload_file_now(&item.key, path)
            .await
            .map(Outcome::Pushed),
        Source::Mirror { dir, upstream } => {
            let bundle = tempfile::NamedTempFile::new().map_err(|source| SharedError::Read {
                path: std::env::temp_dir(),
                source,
            })?;
            let mirror = Mirror::new(dir.clone(), upstream.clone());
            let dest = bundle.path().to_owned();
            tokio::task::spawn_blocking(move || create_bundle(&mirror, &dest))
                .await
                .map_err(|e| SharedError::Bundle(e.to_string()))?
                .map_err(|e| SharedError::Bundle(e.to_string()))?;
            tier.upload_file_now(&item.key, bundle.path())
                .await
                .map(Outcome::Pushed)
        }
    }
}

/// A line per object pushed, or a bar (see [`crate::commands::progress`]).
struct Progress(crate::commands::progress::Progress);

impl Progress {
    fn new(total: u64) -> Progress {
        Progress(crate::commands::progress::Progress::new(total, "objects"))
    }

    fn done(&self, item: &Item, outcome: &Result<Outcome, SharedError>) {
        let line = match outcome {
            Ok(Outcome::Pushed(size)) => Some(format!(
                "pushed      {} ({})",
                item.shown,
                human_bytes(*size)
            )),
            Ok(Outcome::WouldPush(size)) => Some(format!(
                "would push  {} ({})",
                item.shown,
                human_bytes(*size)
            )),
            Ok(Outcome::AlreadyThere) => None,
            Err(e) => Some(format!("tfmirror: {}: {e}", item.shown)),
        };
        self.0.done(&item.shown, line, outcome.is_err());
    }

    fn finish(&self) {
        self.0.finish();
    }
}
