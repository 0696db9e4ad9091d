//! Building HTTP responses: one body type for everything tfmirror serves,
//! whether a short JSON answer, a cached file, or a download relayed while
//! it is still arriving.

use std::io;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::StatusCode;
use tokio::sync::mpsc;

use crate::protocol::closure::ClosureItem;
use crate::store::{FetchError, Provenance, Served, WriteError};

pub type Body = BoxBody<Bytes, io::Error>;
pub type Response = hyper::Response<Body>;

/// Chunks of a download relayed to the client. An `Err` aborts the
/// response, so the client sees a failed download rather than a short one.
pub type ChunkSender = mpsc::Sender<Result<Bytes, io::Error>>;

pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let body = Full::new(body.into())
        .map_err(|never| match never {})
        .boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Terraform rejects registry answers of any other content type.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    full(status, "application/json", body)
}

/// A status and nothing else, not even a content type.
pub fn empty(status: StatusCode) -> Response {
    let body = Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response
}

/// An error for the client, worded for the person reading Terraform's
/// output or tfmirror's log.
pub fn error(status: StatusCode, message: &str) -> Response {
    full(
        status,
        "text/plain; charset=utf-8",
        format!("tfmirror: {message}\n"),
    )
}

/// Why a handler could not answer as asked: the status and the message the
/// client gets. It is logged once, where it becomes a response
/// ([`HandlerError::into_response`]), so failure sites only build it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub status: StatusCode,
    pub message: String,
}

impl HandlerError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> HandlerError {
        HandlerError {
            status,
            message: message.into(),
        }
    }

    /// The one place a handler error is logged and answered: the server's
    /// faults (5xx) as errors, the client's (4xx) as warnings.
    pub fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}", self.message);
        } else {
            tracing::warn!("{}", self.message);
        }
        error(self.status, &self.message)
    }
}

/// What the client asked for could not be stored: 507 Insufficient Storage
/// when the disk is full, so the cause is plain in Terraform's output, else
/// 500.
impl From<&WriteError> for HandlerError {
    fn from(failure: &WriteError) -> HandlerError {
        let status = if failure.is_disk_full() {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        HandlerError::new(status, failure.to_string())
    }
}

/// The answer when what the client asked for could not be stored.
pub fn store_failed(failure: &WriteError) -> Response {
    HandlerError::from(failure).into_response()
}

/// Where an artifact response's bytes come from, recorded on the response
/// for the metrics and the savings report: the server counts the bytes as
/// they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Upstream,
}

/// How a registry answer was had, recorded like [`Origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Stale,
}

/// What a response serves from the cache, by key, recorded on it for the
/// closure of the run it belongs to (see `server::closures`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched(pub Vec<ClosureItem>);

/// `response`, naming `items` as what it serves.
pub fn touched(mut response: Response, items: impl IntoIterator<Item = ClosureItem>) -> Response {
    let extensions = response.extensions_mut();
    let mut touched = extensions.remove::<Touched>().unwrap_or_default();
    touched.0.extend(items);
    extensions.insert(touched);
    response
}

/// A cached file, streamed from disk one chunk ahead of the client.
pub fn file(file: std::fs::File, size: u64, content_type: &'static str) -> Response {
    let (sender, response) = channel_body(1, Some(size), content_type, Origin::Cache);
    tokio::spawn(crate::file_chunks::send(file, size, sender));
    response
}

/// A file this request had to download first, served from disk.
pub fn downloaded(mut response: Response) -> Response {
    response.extensions_mut().insert(Origin::Upstream);
    response
}

/// A body fed by a channel, so a download can be relayed while it is being
/// written to disk. The channel is small: a slow client slows the download
/// instead of growing memory.
pub fn channel(
    length: Option<u64>,
    content_type: &'static str,
    origin: Origin,
) -> (ChunkSender, Response) {
    channel_body(8, length, content_type, origin)
}

fn channel_body(
    capacity: usize,
    length: Option<u64>,
    content_type: &'static str,
    origin: Origin,
) -> (ChunkSender, Response) {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, io::Error>>(capacity);
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let item = receiver.recv().await?;
        Some((item.map(Frame::data), receiver))
    });
    let response = hyper::Response::new(BodyExt::boxed(StreamBody::new(frames)));
    let mut response = with_length(response, length, content_type);
    response.extensions_mut().insert(origin);
    (sender, response)
}

fn with_length(
    mut response: Response,
    length: Option<u64>,
    content_type: &'static str,
) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// Logs, once per answer, that a stale copy stood in for a failing upstream.
pub fn log_stale(what: &str, provenance: &Provenance) {
    if let Provenance::StaleFallback(why) = provenance {
        tracing::warn!("serving a cached copy for {what}: {why}");
    }
}

/// A registry document as the client gets it: the cached answer, or why
/// there is none.
pub fn document(what: &str, result: Result<Served, FetchError>) -> Response {
    match result {
        Ok(served) => cached_answer(what, served),
        Err(e) => fetch_error(what, e),
    }
}

/// A cached registry answer, marked with a `Warning` header when it is a
/// stale copy served because the upstream failed.
fn cached_answer(what: &str, served: Served) -> Response {
    log_stale(what, &served.provenance);
    let outcome = match served.provenance {
        Provenance::Fresh | Provenance::Revalidating => Outcome::Hit,
        Provenance::Fetched => Outcome::Miss,
        Provenance::StaleFallback(_) => Outcome::Stale,
    };
    let mut response = json(StatusCode::OK, served.doc.body);
    response.extensions_mut().insert(outcome);
    if let Provenance::StaleFallback(_) = served.provenance {
        response.headers_mut().insert(
            "Warning",
            HeaderValue::from_static("111 tfmirror \"Revalidation Failed\""),
        );
    }
    response
}

/// The answer when a registry document could not be had: the upstream's
/// own answer (a 404), or a 502 that says why.
pub fn fetch_error(what: &str, failure: FetchError) -> Response {
    match failure {
        FetchError::Answer { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            json(status, body)
        }
        FetchError::Withheld { host, why } => {
            let why = format!("{host} could not be asked whether this request may read it ({why})");
            withheld(what, &host, &why)
        }
        FetchError::Unavailable(why) => {
            let message = format!("registry unavailable for {what} and nothing cached: {why}");
            HandlerError::new(StatusCode::BAD_GATEWAY, message).into_response()
        }
        FetchError::Offline(sealed) => offline(&sealed.refuse(what)),
    }
}

/// A sealed server's refusal of something it does not have: 503, naming
/// it and the setting that seals the server. Terraform shows the status;
/// `exec` repeats the server's log line, which is this message.
pub fn offline(refusal: &crate::sealed::Offline) -> Response {
    HandlerError::new(StatusCode::SERVICE_UNAVAILABLE, refusal.to_string()).into_response()
}

/// The refusal of something cached from a request with a credential, to a
/// request that has not shown it may read it: 401, saying `why` and which
/// token to present.
pub fn withheld(what: &str, host: &str, why: &str) -> Response {
    let message = format!(
        "{what} was cached from a request with a credential, and {why}; \
         present a token for {host} ({})",
        crate::upstream::token_variable(host)
    );
    HandlerError::new(StatusCode::UNAUTHORIZED, message).into_response()
}
