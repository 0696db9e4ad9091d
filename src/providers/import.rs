//! `PUT /providers/<host>/<ns>/<type>/<zip>`: a provider zip handed over by
//! `tfmirror cache import`, stored by the server because the server is the
//! one process that writes to the cache.
//!
//! Nothing is stored on the uploader's word: Terraform installs what the
//! cache serves, and the network mirror is trusted without a signature. The
//! upload is staged beside its final name, checked, and committed only once
//! verified, in this order:
//!
//! 1. When the package's registry can answer (its download answer and
//!    signed SHA256SUMS are cached or reachable), the zip's sha256 must be
//!    the one the signature-verified SHA256SUMS lists for it. The registry
//!    then decides: a zip it does not vouch for is refused even if a lock
//!    file lists it.
//! 2. Otherwise (the registry is unreachable, its host is not proxied, or
//!    it does not know the package) the zip's `zh:` or `h1:` must be among
//!    the hashes of the lock files the user named, which the client sends
//!    in [`LOCK_FILE_HEADER`]s.
//!
//! Anything else is a 422 naming the package and the check that failed.
//! How a stored zip was verified is recorded (see [`super::verified`]).

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

use super::checksums::{expected_sha256, ChecksumError};
use super::hashes::{self, ZipH1};
use super::network_mirror::{zip_route, H1_KEY_PREFIX};
use super::package::zip_path;
use super::route::Package;
use super::verified::{self, VerifiedBy};
use super::{AnswerError, Providers};
use crate::protocol::LOCK_FILE_HEADER;
use crate::response::{self, HandlerError, Response};
use crate::store::{BlobWriter, Document, FetchError, Written};
use crate::upstream::Forwarded;

/// More lock files than any import needs; a bound on the work one request
/// can ask for.
const MAX_LOCK_FILES: usize = 64;

/// One lock file's hashes for the package being imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHashes {
    /// The lock file as the client names it, kept in the verification
    /// record.
    pub file: String,
    /// Its `zh:` and `h1:` hashes for the package's provider and version.
    pub hashes: Vec<String>,
}

impl LockHashes {
    /// The value of a [`LOCK_FILE_HEADER`]; only `zh:` and `h1:` hashes
    /// made of visible ASCII are sent, the only kinds the server checks.
    pub fn header_value(&self) -> String {
        let file = utf8_percent_encode(&self.file, NON_ALPHANUMERIC).to_string();
        let hashes = self.hashes.iter().filter(|h| is_checked_hash(h)).cloned();
        std::iter::once(file)
            .chain(hashes)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn parse(value: &str) -> Result<LockHashes, BadLockFiles> {
        let mut words = value.split_ascii_whitespace();
        let file = words.next().ok_or(BadLockFiles::Empty)?;
        let file = percent_decode_str(file)
            .decode_utf8()
            .map_err(|_| BadLockFiles::NameNotUtf8)?
            .into_owned();
        Ok(LockHashes {
            file,
            hashes: words
                .filter(|h| is_checked_hash(h))
                .map(str::to_owned)
                .collect(),
        })
    }
}

fn is_checked_hash(hash: &str) -> bool {
    (hash.starts_with("zh:") || hash.starts_with("h1:"))
        && hash.len() > 3
        && hash.bytes().all(|b| b.is_ascii_graphic())
}

/// The lock files of a request, from its headers.
fn lock_files(request: &Request<Incoming>) -> Result<Vec<LockHashes>, BadLockFiles> {
    let values = request.headers().get_all(LOCK_FILE_HEADER);
    if values.iter().count() > MAX_LOCK_FILES {
        return Err(BadLockFiles::TooMany);
    }
    values
        .iter()
        .map(|value| {
            let value = value.to_str().map_err(|_| BadLockFiles::NotAscii)?;
            LockHashes::parse(value)
        })
        .collect()
}

/// Why a request's lock file headers are refused (400).
#[derive(Debug, thiserror::Error)]
enum BadLockFiles {
    #[error("more than {MAX_LOCK_FILES} lock files")]
    TooMany,
    #[error("{LOCK_FILE_HEADER} is not ASCII")]
    NotAscii,
    #[error("an empty {LOCK_FILE_HEADER} header")]
    Empty,
    #[error("{LOCK_FILE_HEADER}: the file name is not UTF-8")]
    NameNotUtf8,
}

/// Why an uploaded zip is not stored; the text follows "refusing
/// <package>: " in the answer.
#[derive(Debug, thiserror::Error)]
enum Unverified {
    #[error(
        "not listed in the registry's signed SHA256SUMS: its sha256 is {actual}, \
         SHA256SUMS lists {listed}"
    )]
    NotInSignedChecksums { actual: String, listed: String },
    #[error("the registry's checksums cannot be trusted: {0}")]
    Checksums(ChecksumError),
    #[error(
        "{registry}, and no --lock-file was given; name a lock file that locks this version \
         (`tfmirror cache import DIR --lock-file .terraform.lock.hcl`)"
    )]
    NoLockFile { registry: RegistryAbsent },
    #[error("{registry}, and none of the lock files given ({files}) locks this version")]
    NotLocked {
        registry: RegistryAbsent,
        files: String,
    },
    #[error("{registry}, and no lock file hash matches ({zh} / {h1}) in {files}")]
    NoLockMatch {
        registry: RegistryAbsent,
        zh: String,
        h1: String,
        files: String,
    },
}

