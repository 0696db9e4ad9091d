//! HTTP module archives: downloaded whole, checked, stored immutable under
//! `<cache>/modules/archives/<key>.<ext>`, and served from there.
//!
//! Unlike provider zips, an archive is not relayed while it downloads: it
//! is only worth storing once it has been unpacked successfully, and module
//! archives are small. Terraform's HEAD before the GET starts the download,
//! so the GET finds the archive on disk.

use futures_util::StreamExt;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use url::Url;

use super::source::archive_extension;
use super::validate::{check_archive, ArchiveCaps, ArchiveError};
use super::Modules;
use crate::audit::{Kind, Record};
use crate::policy::{self, Artifact};
use crate::protocol::closure::ClosureItem;
use crate::response::{self, HandlerError, Response};
use crate::store::{BlobWriter, Bucket, Document, Found, FromTier, ProduceError, RelPath, Segment};
use crate::upstream::{ArtifactError, BodyError, BodyLimits, Credential, Forwarded};

const CONTENT_TYPE: &str = "application/octet-stream";

/// Where a stored archive came from, recorded when a download location
/// pointing at it is first served, so the archive URL alone finds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveOrigin {
    pub url: String,
    /// The registry whose answer named the archive: its token may be sent
    /// along when the archive is on the registry's own host.
    pub registry_host: String,
    /// The module whose download answer named it, for the audit log;
    /// absent from records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// The file name in tfmirror's URL for an archive: `<key>.<ext>`, or
/// `<key>-<grant>.<ext>` when the download answer naming it was private
/// (Terraform sends no credential for an archive; the grant stands in).
#[derive(Debug)]
pub struct ArchiveName {
    /// 32 hex digits naming the archive's URL.
    pub key: String,
    pub grant: Option<String>,
    pub extension: String,
    /// `modules/archives/<key>.<ext>`, where it is stored.
    pub rel: RelPath,
}

impl ArchiveName {
    pub fn parse(file_name: &str) -> Option<ArchiveName> {
        let (stem, extension) = file_name.split_once('.')?;
        let (key, grant) = match stem.split_once('-') {
            Some((key, grant)) => (key, Some(grant)),
            None => (stem, None),
        };
        let valid_key = key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_key || archive_extension(extension).is_none() {
            return None;
        }
        if grant.is_some_and(|g| g.is_empty() || !g.bytes().all(|b| b.is_ascii_hexdigit())) {
            return None;
        }
        let rel = Bucket::ModuleArchives.join([Segment::new(&format!("{key}.{extension}")).ok()?]);
        Some(ArchiveName {
            key: key.to_owned(),
            grant: grant.map(str::to_owned),
            extension: extension.to_owned(),
            rel,
        })
    }

    /// The file name [`ArchiveName::parse`] reads.
    pub fn url_name(key: &str, extension: &str, grant: Option<&str>) -> String {
        match grant {
            Some(grant) => format!("{key}-{grant}.{extension}"),
            None => format!("{key}.{extension}"),
        }
    }
}

pub fn origin_key(key: &str) -> String {
    format!("modules/archive-origin/{key}")
}

