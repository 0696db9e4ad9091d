//! `POST /_tfmirror/bundle/import`: the body is a bundle file, which the
//! server checks whole before it stores any of it, because it owns the
//! cache (the index, the document files, the git mirrors' locks).
//!
//! The client streams the file rather than naming a path: the server may
//! run as another user (a service) that cannot read the client's files,
//! and the same call works for a server on another machine.
//!
//! Steps, each on the last's success only:
//! 1. the body lands in a temporary directory inside the cache (a
//!    [`layout::temp_prefix`] name, swept at the next start if the server
//!    dies);
//! 2. `bundle verify`'s checks ([`crate::bundle::verify`]): every entry's
//!    size and sha256, every provider zip against its signed SHA256SUMS;
//! 3. the entries are unpacked beside it (read again, hashes checked
//!    again), each document decoded for its key, each git bundle made
//!    into a mirror in a staging directory (git's `index-pack` hashes
//!    every object);
//! 4. every entry is compared with the cache: the same bytes (or a
//!    document at least as recent, or a mirror that has every commit) are
//!    "already cached", a different artifact under the same name refuses
//!    the import;
//! 5. only then is anything stored: artifacts through the store (which
//!    records them in the index), documents into the index, mirrors moved
//!    into place.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::admin::json_ok;
use super::App;
use crate::bundle::format::{self, Entry, EntryKind, Manifest};
use crate::bundle::read::{self, ReadLimits};
use crate::bundle::verify::{self, VerifyError};
use crate::git::bundle::{holds_bundle, stage_from_local_bundle, StagedMirror};
use crate::git::mirror::{GitError, Mirror};
use crate::protocol::closure::{ClosureItem, ImportAnswer};
use crate::response::{HandlerError, Response};
use crate::store::{decode_document_file, layout, Bucket, Document, RelPath, Segment, Store};

