//! Git's smart HTTP protocol, served from the mirrors by `git upload-pack
//! --stateless-rpc`: git is installed wherever a `git::` source works, and
//! it speaks protocol v0 and v2 exactly as clients expect.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::OwnedSemaphorePermit;

use super::freshness::GitMirrors;
use super::repo_id::RepoId;
use crate::protocol::closure::ClosureItem;
use crate::response::{self, ChunkSender, HandlerError, Origin, Response};

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
        let artifact = crate::policy::Artifact::Git(repo.upstream_url());
        if let Some(refused) = crate::policy::check::refused(&self.policy, artifact) {
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
                        let _permit = self.upload_pack_slot().await;
                        let advertised =
                            advertise(&mirror.dir, &protocol, self.config.git_timeout).await;
                        let item = ClosureItem::GitMirror(repo.mirror_dir().key());
                        response::touched(advertised, [item])
                    }
                    Err(e) => HandlerError::new(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot mirror {repo}: {e}"),
                    )
                    .into_response(),
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
                if !super::freshness::exists(&mirror).await {
                    return response::error(
                        StatusCode::NOT_FOUND,
                        "no mirror yet: fetch info/refs first",
                    );
                }
                if declared_length(&request).is_some_and(|n| n > MAX_REQUEST as u64) {
                    return response::error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &UploadPackError::TooLarge.to_string(),
                    );
                }
                let gzipped = request
                    .headers()
                    .get("Content-Encoding")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
                // Queued here, before git starts: the client waits for its
                // answer's head while the others run.
                let permit = self.upload_pack_slot().await;
                let run = UploadPack {
                    body: request.into_body(),
                    gzipped,
                    timeout: self.config.git_timeout,
                    permit,
                };
                upload_pack(&mirror.dir, &protocol, run).await
            }
        }
    }
}

/// The request's `Content-Length`, when it has a valid one.
fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

enum Endpoint {
    Advertise,
    UploadPack,
}

/// `info/refs`: protocol v0 clients expect the `# service=` pkt-line first;
/// v2 clients get upload-pack's capability advertisement alone.
async fn advertise(dir: &std::path::Path, protocol: &str, timeout: Duration) -> Response {
    let output = Command::new("git")
        .args(["upload-pack", "--stateless-rpc", "--advertise-refs"])
        .arg(dir)
        .env("GIT_PROTOCOL", protocol)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(timeout, output).await {
        Ok(Ok(output)) if output.status.success() => output.stdout,
        Ok(Ok(output)) => return git_failed(&String::from_utf8_lossy(&output.stderr)),
        Ok(Err(e)) => return git_failed(&format!("cannot run git: {e}")),
        Err(_) => return git_failed(&UploadPackError::TimedOut(timeout).to_string()),
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

/// `git-upload-pack`: the client's request streamed to stdin as it
/// arrives, the pack on stdout relayed as it is produced. Nothing holds the
/// whole request: each chunk is written to git before the next is read.
async fn upload_pack(dir: &std::path::Path, protocol: &str, run: UploadPack) -> Response {
    let child = Command::new("git")
        .args(["upload-pack", "--stateless-rpc"])
        .arg(dir)
        .env("GIT_PROTOCOL", protocol)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => return git_failed(&format!("cannot run git: {e}")),
    };
    let (sender, response) = response::channel(None, "application/octet-stream", Origin::Cache);
    tokio::spawn(supervise(child, run, sender));
    with_type(response, "application/x-git-upload-pack-result")
}

/// What one `git upload-pack` run needs besides its repository.
struct UploadPack {
    body: Incoming,
    gzipped: bool,
    timeout: Duration,
    /// Its place among the git processes allowed at once.
    permit: OwnedSemaphorePermit,
}

/// Why an upload-pack run was cut short.
#[derive(Debug, thiserror::Error)]
enum UploadPackError {
    #[error("the request is larger than {MAX_REQUEST} bytes")]
    TooLarge,
    #[error("cannot read the request: {0}")]
    Read(#[from] hyper::Error),
    #[error("cannot gunzip the request: {0}")]
    Gunzip(std::io::Error),
    #[error("git upload-pack ran longer than {0:?} (git_timeout) and was killed")]
    TimedOut(Duration),
}

/// Feeds the request, relays the pack, and kills git when the request is
/// bad, the client goes away, or `git_timeout` passes; the process slot is
/// given back when git has exited.
async fn supervise(mut child: Child, run: UploadPack, sender: ChunkSender) {
    let _permit = run.permit;
    let deadline = tokio::time::Instant::now() + run.timeout;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let feed = feed_request(run.body, run.gzipped, stdin);
    let relay = relay(stdout, &sender);
    tokio::pin!(feed, relay);
    let mut fed = false;
    let failure = loop {
        tokio::select! {
            result = &mut feed, if !fed => match result {
                Ok(()) => fed = true,
                Err(e) => break Some(e),
            },
            () = &mut relay => break None,
            () = tokio::time::sleep_until(deadline) => {
                break Some(UploadPackError::TimedOut(run.timeout))
            }
        }
    };
    if let Some(e) = failure {
        tracing::warn!("git upload-pack stopped: {e}");
        let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
        let _ = child.kill().await;
        return;
    }
    if tokio::time::timeout_at(deadline, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("{}", UploadPackError::TimedOut(run.timeout));
        let _ = child.kill().await;
    }
}

/// Writes the request body to git's stdin chunk by chunk, gunzipping it if
/// needed, and refuses more than [`MAX_REQUEST`] bytes in all. git may stop
/// reading early (a bad request); it then answers on stdout, so a closed
/// stdin is not an error here.
async fn feed_request(
    mut body: Incoming,
    gzipped: bool,
    mut stdin: ChildStdin,
) -> Result<(), UploadPackError> {
    let mut gunzip = gzipped.then(|| flate2::write::GzDecoder::new(Vec::new()));
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let plain = match gunzip.as_mut() {
            Some(decoder) => gunzip_chunk(decoder, &data)?,
            None => data,
        };
        total += plain.len();
        if total > MAX_REQUEST {
            return Err(UploadPackError::TooLarge);
        }
        if stdin.write_all(&plain).await.is_err() {
            return Ok(());
        }
    }
    if let Some(decoder) = gunzip {
        let rest = decoder.finish().map_err(UploadPackError::Gunzip)?;
        if total + rest.len() > MAX_REQUEST {
            return Err(UploadPackError::TooLarge);
        }
        let _ = stdin.write_all(&rest).await;
    }
    Ok(())
}

/// What one compressed chunk unpacks to so far.
fn gunzip_chunk(
    decoder: &mut flate2::write::GzDecoder<Vec<u8>>,
    chunk: &[u8],
) -> Result<Bytes, UploadPackError> {
    use std::io::Write;
    decoder.write_all(chunk).map_err(UploadPackError::Gunzip)?;
    Ok(std::mem::take(decoder.get_mut()).into())
}

/// Relays git's stdout to the client until git closes it or the client
/// goes away.
async fn relay(stdout: ChildStdout, sender: &ChunkSender) {
    let mut chunks = tokio_util::io::ReaderStream::with_capacity(stdout, 64 * 1024);
    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
        if sender.send(chunk).await.is_err() {
            return;
        }
    }
}

fn with_type(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("Cache-Control", HeaderValue::from_static("no-cache"));
    response
}

fn git_failed(message: &str) -> Response {
    HandlerError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("git upload-pack failed: {message}"),
    )
    .into_response()
}