impl Modules {
    /// Serves `/modules/archives/<file>`, downloading it first if needed.
    /// Only an archive whose origin is on record is served, and a private
    /// one (named by a private download answer) only to a request with a
    /// grant or a credential that may read that answer: with the record
    /// lost, the archive counts as private.
    pub(super) async fn archive(&self, file_name: &str, forwarded: &Forwarded) -> Response {
        let Some(name) = ArchiveName::parse(file_name) else {
            return response::error(StatusCode::NOT_FOUND, "no such module archive");
        };
        let origin_key = origin_key(&name.key);
        let Some((origin, record)) = self.origin(&origin_key) else {
            let message = "the origin of this archive is unknown; run `terraform init` again";
            return response::error(StatusCode::NOT_FOUND, message);
        };
        let archive = Artifact::Archive(origin.url.clone());
        if let Some(refusal) = policy::check::refused(&self.policy, archive) {
            return refusal;
        }
        let host = &origin.registry_host;
        let reader = self
            .registry
            .reader(host, &origin_key, forwarded, name.grant.as_deref());
        if !reader.may_read(&record) {
            let what = format!("module archive {}", origin.url);
            let why = "this request carries neither that credential nor a grant from the \
                       download answer that named the archive";
            return response::withheld(&what, host, why);
        }
        let caps = ArchiveCaps::from(&self.config.limits);
        let extension = name.extension.clone();
        let tier = FromTier::Checked {
            max_size: self.config.limits.module_archive_size,
            check: Box::new(move |staged| {
                check_archive(staged, &extension, caps)
                    .map(drop)
                    .map_err(Into::into)
            }),
        };
        let download = {
            let (this, origin, forwarded) = (self.clone(), origin.clone(), forwarded.clone());
            move |writer| async move {
                this.fetch_archive(&origin, writer, &name.extension, &forwarded)
                    .await
            }
        };
        let refused = |reason: &dyn std::fmt::Display| {
            let message = format!("refusing module archive {}: {reason}", origin.url);
            HandlerError::new(StatusCode::BAD_GATEWAY, message).into_response()
        };
        let store_failed = |e| {
            let what = format!("module archive {}", origin.url);
            response::store_failed(&self.store.write_error(what, e))
        };
        match self.store.get_or_produce(&name.rel, tier, download).await {
            Ok(opened) => {
                let served = response::touched(
                    response::file(opened.file, opened.size, CONTENT_TYPE),
                    [
                        ClosureItem::Artifact(name.rel.key()),
                        ClosureItem::Document(origin_key.clone()),
                    ],
                );
                match opened.found {
                    Found::Produced => response::downloaded(served),
                    Found::Disk | Found::SecondTier => served,
                }
            }
            Err(ProduceError::Produce(ArchiveFailure::Refused(reason))) => refused(&reason),
            Err(ProduceError::Produce(ArchiveFailure::Offline(offline))) => refused(&offline),
            Err(ProduceError::Produce(ArchiveFailure::Store(e)) | ProduceError::Store(e)) => {
                store_failed(e)
            }
            Err(e @ (ProduceError::Earlier(_) | ProduceError::Task(_))) => refused(&e),
            Err(ProduceError::Vanished) => {
                response::error(StatusCode::INTERNAL_SERVER_ERROR, "stored archive vanished")
            }
        }
    }

    /// The origin record of an archive, parsed, and as stored (which says
    /// whether it is private).
    fn origin(&self, origin_key: &str) -> Option<(ArchiveOrigin, Document)> {
        let record = self.store.documents().cached(origin_key)?;
        let origin = serde_json::from_str(&record.body).ok()?;
        Some((origin, record))
    }

    /// Downloads the archive into `writer` and checks it unpacks within
    /// the caps; the store commits it.
    async fn fetch_archive(
        &self,
        origin: &ArchiveOrigin,
        writer: BlobWriter,
        extension: &str,
        forwarded: &Forwarded,
    ) -> Result<BlobWriter, ArchiveFailure> {
        let _in_flight = crate::metrics::InFlight::start();
        let url = Url::parse(&origin.url).map_err(|e| format!("bad URL: {e}"))?;
        let forwarded = Forwarded {
            authorization: self.archive_credential(origin, &url),
            ..forwarded.clone()
        };
        let limits = &self.config.limits;
        let body_limits = BodyLimits {
            max_size: limits.module_archive_size,
            size_key: "max_module_archive_size",
            stall: limits.download_stall,
        };
        let name = origin.module.as_deref().unwrap_or(&origin.url);
        let line = Record::new(&forwarded.requester(), Kind::ModuleArchive, name).url(&origin.url);
        let fetched = self
            .download_archive(&url, &forwarded, body_limits, writer, extension)
            .await;
        let line = match &fetched {
            Ok((writer, entries)) => {
                let written = writer.written();
                let how = format!("archive check ({entries} entries)");
                Some(line.hashed(written.size, written.sha256).verified(how))
            }
            Err(ArchiveFailure::Offline(_)) => None,
            Err(e) => Some(line.failed(e)),
        };
        if let Some(line) = line {
            self.upstream.audit().write(line);
        }
        let (writer, entries) = fetched?;
        tracing::info!(
            "downloaded module archive {} ({} bytes, {entries} entries)",
            origin.url,
            writer.written().size
        );
        Ok(writer)
    }