/// Why a bundle was not imported; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the upload broke off: {0}")]
    Upload(String),
    #[error("refused, nothing stored: {0}")]
    Verify(#[from] VerifyError),
    #[error("refused, nothing stored: {path}: {message}")]
    Entry { path: String, message: String },
    #[error("refused, nothing stored: {path}: {source}")]
    Git {
        path: String,
        #[source]
        source: GitError,
    },
    /// After the checks, while storing: what came before it is stored.
    #[error("{path}: cannot put its mirror in place: {source}")]
    Install {
        path: String,
        #[source]
        source: GitError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ImportError {
    fn status(&self) -> StatusCode {
        match self {
            ImportError::Upload(_) => StatusCode::BAD_REQUEST,
            ImportError::Verify(_) | ImportError::Git { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ImportError::Entry { .. } => StatusCode::CONFLICT,
            ImportError::Install { .. } | ImportError::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn entry(entry: &Entry, message: impl Into<String>) -> ImportError {
        ImportError::Entry {
            path: entry.path.clone(),
            message: message.into(),
        }
    }

    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImportError {
        let context = context.into();
        move |source| ImportError::Io { context, source }
    }
}

/// What to do with one verified entry.
enum Step {
    /// The cache holds it already.
    Already,
    /// An artifact file, unpacked at `staged`, of the sha256 verified.
    Artifact {
        rel: RelPath,
        staged: PathBuf,
        sha256: String,
    },
    Document {
        key: String,
        doc: Document,
    },
    /// A git mirror built from the entry at `path`.
    Mirror {
        path: String,
        staged: StagedMirror,
    },
}

/// A verified bundle, unpacked and compared with the cache, not yet stored.
struct Plan {
    /// With each entry's size.
    steps: Vec<(Step, u64)>,
}

impl App {
    pub(super) async fn import_bundle(&self, request: Request<Incoming>) -> Response {
        let stall = self.config.limits.download_stall;
        match import(&self.store, self.read_limits(), stall, request).await {
            Ok(answer) => json_ok(&answer),
            Err(e) => HandlerError::new(e.status(), e.to_string()).into_response(),
        }
    }

    fn read_limits(&self) -> (ReadLimits, u64) {
        let limits = &self.config.limits;
        (ReadLimits::from(limits), limits.metadata_size)
    }
}

/// The bundle's name inside the import's staging directory.
const BUNDLE_FILE: &str = "bundle";

async fn import(
    store: &Arc<Store>,
    limits: (ReadLimits, u64),
    stall: std::time::Duration,
    request: Request<Incoming>,
) -> Result<ImportAnswer, ImportError> {
    let staging = staging_dir(store).await?;
    let dest = staging.path().join(BUNDLE_FILE);
    if let Err(e) = receive(request.into_body(), &dest, stall).await {
        // Removing a partial upload blocks: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(staging)).await;
        return Err(e);
    }
    import_staged(store, limits, staging).await
}

/// A new directory inside the cache, with a temporary name: swept at the
/// next start if the server dies before it is removed.
async fn staging_dir(store: &Store) -> Result<tempfile::TempDir, ImportError> {
    let root = store.root().to_owned();
    tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(&layout::temp_prefix("bundle-import."))
            .tempdir_in(&root)
    })
    .await
    .map_err(|e| ImportError::Upload(e.to_string()))?
    .map_err(ImportError::io("cannot make a directory in the cache"))
}

/// Steps 2 to 5 for the bundle at [`BUNDLE_FILE`] in `staging`, which is
/// removed at the end, whatever the outcome (off the runtime's threads,
/// as are staged mirrors left unused).
async fn import_staged(
    store: &Arc<Store>,
    (limits, metadata_size): (ReadLimits, u64),
    staging: tempfile::TempDir,
) -> Result<ImportAnswer, ImportError> {
    let planned = {
        let (store, dir) = (store.clone(), staging.path().to_owned());
        tokio::task::spawn_blocking(move || plan(&store, &dir, limits, metadata_size))
            .await
            .map_err(|e| ImportError::Upload(format!("the import task failed: {e}")))
            .and_then(|planned| planned)
    };
    let answer = match planned {
        Ok(mut plan) => match check_artifacts(store, &mut plan).await {
            Ok(()) => commit(store, plan).await,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || drop(plan)).await;
                Err(e)
            }
        },
        Err(e) => Err(e),
    };
    let _ = tokio::task::spawn_blocking(move || drop(staging)).await;
    answer
}

/// The request's body into `dest`. A client that sends nothing for
/// `stall` (`download_stall_timeout`) is given up, so an abandoned upload
/// does not hold its staging directory for good; the size is bounded by
/// the disk (a full one fails the write, and the partial file goes).
async fn receive(
    mut body: Incoming,
    dest: &Path,
    stall: std::time::Duration,
) -> Result<(), ImportError> {
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(ImportError::io(format!("cannot create {}", dest.display())))?;
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                let why = format!("the upload sent nothing for {}s", stall.as_secs());
                return Err(ImportError::Upload(why));
            }
        };
        let frame = frame.map_err(|e| ImportError::Upload(e.to_string()))?;
        if let Some(chunk) = frame.data_ref() {
            file.write_all(chunk)
                .await
                .map_err(ImportError::io(format!("cannot write {}", dest.display())))?;
        }
    }
    file.flush()
        .await
        .map_err(ImportError::io(format!("cannot write {}", dest.display())))
}

