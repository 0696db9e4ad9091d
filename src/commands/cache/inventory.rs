//! The cache's contents as the server reports them, and how they are
//! shown: ages for people, JSON for scripts.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::commands::launch::Launch;
use crate::commands::owner_call::CallError;
use crate::protocol::admin::Artifacts;
use crate::protocol::Endpoint;

/// Asks the cache's server (started if none runs, as `exec` does): it owns
/// the index that knows when each artifact was used.
pub async fn fetch(launch: &Launch<'_>) -> anyhow::Result<Artifacts> {
    let server = launch.connect().await?;
    match server.get(Endpoint::Artifacts, None).await {
        Ok(artifacts) => Ok(artifacts),
        Err(CallError::Status { text, .. }) => {
            anyhow::bail!("the server could not list the cache: {text}")
        }
        Err(e) => Err(e.plain()),
    }
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
