//! Maps a request path to the component that answers it.

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use percent_encoding::percent_decode_str;

use super::App;
use crate::request::RequestContext;
use crate::response::{self, Response};
use crate::upstream::{Credential, Forwarded};

/// A response and what the metering needs to know of its request.
pub struct Routed {
    pub response: Response,
    /// The route's name in the metrics.
    pub route: &'static str,
    /// The run id of an `exec` run, from a `/run/<id>/` path prefix.
    pub run: Option<String>,
}

pub async fn route(app: &App, request: Request<Incoming>) -> Routed {
    let segments = match decode_segments(request.uri().path()) {
        Ok(segments) => segments,
        Err(message) => return unrouted(response::error(StatusCode::BAD_REQUEST, &message)),
    };
    // `exec` puts its run id in every URL of the CLI config it writes, so
    // the server can tell it what that run cost and saved.
    let (run, segments) = match segments.as_slice() {
        [first, id, rest @ ..] if first == "run" && is_run_id(id) => {
            (Some(id.clone()), rest.to_vec())
        }
        _ => (None, segments),
    };
    let base_url = match &run {
        Some(id) => format!("{}/run/{id}", app.url),
        None => app.url.clone(),
    };
    let (route, response) = dispatch(app, request, &segments, base_url, run.as_deref()).await;
    Routed {
        response,
        route,
        run,
    }
}

fn unrouted(response: Response) -> Routed {
    Routed {
        response,
        route: "other",
        run: None,
    }
}

/// 8 to 32 lowercase hex digits, as `exec` makes them.
fn is_run_id(id: &str) -> bool {
    (8..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn dispatch(
    app: &App,
    request: Request<Incoming>,
    segments: &[String],
    base_url: String,
    run: Option<&str>,
) -> (&'static str, Response) {
    let method = request.method().clone();
    let first = segments.first().map(String::as_str).unwrap_or_default();
    let git_post = method == Method::POST && first == "git";
    let import = method == Method::PUT && first == "providers";
    let admin = method == Method::POST && first == "_tfmirror";
    if !git_post && !import && !admin && !matches!(method, Method::GET | Method::HEAD) {
        let refusal = response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served",
        );
        return ("other", refusal);
    }
    let ctx = || context(&base_url, run, &request);
    let words: Vec<&str> = segments.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["_tfmirror", "health"] => ("admin", app.health()),
        ["_tfmirror", "metrics"] => ("admin", app.metrics().await),
        ["_tfmirror", "artifacts"] => ("admin", app.artifacts().await),
        ["_tfmirror", "runs", id] if admin => ("admin", app.begin_run(id, request).await),
        ["_tfmirror", "runs", id] => ("admin", app.run_counters(id)),
        ["_tfmirror", action] if admin => {
            let action = action.to_string();
            ("admin", app.admin(&action, request).await)
        }
        ["v1", "providers", ..] => (
            "providers",
            app.providers.handle(&segments[2..], &ctx()).await,
        ),
        ["v1", "modules", ..] => ("modules", app.modules.handle(&segments[2..], &ctx()).await),
        ["providers", ..] if import => (
            "network_mirror",
            app.providers.import_zip(&segments[1..], request).await,
        ),
        ["providers", ..] => (
            "network_mirror",
            app.providers.handle_mirror(&segments[1..], &ctx()).await,
        ),
        ["git", ..] => ("git", app.git.smart_http(&segments[1..], request).await),
        ["git-archive", ..] => ("git_archives", app.git.tarball(&segments[1..]).await),
        ["modules", "archives", file] => (
            "module_archives",
            app.modules.handle_archive(file, &ctx()).await,
        ),
        _ => ("other", response::error(StatusCode::NOT_FOUND, "not found")),
    }
}

/// Splits the raw path and percent-decodes each segment, so `%2e%2e` and
/// `%2f` are judged as what they decode to. Segments that would walk the
/// file system are refused here for every route; each route validates its
/// names fully.
fn decode_segments(path: &str) -> Result<Vec<String>, String> {
    path.trim_start_matches('/')
        .split('/')
        .map(|raw| {
            let decoded = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| format!("path segment {raw:?} is not UTF-8"))?;
            if decoded == ".." || decoded == "." || decoded.contains(['/', '\\', '\0']) {
                return Err(format!("path segment {raw:?} is not allowed"));
            }
            Ok(decoded.into_owned())
        })
        .collect()
}

fn context<B>(base_url: &str, run: Option<&str>, request: &Request<B>) -> RequestContext {
    RequestContext {
        base_url: base_url.to_owned(),
        forwarded: forwarded(request),
        head: request.method() == Method::HEAD,
        run: run.map(str::to_owned),
    }
}

fn forwarded<B>(request: &Request<B>) -> Forwarded {
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    Forwarded {
        authorization: header(AUTHORIZATION).map(Credential::from_header),
        user_agent: header(USER_AGENT).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_tricks() {
        assert_eq!(decode_segments("/v1/a%2Db").unwrap(), ["v1", "a-b"]);
        for bad in ["/v1/..", "/v1/%2e%2e/x", "/v1/a%2fb", "/v1/a%00", "/v1/%ff"] {
            assert!(decode_segments(bad).is_err(), "{bad}");
        }
    }
}
