//! Git's smart HTTP protocol, served from the mirrors by `git upload-pack
//! --stateless-rpc`: git is installed wherever a `git::` source works, and
//! it speaks protocol v0 and v2 exactly as clients expect.

use std::io::Read;
use std::process::Stdio;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::repo_id::RepoId;
use super::service::GitMirrors;
use crate::response::{self, Origin, Response};

/// A fetch request larger than this is not a fetch request.
const MAX_REQUEST: usize = 64 * 1024 * 1024;

impl GitMirrors {
    /// Handles `/git/<scheme>/<host>/<path>/(info/refs|git-upload-pack)`.
    pub async fn smart_http(&self, segments: &[String], request: Request<Incoming>) -> Response {
        let (repo_segments, endpoint) = match segments {
            [repo @ .., info, refs] if info == "info" && refs == "refs" => {
                (repo, Endpoint::Advertise)
            }
            [repo @ .., pack] if pack == "git-upload-pack" => (repo, Endpoint::UploadPack),
            _ => return response::error(StatusCode::NOT_FOUND, "not a git smart HTTP endpoint"),
        };
        let Some(repo) = RepoId::from_proxy_segments(repo_segments) else {
            return response::error(
                StatusCode::BAD_REQUEST,
                "not a repository path tfmirror serves",
            );
        };
        if let Some(refused) = self.refuse_unmirrored(&repo) {
            return refused;
        }
        let protocol = request
            .headers()
            .get("Git-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match endpoint {
            Endpoint::Advertise => {
                let service = request.uri().query().unwrap_or_default();
                if !service.split('&').any(|p| p == "service=git-upload-pack") {
                    return response::error(
                        StatusCode::FORBIDDEN,
                        "only git-upload-pack (fetch and clone) is served",
                    );
                }
                match self.current(&repo).await {
                    Ok((mirror, _)) => {
                        // One use per clone or fetch: each starts here,
                        // and may then post to git-upload-pack many times.
                        self.record_use(&repo);
                        advertise(&mirror.dir, &protocol).await
                    }
                    Err(e) => {
                        tracing::error!("cannot mirror {repo}: {e}");
                        response::error(
                            StatusCode::BAD_GATEWAY,
                            &format!("cannot mirror {repo}: {e}"),
                        )
                    }
                }
            }
            Endpoint::UploadPack => {
                if request.method() != Method::POST {
                    return response::error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "git-upload-pack takes POST",
                    );
                }
                let mirror = self.mirror(&repo);
                if !mirror.exists() {
                    return response::error(
                        StatusCode::NOT_FOUND,
                        "no mirror yet: fetch info/refs first",
                    );
                }
                let gzipped = request
                    .headers()
                    .get("Content-Encoding")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                match read_body(request.into_body(), gzipped).await {
                    Ok(body) => upload_pack(&mirror.dir, &protocol, body).await,
                    Err(message) => response::error(StatusCode::BAD_REQUEST, &message),
                }
            }
        }
    }
}

enum Endpoint {
    Advertise,
    UploadPack,
}

/// `info/refs`: protocol v0 clients expect the `# service=` pkt-line first;
/// v2 clients get upload-pack's capability advertisement alone.
async fn advertise(dir: &std::path::Path, protocol: &str) -> Response {
    let output = Command::new("git")
        .args(["upload-pack", "--stateless-rpc", "--advertise-refs"])
        .arg(dir)
        .env("GIT_PROTOCOL", protocol)
        .stdin(Stdio::null())
        .output()
        .await;
    let output = match output {
        Ok(output) if output.status.success() => output.stdout,
        Ok(output) => return git_failed(&String::from_utf8_lossy(&output.stderr)),
        Err(e) => return git_failed(&format!("cannot run git: {e}")),
    };
    let mut body = Vec::new();
    if !protocol.contains("version=2") {
        body.extend_from_slice(b"001e# service=git-upload-pack\n0000");
    }
    body.extend_from_slice(&output);
    with_type(
        response::full(StatusCode::OK, "application/octet-stream", body),
        "application/x-git-upload-pack-advertisement",
    )
}

/// `git-upload-pack`: the client's request on stdin, the pack on stdout,
/// relayed as it is produced.
async fn upload_pack(dir: &std::path::Path, protocol: &str, request: Bytes) -> Response {
    let child = Command::new("git")
        .args(["upload-pack", "--stateless-rpc"])
        .arg(dir)
        .env("GIT_PROTOCOL", protocol)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return git_failed(&format!("cannot run git: {e}")),
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    tokio::spawn(async move {
        let _ = stdin.write_all(&request).await;
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, response) = response::channel(None, "application/octet-stream", Origin::Cache);
    tokio::spawn(async move {
        let mut chunks = tokio_util::io::ReaderStream::with_capacity(stdout, 64 * 1024);
        while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
            if sender.send(chunk).await.is_err() {
                break;
            }
        }
        let _ = child.wait().await;
    });
    with_type(response, "application/x-git-upload-pack-result")
}

async fn read_body(body: Incoming, gzipped: bool) -> Result<Bytes, String> {
    let limited = http_body_util::Limited::new(body, MAX_REQUEST);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| format!("cannot read the request: {e}"))?
        .to_bytes();
    if !gzipped {
        return Ok(bytes);
    }
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(MAX_REQUEST as u64)
        .read_to_end(&mut plain)
        .map_err(|e| format!("cannot gunzip the request: {e}"))?;
    Ok(plain.into())
}

fn with_type(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("Cache-Control", HeaderValue::from_static("no-cache"));
    response
}

fn git_failed(message: &str) -> Response {
    tracing::error!("git upload-pack failed: {message}");
    response::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("git upload-pack failed: {message}"),
    )
}