/// Steps 2 and 3 (and 4 for documents and mirrors). Blocks.
fn plan(
    store: &Store,
    dir: &Path,
    limits: ReadLimits,
    metadata_size: u64,
) -> Result<Plan, ImportError> {
    let bundle = dir.join(BUNDLE_FILE);
    let open = || {
        std::fs::File::open(&bundle)
            .map(io::BufReader::new)
            .map_err(ImportError::io(format!("cannot open {}", bundle.display())))
    };
    verify::verify(open()?, limits, metadata_size)?;
    let entries = dir.join("entries");
    std::fs::create_dir(&entries).map_err(ImportError::io(format!(
        "cannot create {}",
        entries.display()
    )))?;
    let mut count = 0usize;
    let manifest = read::read(open()?, limits, |_, bytes| {
        let path = entries.join(count.to_string());
        count += 1;
        let mut out = std::fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        io::copy(bytes, &mut out).map_err(|e| format!("cannot unpack: {e}"))?;
        Ok(())
    })
    .map_err(VerifyError::from)?;
    // The unpacked entries are all that is read from here on.
    let _ = std::fs::remove_file(&bundle);
    let created = created_at(&manifest)?;
    let mut steps = Vec::with_capacity(manifest.entries.len());
    for (index, entry) in manifest.entries.iter().enumerate() {
        let staged = entries.join(index.to_string());
        let step = step(store, entry, staged, created)?;
        steps.push((step, entry.size));
    }
    Ok(Plan { steps })
}

fn created_at(manifest: &Manifest) -> Result<std::time::SystemTime, ImportError> {
    humantime::parse_rfc3339(&manifest.created).map_err(|e| ImportError::Entry {
        path: format::MANIFEST_PATH.to_owned(),
        message: format!(
            "created {:?} is not an RFC 3339 time: {e}",
            manifest.created
        ),
    })
}

/// What one entry, verified and unpacked at `staged`, comes to. Blocks.
fn step(
    store: &Store,
    entry: &Entry,
    staged: PathBuf,
    created: std::time::SystemTime,
) -> Result<Step, ImportError> {
    let item = format::item_of(entry)
        .ok_or_else(|| ImportError::entry(entry, "not the path of anything a cache holds"))?;
    match item {
        ClosureItem::Artifact(key) => {
            let kind = EntryKind::of_artifact(&key).filter(|kind| *kind != EntryKind::GitBundle);
            if kind != Some(entry.kind) {
                return Err(ImportError::entry(
                    entry,
                    format!("not a {} by its path", entry.kind.as_str()),
                ));
            }
            Ok(Step::Artifact {
                rel: rel_path(entry, &key)?,
                staged,
                sha256: entry.sha256.clone(),
            })
        }
        ClosureItem::Document(key) => {
            let bytes = std::fs::read(&staged)
                .map_err(ImportError::io(format!("cannot read {}", staged.display())))?;
            let doc = decode_document_file(&key, &bytes)
                .ok_or_else(|| ImportError::entry(entry, format!("not a document of {key}")))?;
            match store.documents().cached(&key) {
                Some(cached) if cached.body == doc.body => Ok(Step::Already),
                // The cache's own copy is newer: it stays.
                Some(cached) if cached.fetched_at_ms >= doc.fetched_at_ms => Ok(Step::Already),
                _ => Ok(Step::Document { key, doc }),
            }
        }
        ClosureItem::GitMirror(key) => {
            let rel = rel_path(entry, &key)?;
            if !matches!(Bucket::split(&key), Some((Bucket::GitMirrors, _)))
                || !key.ends_with(".git")
            {
                return Err(ImportError::entry(entry, "not a git mirror's path"));
            }
            let mirror = Mirror::new(store.path(&rel), key.clone());
            let git = |source| ImportError::Git {
                path: entry.path.clone(),
                source,
            };
            if mirror.exists() {
                return match holds_bundle(&mirror, &staged).map_err(git)? {
                    true => Ok(Step::Already),
                    false => Err(ImportError::entry(
                        entry,
                        format!(
                            "the cache's mirror {key} lacks commits the bundle has; \
                             update it online (or remove it) and import again"
                        ),
                    )),
                };
            }
            stage_from_local_bundle(&mirror, &staged, created)
                .map(|staged| Step::Mirror {
                    path: entry.path.clone(),
                    staged,
                })
                .map_err(git)
        }
    }
}

/// A key from the bundle as a path below the cache root: plain names only.
fn rel_path(entry: &Entry, key: &str) -> Result<RelPath, ImportError> {
    let segments: Result<Vec<Segment>, _> = key.split('/').map(Segment::new).collect();
    segments.map(RelPath::new).map_err(|e| {
        ImportError::entry(entry, format!("{key:?} cannot be named in the cache: {e}"))
    })
}