    /// Downloads the archive at `url` into `writer` and checks that it
    /// unpacks within the caps; returns the number of entries.
    async fn download_archive(
        &self,
        url: &Url,
        forwarded: &Forwarded,
        body_limits: BodyLimits,
        mut writer: BlobWriter,
        extension: &str,
    ) -> Result<(BlobWriter, u64), ArchiveFailure> {
        let mut upstream = self
            .upstream
            .get_bounded_artifact(url, forwarded, body_limits)
            .await?;
        let expected_len = upstream.content_length;
        // Dropping the writer on an error removes its temporary file.
        while let Some(chunk) = upstream.chunks.next().await {
            writer.write(&chunk?).await.map_err(ArchiveFailure::Store)?;
        }
        let size = writer.written().size;
        if expected_len.is_some_and(|len| len != size) {
            return Err(ArchiveFailure::Refused(format!(
                "the download broke off after {size} of {} bytes",
                expected_len.unwrap_or(0)
            )));
        }
        let staged = writer
            .staged()
            .await
            .map_err(ArchiveFailure::Store)?
            .to_owned();
        let extension = extension.to_owned();
        let caps = ArchiveCaps::from(&self.config.limits);
        let entries = tokio::task::spawn_blocking(move || check_archive(&staged, &extension, caps))
            .await
            .map_err(|e| format!("archive check failed: {e}"))??;
        Ok((writer, entries))
    }

    /// Archive downloads carry a registry token only when the archive is
    /// served by the registry's own host: the token of the request that
    /// resolved the location, else the host's token from the environment.
    fn archive_credential(&self, origin: &ArchiveOrigin, url: &Url) -> Option<Credential> {
        let registry_url = self.config.discovery_url(&origin.registry_host);
        let same_host = registry_url.host_str() == url.host_str()
            && registry_url.port_or_known_default() == url.port_or_known_default();
        if !same_host {
            return None;
        }
        let remembered = self
            .credentials
            .lock()
            .expect("credential map poisoned")
            .get(&origin.url)
            .cloned();
        remembered.or_else(|| self.upstream.env_token(&origin.registry_host).cloned())
    }
}

/// Why an archive was not stored: the upstream's doing, or the cache's.
#[derive(Debug, thiserror::Error)]
enum ArchiveFailure {
    #[error("{0}")]
    Refused(String),
    #[error("cannot store it: {0}")]
    Store(std::io::Error),
    /// The server is sealed: no request was made.
    #[error("{0}")]
    Offline(crate::sealed::Offline),
}

impl From<String> for ArchiveFailure {
    fn from(reason: String) -> ArchiveFailure {
        ArchiveFailure::Refused(reason)
    }
}

impl From<BodyError> for ArchiveFailure {
    fn from(error: BodyError) -> ArchiveFailure {
        match error {
            BodyError::Unavailable(ArtifactError::Offline(offline)) => {
                ArchiveFailure::Offline(offline)
            }
            other => ArchiveFailure::Refused(other.to_string()),
        }
    }
}

impl From<ArchiveError> for ArchiveFailure {
    fn from(error: ArchiveError) -> ArchiveFailure {
        ArchiveFailure::Refused(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_a_key_an_optional_grant_and_a_known_extension() {
        let key = "0123456789abcdef0123456789abcdef";
        let name = ArchiveName::parse(&format!("{key}.tar.gz")).unwrap();
        assert_eq!((name.key.as_str(), name.grant), (key, None));
        assert_eq!(name.rel.key(), format!("modules/archives/{key}.tar.gz"));

        let url_name = ArchiveName::url_name(key, "zip", Some("00ff"));
        let granted = ArchiveName::parse(&url_name).unwrap();
        assert_eq!(granted.grant.as_deref(), Some("00ff"));
        assert_eq!(
            granted.rel.key(),
            format!("modules/archives/{key}.zip"),
            "stored without it"
        );

        for bad in [
            "short.zip",
            &format!("{key}.exe"),
            key,
            "../x.zip",
            &format!("{key}-.zip"),
            &format!("{key}-zz.zip"),
        ] {
            assert!(ArchiveName::parse(bad).is_none(), "{bad}");
        }
    }
}
