//! Maps a request path to the component that answers it.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST, USER_AGENT, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use percent_encoding::percent_decode_str;
use tracing::Instrument;

use super::access::{bearer_token, Caller, Presented, Refusal};
use super::App;
use crate::protocol::{run_url, Endpoint, RunId, OWN_PREFIX, RUN_SEGMENT};
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
    /// The path asked for, without the server's secret: what may be logged.
    pub path: String,
}

pub async fn route(app: &App, mut request: Request<Incoming>) -> Routed {
    // Who asks comes first: a stranger learns nothing, not even how this
    // server judges a path.
    let caller = match app.access.check(&presented(&request)) {
        Ok(caller) => caller,
        Err(refusal) => return unrouted(refused(refusal)),
    };
    let segments = match decode_segments(request.uri().path()) {
        Ok(segments) => segments,
        Err(bad) => return unrouted(response::error(StatusCode::BAD_REQUEST, &bad.to_string())),
    };
    // What comes after the access check never sees the secret or a
    // capability, and no credential of tfmirror's own (the secret, a team
    // token) goes upstream.
    let base_url = match &caller {
        Caller::Owner { bearer } => {
            if *bearer {
                request.headers_mut().remove(AUTHORIZATION);
            }
            app.owner_url()
        }
        Caller::Member { capability, .. } => {
            request.headers_mut().remove(AUTHORIZATION);
            app.member_url(capability)
        }
    };
    let segments = match caller.credential_in_path() {
        true => segments[1..].to_vec(),
        false => segments,
    };
    let path = format!("/{}", segments.join("/"));
    // `exec` puts its run id in every URL of the CLI config it writes, so
    // the server can tell it what that run cost and saved.
    let run = match segments.as_slice() {
        [first, id, ..] if first == RUN_SEGMENT => RunId::parse(id).ok(),
        _ => None,
    };
    let segments = match run {
        Some(_) => segments[2..].to_vec(),
        None => segments,
    };
    let base_url = match &run {
        Some(id) => run_url(&base_url, id),
        None => base_url,
    };
    let call = Call {
        caller,
        base_url,
        run: run.as_ref().map(RunId::as_str),
    };
    app.policy.refresh().await;
    // What the server logs while serving the run is the run's to report.
    let span = match &call.run {
        Some(id) => super::run_journal::run_span(id),
        None => tracing::Span::none(),
    };
    // Git mirrors are fetched far below the handlers, through calls that
    // take no request context; they find who asked here (see `audit`).
    let requester = forwarded(&request, call.run).requester();
    let routed = dispatch(app, request, &segments, call).instrument(span);
    let (route, response) = crate::audit::serving(requester, routed).await;
    Routed {
        response,
        route,
        run: run.map(RunId::into_string),
        path,
    }
}

/// The answer to a connection past `max_connections`: it is served a
/// health check only, so the client is told to come back. Nothing of the
/// path is kept: it may carry the secret, and the access check was skipped.
pub fn busy(max_connections: usize) -> Routed {
    let mut response = response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "tfmirror is serving max_connections ({max_connections}) connections; \
             retry, or raise `max_connections` in the config"
        ),
    );
    response
        .headers_mut()
        .insert("Retry-After", HeaderValue::from_static("1"));
    Routed {
        response,
        route: "busy",
        run: None,
        path: String::new(),
    }
}

fn unrouted(response: Response) -> Routed {
    Routed {
        response,
        route: "other",
        run: None,
        path: String::new(),
    }
}

/// What the access policy is shown: the `Host` the request names (its
/// absolute URI's authority for a proxy-style request), the first path
/// segment as sent (secrets and capabilities are hex: no encoding to
/// undo), and a bearer token.
fn presented(request: &Request<Incoming>) -> Presented<'_> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    Presented {
        host,
        first_segment: request
            .uri()
            .path()
            .trim_start_matches('/')
            .split('/')
            .next(),
        bearer,
    }
}

/// Each refusal with its status. A foreign `Host` gets no body at all: a
/// rebinding page learns nothing, not even that this is tfmirror.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::ForeignHost => response::empty(StatusCode::MISDIRECTED_REQUEST),
        Refusal::Hidden => response::error(StatusCode::NOT_FOUND, "not found"),
        Refusal::NoToken => {
            let mut response = response::error(
                StatusCode::UNAUTHORIZED,
                "this tfmirror server needs a token: set TF_TOKEN_<host> for its host",
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tfmirror\""),
            );
            response
        }
    }
}

/// Who asked, and the URL the answers' links start with.
struct Call<'a> {
    caller: Caller,
    base_url: String,
    run: Option<&'a str>,
}