/// Why the registry cannot vouch for a package either way.
#[derive(Debug, thiserror::Error)]
enum RegistryAbsent {
    #[error("{0} is not a registry this server proxies")]
    NotProxied(String),
    /// It answered no: a 404 for a package it does not have, or a 401 for
    /// a private one this server has no token for.
    #[error("the registry answered {0} for this package")]
    Refused(u16),
    #[error("the registry is unreachable ({0})")]
    Unreachable(String),
}

/// Why the registry gave no sha256 for a package.
enum RegistryCheck {
    /// It cannot answer for it: the lock files decide.
    Absent(RegistryAbsent),
    /// It answered, but its checksums failed their checks (a bad
    /// signature): nothing it says can vouch for the upload.
    Untrusted(ChecksumError),
    Store(std::io::Error),
}

/// Why an upload was not stored.
enum Refusal {
    Unverified(Unverified),
    /// The cache could not be written (the registry's checksums, on the way).
    Store(std::io::Error),
}

/// The staged upload's hashes.
struct Staged {
    written: Written,
    h1: ZipH1,
}

impl Providers {
    pub async fn import_zip(&self, segments: &[String], request: Request<Incoming>) -> Response {
        let package = match zip_route(segments) {
            Ok(package) => package,
            Err(e) => return e.response("provider zip"),
        };
        let lock_files = match lock_files(&request) {
            Ok(files) => files,
            Err(bad) => return response::error(StatusCode::BAD_REQUEST, &bad.to_string()),
        };
        let store_failed = |e| {
            let what = format!("imported {package}");
            response::store_failed(&self.store.write_error(what, e))
        };
        let rel = zip_path(&package);
        let _one_writer = self.store.locks().lock(&rel.key()).await;
        let mut writer = match self.store.writer(&rel) {
            Ok(writer) => writer,
            Err(e) => return store_failed(e),
        };
        match receive(request.into_body(), &mut writer, MAX_UPLOAD_BYTES).await {
            Ok(()) => {}
            Err(Upload::Broken(e)) => {
                let message = format!("{package}: the upload broke off: {e}");
                return response::error(StatusCode::BAD_REQUEST, &message);
            }
            Err(Upload::Store(e)) => return store_failed(e),
            Err(Upload::TooLarge) => {
                let message = format!(
                    "{package}: the upload is larger than {MAX_UPLOAD_BYTES} bytes; nothing was stored"
                );
                return response::error(StatusCode::PAYLOAD_TOO_LARGE, &message);
            }
        }
        let written = writer.written();
        let cached = match self.store.has_file(&rel).await {
            true => self.store.sha256(&rel).await,
            false => None,
        };
        if let Some(cached) = &cached {
            if *cached != written.sha256 {
                let message = format!(
                    "{package} is cached with sha256 {cached}, the imported zip has {}",
                    written.sha256
                );
                return response::error(StatusCode::CONFLICT, &message);
            }
            if verified::verification(&self.store, &package)
                .await
                .is_some()
            {
                return response::error(StatusCode::OK, &format!("{package} is already cached"));
            }
            // Cached before verification was recorded, and not derivable:
            // the upload may verify it now.
        }
        let staged = match writer.staged().await {
            Ok(path) => path.to_owned(),
            Err(e) => return store_failed(e),
        };
        let h1 = match tokio::task::spawn_blocking(move || hashes::zip_h1(&staged)).await {
            Ok(Ok(h1)) => h1,
            Ok(Err(e)) => {
                let message = format!("{package} is not a usable provider zip: {e}");
                return response::error(StatusCode::UNPROCESSABLE_ENTITY, &message);
            }
            Err(e) => return response::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let staged = Staged { written, h1 };
        let by = match self.verify_upload(&package, &staged, &lock_files).await {
            Ok(by) => by,
            Err(Refusal::Store(e)) => return store_failed(e),
            Err(Refusal::Unverified(why)) => {
                let message = format!("refusing {package}: {why}; nothing was stored");
                return HandlerError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
                    .into_response();
            }
        };
        if cached.is_none() {
            if let Err(e) = self.store.commit(&rel, writer).await {
                return store_failed(e);
            }
        }
        verified::record(&self.store, &package, &staged.written.sha256, by.clone());
        let doc = Document::now(staged.h1.values().join(" "));
        if let Err(e) = self
            .store
            .documents()
            .put(&format!("{H1_KEY_PREFIX}{}", rel.key()), &doc)
        {
            tracing::warn!("cannot record the h1 hash of {package}: {e}");
        }
        if cached.is_some() {
            tracing::info!("recorded the cached {package} as verified ({by:?})");
            return response::error(StatusCode::OK, &format!("{package} is already cached"));
        }
        tracing::info!("imported {package} ({} bytes, {by:?})", staged.written.size);
        response::error(StatusCode::CREATED, &format!("imported {package}"))
    }

    /// How the upload is verified, by the rules of the module comment.
    async fn verify_upload(
        &self,
        package: &Package,
        staged: &Staged,
        lock_files: &[LockHashes],
    ) -> Result<VerifiedBy, Refusal> {
        let registry = match self.signed_sha256(package).await {
            Ok(listed) if listed == staged.written.sha256 => {
                return Ok(VerifiedBy::RegistrySignature)
            }
            Ok(listed) => {
                return Err(Refusal::Unverified(Unverified::NotInSignedChecksums {
                    actual: staged.written.sha256.clone(),
                    listed,
                }))
            }
            Err(RegistryCheck::Untrusted(e)) => {
                return Err(Refusal::Unverified(Unverified::Checksums(e)))
            }
            Err(RegistryCheck::Store(e)) => return Err(Refusal::Store(e)),
            Err(RegistryCheck::Absent(absent)) => absent,
        };
        match_lock_files(staged, lock_files, registry).map_err(Refusal::Unverified)
    }

    /// The sha256 the registry's signature-verified SHA256SUMS lists for
    /// the package. The upload's `Authorization` is the server's own secret,
    /// never a registry credential, so it is not forwarded; tokens from the
    /// server's environment still apply.
    async fn signed_sha256(&self, package: &Package) -> Result<String, RegistryCheck> {
        let host = package.address.host.as_str();
        if !self.config.is_proxied(host) {
            return Err(RegistryCheck::Absent(RegistryAbsent::NotProxied(
                host.to_owned(),
            )));
        }
        let forwarded = Forwarded::default();
        let answer = match self.fetch_download_answer(package, &forwarded, None).await {
            Ok(answer) => answer,
            Err(AnswerError::Fetch(FetchError::Answer { status, .. })) => {
                return Err(RegistryCheck::Absent(RegistryAbsent::Refused(status)))
            }
            Err(
                AnswerError::Fetch(FetchError::Unavailable(why)) | AnswerError::Unreadable(why),
            ) => return Err(RegistryCheck::Absent(RegistryAbsent::Unreachable(why))),
            // A private answer is cached but the registry cannot say now
            // whether this server's credential may have it: as good as
            // unreachable, so lock files decide.
            Err(AnswerError::Fetch(FetchError::Withheld { why, .. })) => {
                return Err(RegistryCheck::Absent(RegistryAbsent::Unreachable(why)))
            }
            // Sealed, the registry is not asked: lock files decide.
            Err(AnswerError::Fetch(failure @ FetchError::Offline(_))) => {
                let why = failure.to_string();
                return Err(RegistryCheck::Absent(RegistryAbsent::Unreachable(why)));
            }
        };
        let sums = match self.verified_checksums(package, &answer, &forwarded).await {
            Ok(sums) => sums,
            Err(ChecksumError::Download { what, reason }) => {
                let why = format!("cannot download {what}: {reason}");
                return Err(RegistryCheck::Absent(RegistryAbsent::Unreachable(why)));
            }
            Err(ChecksumError::Store(e)) => return Err(RegistryCheck::Store(e)),
            Err(other) => return Err(RegistryCheck::Untrusted(other)),
        };
        expected_sha256(&sums, &answer).map_err(RegistryCheck::Untrusted)
    }
}

/// The first lock file holding the upload's `zh:` or one of its `h1:`.
fn match_lock_files(
    staged: &Staged,
    lock_files: &[LockHashes],
    registry: RegistryAbsent,
) -> Result<VerifiedBy, Unverified> {
    if lock_files.is_empty() {
        return Err(Unverified::NoLockFile { registry });
    }
    let zh = format!("zh:{}", staged.written.sha256);
    let mut own = staged.h1.values();
    own.push(zh.clone());
    if let Some(lock) = lock_files
        .iter()
        .find(|lock| lock.hashes.iter().any(|hash| own.contains(hash)))
    {
        return Ok(VerifiedBy::LockFile {
            file: lock.file.clone(),
        });
    }
    let files = lock_files
        .iter()
        .map(|lock| lock.file.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if lock_files.iter().all(|lock| lock.hashes.is_empty()) {
        return Err(Unverified::NotLocked { registry, files });
    }
    Err(Unverified::NoLockMatch {
        registry,
        zh,
        h1: staged.h1.unpacked.clone(),
        files,
    })
}

enum Upload {
    Broken(String),
    Store(std::io::Error),
    /// Past [`MAX_UPLOAD_BYTES`]: not read further.
    TooLarge,
}

/// A zip larger than what may ever be unpacked from it is no provider
/// package, and an endless upload must not fill the disk.
const MAX_UPLOAD_BYTES: u64 = super::unzip::MAX_UNPACKED_BYTES;

/// Streams the request body into the writer, up to `limit` bytes.
async fn receive<B>(body: B, writer: &mut BlobWriter, limit: u64) -> Result<(), Upload>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Upload::Broken(e.to_string()))?;
        if let Some(chunk) = frame.data_ref() {
            received += chunk.len() as u64;
            if received > limit {
                return Err(Upload::TooLarge);
            }
            writer.write(chunk).await.map_err(Upload::Store)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_past_the_limit_is_not_read_further() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("package.zip");
        let chunks = ["abc", "def", "ghi"].map(|c| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from_static(
                c.as_bytes(),
            )))
        });
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
        let mut writer = BlobWriter::create(&target).unwrap();
        let result = receive(body, &mut writer, 5).await;
        assert!(matches!(result, Err(Upload::TooLarge)));
        assert_eq!(writer.written().size, 3, "only what fit was written");
        drop(writer);
        assert!(!target.exists(), "nothing in place");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nor a partial file"
        );
    }

    fn staged() -> Staged {
        Staged {
            written: Written {
                sha256: "ab".repeat(32),
                size: 3,
            },
            h1: ZipH1 {
                unpacked: "h1:unpacked=".to_owned(),
                archive: "h1:archive=".to_owned(),
            },
        }
    }

    fn lock(file: &str, hashes: &[&str]) -> LockHashes {
        LockHashes {
            file: file.to_owned(),
            hashes: hashes.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn unreachable() -> RegistryAbsent {
        RegistryAbsent::Unreachable("connection refused".to_owned())
    }

    #[test]
    fn the_header_carries_any_file_name_and_only_checked_hashes() {
        let sent = lock(
            "/src/my infra/ü;,.terraform.lock.hcl",
            &["zh:abc", "h1:x+y/z=", "xx:other", "h1:bad\u{e9}"],
        );
        let value = sent.header_value();
        assert!(value.is_ascii(), "{value}");
        let received = LockHashes::parse(&value).unwrap();
        assert_eq!(received, lock(&sent.file, &["zh:abc", "h1:x+y/z="]));
        assert!(LockHashes::parse("  ").is_err());
        assert_eq!(LockHashes::parse("f").unwrap(), lock("f", &[]));
    }

    #[test]
    fn a_zh_or_either_h1_of_a_lock_file_verifies() {
        let zh = format!("zh:{}", "ab".repeat(32));
        for hash in [zh.as_str(), "h1:unpacked=", "h1:archive="] {
            let locks = [lock("a.hcl", &["zh:other"]), lock("b.hcl", &[hash])];
            let by = match_lock_files(&staged(), &locks, unreachable()).unwrap();
            assert_eq!(
                by,
                VerifiedBy::LockFile {
                    file: "b.hcl".to_owned()
                }
            );
        }
    }

    #[test]
    fn refusals_say_what_was_checked_and_what_to_add() {
        let none = match_lock_files(&staged(), &[], unreachable()).unwrap_err();
        assert_eq!(
            none.to_string(),
            "the registry is unreachable (connection refused), and no --lock-file was given; \
             name a lock file that locks this version \
             (`tfmirror cache import DIR --lock-file .terraform.lock.hcl`)"
        );
        let unlocked = match_lock_files(&staged(), &[lock("a.hcl", &[])], unreachable());
        assert_eq!(
            unlocked.unwrap_err().to_string(),
            "the registry is unreachable (connection refused), and none of the lock files \
             given (a.hcl) locks this version"
        );
        let other = [lock("a.hcl", &["zh:other"]), lock("b.hcl", &["h1:other"])];
        let mismatch = match_lock_files(&staged(), &other, unreachable()).unwrap_err();
        assert_eq!(
            mismatch.to_string(),
            format!(
                "the registry is unreachable (connection refused), and no lock file hash \
                 matches (zh:{} / h1:unpacked=) in a.hcl, b.hcl",
                "ab".repeat(32)
            )
        );
    }
}
