//! What a request brings besides its path, handed to the protocol handlers.

use hyper::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

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

/// What must be escaped in one URL path segment: the `url` crate's set for
/// a path segment, so a segment can never add a `/`, start a query or
/// fragment, or fake an escape.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'#')
    .add(b'?')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// tfmirror's own URL for `segments` below `base` (a
/// [`RequestContext::base_url`], without a trailing slash): the one
/// builder of the URLs its answers point clients at. Each part is one
/// escaped path segment, so an odd one cannot change the URL's shape.
/// `base` is kept as it is, not parsed and normalised: it holds the
/// caller's credential and the run, exactly as the client sent them.
pub fn own_url<S: AsRef<str>>(base: &str, segments: impl IntoIterator<Item = S>) -> String {
    let mut url = base.trim_end_matches('/').to_owned();
    for segment in segments {
        url.push('/');
        url.extend(utf8_percent_encode(segment.as_ref(), PATH_SEGMENT));
    }
    url
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_own_url_is_the_base_and_one_escaped_segment_a_part() {
        assert_eq!(
            own_url("http://127.0.0.1:8080/0af3", ["v1", "providers", "1.0.0"]),
            "http://127.0.0.1:8080/0af3/v1/providers/1.0.0"
        );
        assert_eq!(own_url("http://h/", ["a"]), "http://h/a");
        assert_eq!(
            own_url("http://h", ["a/b", "?q", "#f", "50%"]),
            "http://h/a%2Fb/%3Fq/%23f/50%25"
        );
    }
}
