//! An artifact's body, bounded in size and in the time between bytes: an
//! upstream that sends without end, or drips so slowly that it never
//! finishes, must not fill the disk or hold the requests waiting for it.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::human_size::human_bytes;

/// The config key of the stall timeout, named in its error.
const STALL_KEY: &str = "download_stall_timeout";

/// The bounds of one body; `size_key` is the config key that raises
/// `max_size`, named in the error so the user knows what to change.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_size: u64,
    pub size_key: &'static str,
    pub stall: Duration,
}

/// Why a body was given up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    #[error("the download is larger than {} ({key})", human_bytes(*.max_size))]
    TooLarge { max_size: u64, key: &'static str },
    #[error("the upstream sent nothing for {} ({STALL_KEY})", humantime::format_duration(*.0))]
    Stalled(Duration),
    #[error("the download broke off: {0}")]
    Broken(String),
    /// The request failed before the body began (refused, 404, ...).
    #[error("{0}")]
    Unavailable(super::ArtifactError),
}

/// A download under way: its announced length and its bounded chunks.
pub struct Body {
    pub content_length: Option<u64>,
    pub chunks: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>,
}

impl BodyLimits {
    fn too_large(&self) -> BodyError {
        BodyError::TooLarge {
            max_size: self.max_size,
            key: self.size_key,
        }
    }

    /// Refuses a body whose announced length is over the cap before a byte
    /// of it is read.
    pub fn check_announced(&self, response: &reqwest::Response) -> Result<(), BodyError> {
        match response.content_length() {
            Some(len) if len > self.max_size => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    /// Waits for the first answer of a request at most as long as for any
    /// later byte.
    pub async fn first_answer<T>(
        &self,
        request: impl std::future::Future<Output = T>,
    ) -> Result<T, BodyError> {
        tokio::time::timeout(self.stall, request)
            .await
            .map_err(|_| BodyError::Stalled(self.stall))
    }
}

/// The chunks of `response`, ending with an error (and nothing after it)
/// once the body passes `limits.max_size` or stalls for `limits.stall`.
pub fn bounded_body(response: reqwest::Response, limits: BodyLimits) -> Body {
    let content_length = response.content_length();
    let state = Some((response, 0u64));
    let chunks = Box::pin(futures_util::stream::unfold(
        state,
        move |state| async move {
            let (mut response, received) = state?;
            match next_chunk(&mut response, received, &limits).await {
                Ok(Some(chunk)) => {
                    let received = received + chunk.len() as u64;
                    Some((Ok(chunk), Some((response, received))))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        },
    ));
    Body {
        content_length,
        chunks,
    }
}

async fn next_chunk(
    response: &mut reqwest::Response,
    received: u64,
    limits: &BodyLimits,
) -> Result<Option<Bytes>, BodyError> {
    let chunk = tokio::time::timeout(limits.stall, response.chunk())
        .await
        .map_err(|_| BodyError::Stalled(limits.stall))?
        .map_err(|e| broken_or_stalled(&e, limits))?;
    match chunk {
        Some(chunk) if received + chunk.len() as u64 > limits.max_size => Err(limits.too_large()),
        other => Ok(other),
    }
}

/// The client's own read timeout is the stall timeout too (see
/// [`super::Upstream::with_stall_timeout`]); whichever fires first, the
/// error says the same.
fn broken_or_stalled(error: &reqwest::Error, limits: &BodyLimits) -> BodyError {
    if error.is_timeout() {
        BodyError::Stalled(limits.stall)
    } else {
        BodyError::Broken(super::describe(error))
    }
}
