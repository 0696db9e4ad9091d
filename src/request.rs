//! What a request brings besides its path, handed to the protocol handlers.

use hyper::StatusCode;

use crate::config::Config;
use crate::response::{self, Response};
use crate::store::{Segment, SegmentError};
use crate::upstream::Forwarded;

/// What a request brings besides its path.
pub struct RequestContext {
    /// tfmirror's own URL, without a trailing slash.
    pub base_url: String,
    pub forwarded: Forwarded,
    /// A HEAD request: headers only, and never a reason to download.
    pub head: bool,
    /// The run id of an `exec` run, from a `/run/<id>/` path prefix.
    pub run: Option<String>,
}

/// Why a path names no request a handler can serve.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    /// A segment that could not safely become a file name: 400.
    BadName(SegmentError),
    NotFound,
}

impl RouteError {
    pub fn response(&self, what: &str) -> Response {
        match self {
            RouteError::BadName(e) => response::error(
                StatusCode::BAD_REQUEST,
                &format!("invalid name in path: {e}"),
            ),
            RouteError::NotFound => {
                response::error(StatusCode::NOT_FOUND, &format!("no such {what} endpoint"))
            }
        }
    }
}

/// Validates every segment before any handler looks at the request, so a
/// name that could not safely become a path never gets further than a 400.
pub fn validate_segments(segments: &[String]) -> Result<Vec<Segment>, RouteError> {
    segments
        .iter()
        .map(|s| Segment::new(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RouteError::BadName)
}

/// A 404 for a registry host tfmirror was not configured to proxy: it
/// fetches nothing for hosts the user did not name.
pub fn unproxied(config: &Config, host: &Segment) -> Option<Response> {
    if config.is_proxied(host.as_str()) {
        return None;
    }
    let message = format!("{host} is not one of the registries tfmirror proxies");
    Some(response::error(StatusCode::NOT_FOUND, &message))
}

/// Splits a path the way the router hands it to the protocol handlers.
#[cfg(test)]
pub fn test_segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_owned).collect()
}
