//! Maps a request path to the component that answers it.

use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use percent_encoding::percent_decode_str;

use super::App;
use crate::request::RequestContext;
use crate::response::{self, Response};
use crate::upstream::{Credential, Forwarded};

pub async fn route(app: &App, request: Request<Incoming>) -> Response {
    let path = request.uri().path();
    let git_post = request.method() == Method::POST && path.starts_with("/git/");
    let import = request.method() == Method::PUT && path.starts_with("/providers/");
    let admin = request.method() == Method::POST && path.starts_with("/_tfmirror/");
    if !git_post && !import && !admin && !matches!(*request.method(), Method::GET | Method::HEAD) {
        return response::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served",
        );
    }
    let segments = match decode_segments(request.uri().path()) {
        Ok(segments) => segments,
        Err(message) => return response::error(StatusCode::BAD_REQUEST, &message),
    };
    let words: Vec<&str> = segments.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["_tfmirror", "health"] => app.health(),
        ["_tfmirror", "artifacts"] => app.artifacts().await,
        ["_tfmirror", action] if admin => {
            let action = action.to_string();
            app.admin(&action, request).await
        }
        ["v1", "providers", ..] => {
            app.providers
                .handle(&segments[2..], &context(app, &request))
                .await
        }
        ["v1", "modules", ..] => {
            app.modules
                .handle(&segments[2..], &context(app, &request))
                .await
        }
        ["providers", ..] if import => {
            app.providers
                .import_zip(&segments[1..], request.into_body())
                .await
        }
        ["providers", ..] => {
            app.providers
                .handle_mirror(&segments[1..], &context(app, &request))
                .await
        }
        ["git", ..] => app.git.smart_http(&segments[1..], request).await,
        ["git-archive", ..] => app.git.tarball(&segments[1..]).await,
        ["modules", "archives", file] => {
            app.modules
                .handle_archive(file, &context(app, &request))
                .await
        }
        _ => response::error(StatusCode::NOT_FOUND, "not found"),
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

fn context<B>(app: &App, request: &Request<B>) -> RequestContext {
    RequestContext {
        base_url: app.url.clone(),
        forwarded: forwarded(request),
        head: request.method() == Method::HEAD,
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
