//! `tfmirror bundle import FILE`: streams the bundle to the server that
//! owns the cache, which checks all of it before it stores any of it (see
//! `server::bundle_import`), and prints what was stored.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;

use super::{PROGRESS_FROM, PROGRESS_STEP};
use crate::commands::launch::Launch;
use crate::commands::progress::Progress;
use crate::human_size::human_bytes;
use crate::protocol::closure::ImportAnswer;
use crate::protocol::Endpoint;

/// Exit 0 when the bundle was imported (or was all cached already), 1
/// naming the entry that refused it.
pub async fn run(launch: Launch<'_>, file: &Path) -> anyhow::Result<i32> {
    let opened = tokio::fs::File::open(file)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let size = opened.metadata().await?.len();
    let server = launch.connect().await?;
    let progress =
        (size > PROGRESS_FROM).then(|| Arc::new(Progress::new(size.div_ceil(PROGRESS_STEP), "MB")));
    let body = reqwest::Body::wrap_stream(counted(opened, progress.clone()));
    let answer = server
        .post_streamed::<ImportAnswer>(Endpoint::BundleImport, body)
        .await;
    if let Some(progress) = progress {
        progress.finish();
    }
    match answer {
        Ok(answer) => {
            println!("{}", summary(&answer));
            Ok(0)
        }
        Err(e) => {
            eprintln!("tfmirror: {}: {}", file.display(), e.plain());
            Ok(1)
        }
    }
}

/// The file's chunks, each counted into the progress display.
fn counted(
    file: tokio::fs::File,
    progress: Option<Arc<Progress>>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    let sent = Arc::new(AtomicU64::new(0));
    tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
        let (Some(progress), Ok(chunk)) = (&progress, chunk) else {
            return;
        };
        let before = sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let after = before + chunk.len() as u64;
        for mb in before / PROGRESS_STEP + 1..=after / PROGRESS_STEP {
            progress.done(&format!("{mb} MB"), None, false);
        }
    })
}

/// `imported N entries (X MB), M already cached`.
fn summary(answer: &ImportAnswer) -> String {
    format!(
        "imported {} entries ({}), {} already cached",
        answer.imported,
        human_bytes(answer.imported_bytes),
        answer.already_cached
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_stored_and_what_was_there() {
        let answer = ImportAnswer {
            imported: 3,
            imported_bytes: 5 << 20,
            already_cached: 2,
        };
        let line = summary(&answer);
        assert!(line.starts_with("imported 3 entries ("), "{line}");
        assert!(line.ends_with("), 2 already cached"), "{line}");
    }
}