/// Step 4 for artifacts: one already in the cache must have the same
/// bytes. A different provider zip under the same name refuses the whole
/// import, as `cache import` refuses it.
async fn check_artifacts(store: &Store, plan: &mut Plan) -> Result<(), ImportError> {
    for (step, _) in &mut plan.steps {
        let Step::Artifact { rel, sha256, .. } = step else {
            continue;
        };
        if !store.has_file(rel).await {
            continue;
        }
        let Some(cached) = store.sha256(rel).await else {
            continue;
        };
        if cached != *sha256 {
            return Err(ImportError::Entry {
                path: format::artifact_path(&rel.key()),
                message: format!(
                    "the cache holds a different file under this name (sha256 {cached}, \
                     the bundle's is {sha256})"
                ),
            });
        }
        *step = Step::Already;
    }
    Ok(())
}

/// Step 5: stores every step. Artifacts through the store's writer, so
/// each is recorded in the index with its sha256.
async fn commit(store: &Arc<Store>, plan: Plan) -> Result<ImportAnswer, ImportError> {
    let mut answer = ImportAnswer::default();
    let mut blocking = Vec::new();
    for (step, size) in plan.steps {
        match step {
            Step::Already => {
                answer.already_cached += 1;
                continue;
            }
            Step::Artifact { rel, staged, .. } => store_artifact(store, &rel, &staged).await?,
            other => blocking.push(other),
        }
        answer.imported += 1;
        answer.imported_bytes += size;
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        for step in blocking {
            match step {
                Step::Document { key, doc } => {
                    store
                        .documents()
                        .put(&key, &doc)
                        .map_err(|e| ImportError::Io {
                            context: format!("cannot store the document {key}"),
                            source: io::Error::other(e.to_string()),
                        })?
                }
                Step::Mirror { path, staged } => {
                    staged
                        .install()
                        .map_err(|source| ImportError::Install { path, source })?;
                }
                Step::Already | Step::Artifact { .. } => {}
            }
        }
        Ok::<_, ImportError>(())
    })
    .await
    .map_err(|e| ImportError::Upload(format!("the import task failed: {e}")))??;
    Ok(answer)
}

