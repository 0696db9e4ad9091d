//! The cache's contents, as its server reports them or read from its
//! files, and how ages are shown to people.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::catalog::Entry;
use crate::commands::launch::Launch;
use crate::commands::owner_call::CallError;
use crate::commands::Health;
use crate::protocol::admin::Artifacts;
use crate::protocol::Endpoint;
use crate::store::{OwnerLockError, Unowned};

/// How long a look waits for a server that holds the cache but does not
/// answer yet: one that is starting.
const STARTING_SERVER_WAIT: Duration = Duration::from_secs(10);

/// What the cache at `cache_dir` holds, or `None` when there is no cache
/// there. Its running server is asked (it owns the index that knows when
/// each artifact was used); with none, the directory is read directly.
/// Either way no server is started and no directory made: a look must
/// leave nothing behind.
pub async fn fetch(cache_dir: &Path) -> anyhow::Result<Option<Artifacts>> {
    if let Some(server) = crate::commands::running_server(cache_dir).await {
        return ask(&server).await.map(Some);
    }
    let started = Instant::now();
    loop {
        let dir = cache_dir.to_owned();
        match tokio::task::spawn_blocking(move || read_unowned(&dir)).await? {
            Ok(found) => return Ok(found),
            Err(ReadError::Owned(OwnerLockError::Busy(_))) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(server) = crate::commands::running_server(cache_dir).await {
            return ask(&server).await.map(Some);
        }
        if started.elapsed() > STARTING_SERVER_WAIT {
            anyhow::bail!(
                "another tfmirror process owns the cache at {} and its server does not answer",
                cache_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the cache holds, from its server, started first if none runs, as
/// `exec` does: for a command that goes on to use the server (`cache push`
/// uploads, and its server then shows the tier's health in `status`).
pub async fn fetch_from_server(launch: &Launch<'_>) -> anyhow::Result<Artifacts> {
    ask(&launch.connect().await?).await
}

/// What a command that found no cache says: to stderr, so that `--json`
/// output stays clean; the command exits 1, as `status` does with no
/// server.
pub fn say_no_cache(cache_dir: &Path) {
    eprintln!("no tfmirror cache at {}", cache_dir.display());
}

async fn ask(server: &Health) -> anyhow::Result<Artifacts> {
    match server.get(Endpoint::Artifacts, None).await {
        Ok(artifacts) => Ok(artifacts),
        Err(CallError::Status { text, .. }) => {
            anyhow::bail!("the server could not list the cache: {text}")
        }
        Err(e) => Err(e.plain()),
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Owned(#[from] OwnerLockError),
    #[error("cannot read the cache at {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The cache read from its files while no server owns it, named as a
/// server names it. Blocking: it walks the whole cache.
fn read_unowned(cache_dir: &Path) -> Result<Option<Artifacts>, ReadError> {
    let Some(cache) = Unowned::open(cache_dir)? else {
        return Ok(None);
    };
    let artifacts = cache.inventory().map_err(|source| ReadError::Io {
        path: cache_dir.to_owned(),
        source,
    })?;
    let document = |key: &str| cache.document(key).map(|doc| doc.body.to_string());
    Ok(Some(Artifacts {
        cache_dir: cache_dir.to_owned(),
        artifacts: artifacts
            .iter()
            .map(|artifact| Entry::with_documents(artifact, &document))
            .collect(),
        metadata_entries: cache.metadata_entries(),
    }))
}

/// How long ago a time in ms since the epoch was, in its largest unit.
pub fn ago(ms: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}
