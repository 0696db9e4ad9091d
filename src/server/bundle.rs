//! `GET /_tfmirror/runs/<id>/closure` and `POST /_tfmirror/bundle`: the
//! server writes bundles because it owns the cache. Documents come from
//! its index, git mirrors are bundled by git in the mirror the server
//! keeps, and the artifact files it names are its own: a client would
//! need all three, and the paths, from the server anyway. The bundle is
//! the answer's body, streamed as it is written, so the client (possibly
//! on another machine) writes it where it likes, through a temporary file.

use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::admin::{bounded_body, json_ok, parse};
use super::App;
use crate::bundle::format::{self, EntryKind};
use crate::bundle::write::{self, Content, Header, Source};
use crate::git::mirror::Mirror;
use crate::protocol::closure::{
    BundleRequest, ClosureItem, BUNDLE_CONTENT_HEADER, MAX_CLOSURE_ITEMS,
};
use crate::response::{self, ChunkSender, HandlerError, Origin, Response};
use crate::store::{encode_document_file, Bucket, RelPath, Segment, Store};

/// A bundle request names up to [`MAX_CLOSURE_ITEMS`] keys of a few
/// hundred bytes each.
const MAX_BUNDLE_BODY: usize = MAX_CLOSURE_ITEMS * 512;

impl App {
    /// What run `id` was served; 413 when it was more than the cap.
    pub(super) fn run_closure(&self, id: &str) -> Response {
        match self.runs.closures.get(id) {
            Ok(closure) => json_ok(&closure),
            Err(too_large) => {
                HandlerError::new(StatusCode::PAYLOAD_TOO_LARGE, too_large.to_string())
                    .into_response()
            }
        }
    }