async fn store_artifact(store: &Store, rel: &RelPath, staged: &Path) -> Result<(), ImportError> {
    let failed = |what: &str| ImportError::io(format!("cannot {what} {}", rel.key()));
    let _one_writer = store.locks().lock(&rel.key()).await;
    let mut writer = store.writer(rel).map_err(failed("store"))?;
    let mut file = tokio::fs::File::open(staged)
        .await
        .map_err(failed("read the unpacked"))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(failed("read the unpacked"))?;
        if n == 0 {
            break;
        }
        writer.write(&buf[..n]).await.map_err(failed("store"))?;
    }
    store.commit(rel, writer).await.map_err(failed("store"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::write::{self, Content, Header, Source};
    use crate::store::encode_document_file;

    const LIMITS: (ReadLimits, u64) = (
        ReadLimits {
            entry_size: 1 << 30,
        },
        1 << 20,
    );
    const ARCHIVE: &str = "modules/archives/ab12.tar.gz";
    const VERSIONS: &str = "modules/versions/registry.example.com/acme/vpc/aws";
    /// The fetch time `bundle create` gives documents: the creation.
    const CREATED_MS: u64 = 1_700_000_000_000;

    fn bundle_of(archive: &[u8], versions: &str) -> Vec<u8> {
        let doc = Document::public(CREATED_MS, versions.to_owned());
        let sources = vec![
            Source {
                kind: EntryKind::ModuleArchive,
                name: ARCHIVE.to_owned(),
                path: format::artifact_path(ARCHIVE),
                content: Content::Bytes(archive.to_vec()),
            },
            Source {
                kind: EntryKind::VersionList,
                name: VERSIONS.to_owned(),
                path: format::document_path(VERSIONS).unwrap(),
                content: Content::Bytes(encode_document_file(VERSIONS, &doc)),
            },
        ];
        let header = Header {
            created: "2023-11-14T22:13:20Z".to_owned(),
            platforms: Vec::new(),
        };
        let mut out = Vec::new();
        write::write(&mut out, header, sources, &mut |_| {}).unwrap();
        out
    }

    async fn import_bytes(store: &Arc<Store>, bundle: &[u8]) -> Result<ImportAnswer, ImportError> {
        let staging = staging_dir(store).await.unwrap();
        std::fs::write(staging.path().join(BUNDLE_FILE), bundle).unwrap();
        import_staged(store, LIMITS, staging).await
    }

    /// The cache's entries that are not tfmirror's bookkeeping or index.
    fn stored(store: &Store) -> Vec<String> {
        // Document files are written in the background.
        store.documents().wait_for_files();
        let mut names: Vec<String> = walkdir(store.root())
            .into_iter()
            .filter(|k| !k.starts_with("index") && !k.starts_with("owner"))
            .collect();
        names.sort();
        names
    }

    fn walkdir(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                out.push(layout::key_of(root, &path));
                if path.is_dir() {
                    dirs.push(path);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn a_bundle_is_stored_once_then_found_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let bundle = bundle_of(b"archive bytes", "{\"modules\":[]}");
        let answer = import_bytes(&store, &bundle).await.unwrap();
        assert_eq!((answer.imported, answer.already_cached), (2, 0));
        assert_eq!(answer.imported_bytes, bundle_entries_size(&bundle));
        let segments: Vec<Segment> = ARCHIVE
            .split('/')
            .map(|s| Segment::new(s).unwrap())
            .collect();
        let rel = RelPath::new(segments);
        assert_eq!(std::fs::read(store.path(&rel)).unwrap(), b"archive bytes");
        assert!(
            store.recorded_sha256(&rel).is_some(),
            "recorded in the index"
        );
        let doc = store.documents().cached(VERSIONS).unwrap();
        assert_eq!(doc.body.as_str(), "{\"modules\":[]}");
        assert_eq!(doc.fetched_at_ms, CREATED_MS, "as fetched when bundled");

        let again = import_bytes(&store, &bundle).await.unwrap();
        assert_eq!((again.imported, again.already_cached), (0, 2));
        let temporary: Vec<_> = walkdir(store.root())
            .into_iter()
            .filter(|k| k.contains(layout::TEMP_PREFIX))
            .collect();
        assert!(temporary.is_empty(), "{temporary:?}");
    }

    fn bundle_entries_size(bundle: &[u8]) -> u64 {
        read::manifest(bundle, LIMITS.0)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.size)
            .sum()
    }

    #[tokio::test]
    async fn a_different_artifact_under_the_same_name_refuses_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        import_bytes(&store, &bundle_of(b"archive bytes", "{}"))
            .await
            .unwrap();
        let before = stored(&store);
        let other = bundle_of(b"other bytes", "{\"modules\":[1]}");
        let refused = import_bytes(&store, &other).await.unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains(&format::artifact_path(ARCHIVE)) && message.contains("different"),
            "{message}"
        );
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        assert_eq!(
            store.documents().cached(VERSIONS).unwrap().body.as_str(),
            "{}"
        );
        assert_eq!(stored(&store), before);
    }

    #[tokio::test]
    async fn an_altered_bundle_stores_nothing_and_names_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let before = stored(&store);
        let bundle = bundle_of(b"archive bytes", "{}");
        let mut tar = zstd::decode_all(&bundle[..]).unwrap();
        let at = tar
            .windows(b"archive bytes".len())
            .position(|w| w == b"archive bytes")
            .unwrap();
        tar[at] ^= 0x20;
        let altered = zstd::encode_all(&tar[..], 3).unwrap();
        let refused = import_bytes(&store, &altered).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains(&format::artifact_path(ARCHIVE)),
            "{refused}"
        );
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(store.documents().cached(VERSIONS).is_none());
        assert_eq!(stored(&store), before);
    }
}