async fn dispatch(
    app: &App,
    request: Request<Incoming>,
    segments: &[String],
    call: Call<'_>,
) -> (&'static str, Response) {
    let method = request.method().clone();
    let first = segments.first().map(String::as_str).unwrap_or_default();
    let git_post = method == Method::POST && first == "git";
    let import = method == Method::PUT && first == "providers";
    let own = first == OWN_PREFIX;
    let admin = own && matches!(method, Method::POST | Method::DELETE);
    if !git_post && !import && !admin && !matches!(method, Method::GET | Method::HEAD) {
        let refusal = response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served",
        );
        return ("other", refusal);
    }
    // Changing the cache takes the secret as a bearer token, which only a
    // tfmirror command of the owner's sends; tfmirror's own endpoints are
    // not for team clients at all.
    let owner_bearer = call.caller == Caller::Owner { bearer: true };
    let member = matches!(call.caller, Caller::Member { .. });
    if (import || admin) && !owner_bearer || own && member {
        let refusal = response::error(
            StatusCode::FORBIDDEN,
            "only the cache's owner may do this (tfmirror's own commands send its secret)",
        );
        return ("admin", refusal);
    }
    let ctx = || context(&call.base_url, call.run, &request);
    let words: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let Some(endpoint) = Endpoint::parse(&words) {
        let answer = match endpoint {
            Endpoint::Health => Some(app.health()),
            Endpoint::Metrics => Some(app.metrics().await),
            Endpoint::Artifacts => Some(app.artifacts().await),
            Endpoint::Run(id) => Some(match method {
                Method::POST => app.begin_run(id, request).await,
                Method::DELETE => app.end_run(id).await,
                _ => app.run_counters(id),
            }),
            Endpoint::RunClosure(id) if method == Method::GET => Some(app.run_closure(id)),
            Endpoint::Bundle if method == Method::POST => Some(app.bundle(request).await),
            Endpoint::BundleImport if method == Method::POST => {
                Some(app.import_bundle(request).await)
            }
            Endpoint::LocalClones if method == Method::POST => {
                Some(app.local_clones(request).await)
            }
            Endpoint::PrepareProviders if method == Method::POST => {
                let forwarded = forwarded(&request, call.run);
                Some(app.prepare_providers(request, &forwarded).await)
            }
            Endpoint::Gc | Endpoint::Delete | Endpoint::Prune if admin => {
                Some(app.admin(Some(endpoint), request).await)
            }
            _ => None,
        };
        return match answer {
            Some(answer) => ("admin", answer),
            None => ("other", not_found()),
        };
    }
    match words.as_slice() {
        // POST or DELETE of an action the server does not know: 404,
        // after its body was read like any admin request's.
        [OWN_PREFIX, _] if admin => ("admin", app.admin(None, request).await),
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
        ["git-archive", ..] => ("git_archives", app.git.serve_archive(&segments[1..]).await),
        ["modules", "archives", file] => (
            "module_archives",
            app.modules.handle_archive(file, &ctx()).await,
        ),
        _ => ("other", not_found()),
    }
}

fn not_found() -> Response {
    response::error(StatusCode::NOT_FOUND, "not found")
}

/// Splits the raw path and percent-decodes each segment, so `%2e%2e` and
/// `%2f` are judged as what they decode to. Segments that would walk the
/// file system are refused here for every route; each route validates its
/// names fully.
fn decode_segments(path: &str) -> Result<Vec<String>, BadSegment> {
    path.trim_start_matches('/')
        .split('/')
        .map(|raw| {
            let decoded = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| BadSegment::NotUtf8(raw.to_owned()))?;
            if decoded == ".." || decoded == "." || decoded.contains(['/', '\\', '\0']) {
                return Err(BadSegment::NotAllowed(raw.to_owned()));
            }
            Ok(decoded.into_owned())
        })
        .collect()
}

/// A path segment refused before any route sees it (400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum BadSegment {
    #[error("path segment {0:?} is not UTF-8")]
    NotUtf8(String),
    #[error("path segment {0:?} is not allowed")]
    NotAllowed(String),
}

fn context<B>(base_url: &str, run: Option<&str>, request: &Request<B>) -> RequestContext {
    RequestContext {
        base_url: base_url.to_owned(),
        forwarded: forwarded(request, run),
        head: request.method() == Method::HEAD,
        run: run.map(str::to_owned),
    }
}

fn forwarded<B>(request: &Request<B>, run: Option<&str>) -> Forwarded {
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    Forwarded {
        authorization: header(AUTHORIZATION).map(Credential::from_header),
        user_agent: header(USER_AGENT).map(str::to_owned),
        run: run.map(str::to_owned),
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