    /// The bundle of the items asked for, or why not (before any byte of
    /// it: every item is found first).
    pub(super) async fn bundle(&self, request: Request<Incoming>) -> Response {
        let parsed = match bounded_body(request, MAX_BUNDLE_BODY).await {
            Ok(body) => parse::<BundleRequest>(&body),
            Err(failure) => Err(failure),
        };
        let asked = match parsed {
            Ok(asked) => asked,
            Err(failure) => return failure.into_response(),
        };
        if asked.items.len() > MAX_CLOSURE_ITEMS {
            let message = format!("a bundle holds at most {MAX_CLOSURE_ITEMS} items");
            return HandlerError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        let store = self.store.clone();
        let staging = match tempfile::Builder::new()
            .prefix(&crate::store::layout::temp_prefix("bundle-"))
            .tempdir_in(store.root())
        {
            Ok(dir) => dir,
            Err(e) => {
                let message = format!("cannot make a directory for git bundles: {e}");
                return HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
                    .into_response();
            }
        };
        let Ok(created) = humantime::parse_rfc3339(&asked.created) else {
            let message = format!("created {:?} is not an RFC 3339 time", asked.created);
            return HandlerError::new(StatusCode::BAD_REQUEST, message).into_response();
        };
        let as_of_ms = created
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let gathering = {
            let (store, dir) = (store.clone(), staging.path().to_owned());
            tokio::task::spawn_blocking(move || {
                let sources = sources(&store, asked.items, &dir, as_of_ms)?;
                let content: u64 = sources.iter().map(Source::size).sum();
                Ok::<_, HandlerError>((sources, content))
            })
        };
        let (sources, content) = match gathering.await {
            Ok(Ok(gathered)) => gathered,
            Ok(Err(refusal)) => return refusal.into_response(),
            Err(e) => {
                let message = format!("the task gathering the bundle failed: {e}");
                return HandlerError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
                    .into_response();
            }
        };
        let header = Header {
            created: asked.created,
            platforms: asked.platforms,
        };
        let (sender, mut answer) = response::channel(None, "application/zstd", Origin::Cache);
        answer
            .headers_mut()
            .insert(BUNDLE_CONTENT_HEADER, content.into());
        tokio::task::spawn_blocking(move || {
            let _staging = staging;
            let mut out = ChannelWriter {
                sender: sender.clone(),
            };
            if let Err(e) = write::write(&mut out, header, sources, &mut |_| {}) {
                tracing::error!("cannot write a bundle: {e}");
                let _ = sender.blocking_send(Err(io::Error::other(e.to_string())));
            }
        });
        answer
    }
}

/// Each item as an entry to write; refused whole if one is not in the
/// cache or not something a bundle carries. Blocks (git bundles).
///
/// A document is written as fetched at `as_of_ms`, the bundle's creation:
/// its fetch time changes whenever a version list is refreshed, its
/// content does not, and the same closure must give the same bytes. The
/// creation time is never earlier than the real fetch unless the creator
/// set `SOURCE_DATE_EPOCH` back, which only makes the copy look older.
fn sources(
    store: &Store,
    items: Vec<ClosureItem>,
    staging: &std::path::Path,
    as_of_ms: u64,
) -> Result<Vec<Source>, HandlerError> {
    let missing = |what: &str, key: &str| {
        HandlerError::new(
            StatusCode::NOT_FOUND,
            format!("{what} {key} is not in the cache"),
        )
    };
    let mut sources = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let source = match item {
            ClosureItem::Artifact(key) => {
                let kind = EntryKind::of_artifact(&key)
                    .filter(|kind| *kind != EntryKind::GitBundle)
                    .ok_or_else(|| bad_key(&key))?;
                let file = store.path(&rel_path(&key)?);
                if !file.is_file() {
                    return Err(missing("the artifact", &key));
                }
                Source {
                    kind,
                    name: crate::catalog::describe(&key).1,
                    path: format::artifact_path(&key),
                    content: Content::File(file),
                }
            }
            ClosureItem::Document(key) => {
                let mut doc = store
                    .documents()
                    .cached(&key)
                    .ok_or_else(|| missing("the document", &key))?;
                doc.fetched_at_ms = as_of_ms;
                Source {
                    kind: EntryKind::of_document(&key),
                    path: format::document_path(&key).map_err(|e| bad(e.to_string()))?,
                    content: Content::Bytes(encode_document_file(&key, &doc)),
                    name: key,
                }
            }
            ClosureItem::GitMirror(key) => {
                let rel = rel_path(&key)?;
                if !matches!(Bucket::split(&key), Some((Bucket::GitMirrors, _)))
                    || !key.ends_with(".git")
                {
                    return Err(bad_key(&key));
                }
                let dir = store.path(&rel);
                if !dir.join("HEAD").is_file() {
                    return Err(missing("the git mirror", &key));
                }
                let dest: PathBuf = staging.join(format!("{index}.bundle"));
                let mirror = Mirror::new(dir, key.clone());
                crate::git::bundle::create_bundle(&mirror, &dest).map_err(|e| {
                    HandlerError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot bundle the git mirror {key}: {e}"),
                    )
                })?;
                let name = crate::catalog::describe(&key).1;
                Source {
                    kind: EntryKind::GitBundle,
                    name,
                    path: format::git_bundle_path(&key),
                    content: Content::File(dest),
                }
            }
        };
        sources.push(source);
    }
    Ok(sources)
}

fn bad(message: String) -> HandlerError {
    HandlerError::new(StatusCode::BAD_REQUEST, message)
}

fn bad_key(key: &str) -> HandlerError {
    bad(format!(
        "{key:?} is not the key of anything a bundle carries"
    ))
}

/// A key from the request as a path below the cache root: plain names
/// only, each validated.
fn rel_path(key: &str) -> Result<RelPath, HandlerError> {
    let segments: Result<Vec<Segment>, _> = key.split('/').map(Segment::new).collect();
    segments.map(RelPath::new).map_err(|_| bad_key(key))
}

/// The bundle's bytes, sent as they are written; a client that hangs up
/// stops the writing.
struct ChannelWriter {
    sender: ChunkSender,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sender
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client hung up"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
