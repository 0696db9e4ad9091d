//! The bundle file format, written down once so that `bundle create`,
//! `bundle verify`, `bundle list` and a later `bundle import` cannot drift.
//!
//! A bundle is a tar stream compressed with zstd. Its first tar entry is
//! `manifest.json`, a [`Manifest`]; then comes one tar entry per manifest
//! entry, in the manifest's order (sorted by path), at the entry's `path`:
//!
//! - `artifacts/<key in the cache>`: an immutable artifact file as the cache
//!   holds it (provider zips, `SHA256SUMS` and `.sig`, module archives,
//!   git-archive tarballs), e.g.
//!   `artifacts/providers/<host>/<ns>/<type>/<zip>`;
//! - `documents/<escaped key>.json`: a metadata document (version list,
//!   download answer, module location), its key escaped into one path
//!   component as the shared tier escapes it (`ObjectKey::document`), its
//!   bytes those of the cache's own document file (`store::doc_files`),
//!   with the fetch time set to the bundle's `created` (a refresh changes
//!   the fetch time, not the answer);
//! - `git/<host>/<path>.git.bundle`: a git mirror as a `git bundle`.
//!
//! Reproducible: the same entries give byte-identical files. Tar headers
//! carry mtime 0, uid and gid 0, mode 0644, no user or group names; zstd
//! runs at [`ZSTD_LEVEL`]; `created` comes from `SOURCE_DATE_EPOCH` when
//! set (the reproducible-builds convention), else from the clock, so two
//! bundles are identical only when that variable is set.

use serde::{Deserialize, Serialize};

use crate::protocol::closure::ClosureItem;

/// The format this code writes and reads.
pub const FORMAT: u32 = 1;
/// The first tar entry's path.
pub const MANIFEST_PATH: &str = "manifest.json";
/// Fixed so that the same content compresses to the same bytes. Level 3 is
/// zstd's default: most of a bundle is provider zips, already compressed,
/// where higher levels cost time and gain nothing.
pub const ZSTD_LEVEL: i32 = 3;
/// The mode of every tar entry.
pub const ENTRY_MODE: u32 = 0o644;

/// What a hostile bundle may not exceed before it is read further.
pub const MAX_MANIFEST_BYTES: u64 = 32 * 1024 * 1024;
/// Entries in one bundle; a run touching more is refused when created.
pub const MAX_ENTRIES: usize = crate::protocol::closure::MAX_CLOSURE_ITEMS;
/// Bytes of one path inside the tar.
pub const MAX_PATH_BYTES: usize = 1024;

/// Top-level directories of the tar, one per way an entry is stored.
pub const ARTIFACTS_DIR: &str = "artifacts";
pub const DOCUMENTS_DIR: &str = "documents";
pub const GIT_DIR: &str = "git";
/// What a git bundle's path adds to its mirror's key.
pub const GIT_BUNDLE_SUFFIX: &str = ".bundle";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub tfmirror_version: String,
    /// RFC 3339, UTC, whole seconds.
    pub created: String,
    /// `os_arch` of the packages asked for besides the run's own.
    pub platforms: Vec<String>,
    /// Sorted by `path`, each path once.
    pub entries: Vec<Entry>,
}

/// One file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: EntryKind,
    /// In Terraform's terms, e.g. `registry.terraform.io/hashicorp/aws
    /// 5.89.0 linux_amd64`.
    pub name: String,
    /// The tar entry's path.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What an entry holds, as the cache stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A provider zip (`providers/`).
    ProviderPackage,
    /// A version's `SHA256SUMS` (`provider-checksums/`).
    ProviderChecksums,
    /// Its detached signature, `SHA256SUMS.sig`.
    ProviderSignature,
    /// A module archive fetched over HTTP (`modules/archives/`).
    ModuleArchive,
    /// A commit's tree as tar.gz (`git-archives/`).
    GitArchive,
    /// A git mirror as a `git bundle`.
    GitBundle,
    /// A provider package's download answer, with its signing keys.
    DownloadAnswer,
    /// A provider's or module's version list.
    VersionList,
    /// A module version's download location.
    ModuleLocation,
    /// Any other metadata document the run read.
    Document,
}

impl EntryKind {
    /// The name `bundle list` shows, the same as in `manifest.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::ProviderPackage => "provider-package",
            EntryKind::ProviderChecksums => "provider-checksums",
            EntryKind::ProviderSignature => "provider-signature",
            EntryKind::ModuleArchive => "module-archive",
            EntryKind::GitArchive => "git-archive",
            EntryKind::GitBundle => "git-bundle",
            EntryKind::DownloadAnswer => "download-answer",
            EntryKind::VersionList => "version-list",
            EntryKind::ModuleLocation => "module-location",
            EntryKind::Document => "document",
        }
    }

    /// The kind of the artifact at cache `key`, if it is one a bundle
    /// carries (unpacked trees and snapshots are derived and are not).
    pub fn of_artifact(key: &str) -> Option<EntryKind> {
        use crate::store::Bucket;
        let (bucket, _) = Bucket::split(key)?;
        Some(match bucket {
            Bucket::Providers => EntryKind::ProviderPackage,
            Bucket::ProviderChecksums if key.ends_with(".sig") => EntryKind::ProviderSignature,
            Bucket::ProviderChecksums => EntryKind::ProviderChecksums,
            Bucket::ModuleArchives => EntryKind::ModuleArchive,
            Bucket::GitArchives => EntryKind::GitArchive,
            Bucket::GitMirrors => EntryKind::GitBundle,
            _ => return None,
        })
    }

    /// The kind of the metadata document with index `key`, by the
    /// prefixes `providers` and `modules` store them under.
    pub fn of_document(key: &str) -> EntryKind {
        const KINDS: [(&str, EntryKind); 4] = [
            ("providers/download/", EntryKind::DownloadAnswer),
            ("providers/versions/", EntryKind::VersionList),
            ("modules/versions/", EntryKind::VersionList),
            ("modules/download/", EntryKind::ModuleLocation),
        ];
        KINDS
            .iter()
            .find(|(prefix, _)| key.starts_with(prefix))
            .map_or(EntryKind::Document, |(_, kind)| *kind)
    }
}

/// Why a path inside a bundle is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path {0:?} is not a relative path of plain names (no `..`, `.`, `//`, `\\`, NUL or leading `/`)")]
    NotPlain(String),
    #[error("the path {0:?} is longer than {MAX_PATH_BYTES} bytes")]
    TooLong(String),
    #[error("the path {0:?} is under none of artifacts/, documents/, git/")]
    OutsideLayout(String),
    #[error("the document key {0:?} cannot be named in a bundle")]
    DocumentKey(String),
}

/// Checks a path from a (possibly hostile) bundle: relative, plain names,
/// bounded, under one of the three top-level directories.
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong(path.to_owned()));
    }
    let plain = !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain {
        return Err(PathError::NotPlain(path.to_owned()));
    }
    let top = path.split('/').next().unwrap_or_default();
    if ![ARTIFACTS_DIR, DOCUMENTS_DIR, GIT_DIR].contains(&top) || !path.contains('/') {
        return Err(PathError::OutsideLayout(path.to_owned()));
    }
    Ok(())
}

/// Where the artifact at cache `key` goes.
pub fn artifact_path(key: &str) -> String {
    format!("{ARTIFACTS_DIR}/{key}")
}

/// Where the document with index `key` goes: its escaped name is the one
/// the shared tier gives it (`ObjectKey::document`), so both read alike.
pub fn document_path(key: &str) -> Result<String, PathError> {
    let object = crate::shared::ObjectKey::document(key)
        .map_err(|_| PathError::DocumentKey(key.to_owned()))?;
    let escaped = object
        .as_str()
        .rsplit('/')
        .next()
        .ok_or_else(|| PathError::DocumentKey(key.to_owned()))?;
    Ok(format!("{DOCUMENTS_DIR}/{escaped}.json"))
}

/// Where the git mirror at cache `key` (`git/<host>/<path>.git`) goes.
pub fn git_bundle_path(mirror_key: &str) -> String {
    format!("{mirror_key}{GIT_BUNDLE_SUFFIX}")
}

/// The cache item an entry of a bundle this format wrote holds, read back
/// from its path (what `bundle create --append` asks the server for again).
pub fn item_of(entry: &Entry) -> Option<ClosureItem> {
    if let Some(key) = entry
        .path
        .strip_prefix(ARTIFACTS_DIR)
        .and_then(|p| p.strip_prefix('/'))
    {
        return Some(ClosureItem::Artifact(key.to_owned()));
    }
    if let Some(escaped) = entry
        .path
        .strip_prefix(DOCUMENTS_DIR)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_suffix(".json"))
    {
        let key = percent_encoding::percent_decode_str(escaped)
            .decode_utf8()
            .ok()?
            .into_owned();
        // Only a key that escapes back to this very path.
        return (document_path(&key).ok()? == entry.path).then_some(ClosureItem::Document(key));
    }
    let mirror = entry.path.strip_suffix(GIT_BUNDLE_SUFFIX)?;
    mirror
        .starts_with(&format!("{GIT_DIR}/"))
        .then(|| ClosureItem::GitMirror(mirror.to_owned()))
}

/// `created` for a bundle made now: `SOURCE_DATE_EPOCH` when it holds a
/// number of seconds, else the clock.
pub fn created(source_date_epoch: Option<&str>) -> String {
    let secs = source_date_epoch
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        });
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_their_wire_names() {
        for kind in [
            EntryKind::ProviderPackage,
            EntryKind::ProviderChecksums,
            EntryKind::ProviderSignature,
            EntryKind::ModuleArchive,
            EntryKind::GitArchive,
            EntryKind::GitBundle,
            EntryKind::DownloadAnswer,
            EntryKind::VersionList,
            EntryKind::ModuleLocation,
            EntryKind::Document,
        ] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn kinds_follow_the_store() {
        let zip = "providers/registry.terraform.io/hashicorp/aws/terraform-provider-aws_5.89.0_linux_amd64.zip";
        assert_eq!(
            EntryKind::of_artifact(zip),
            Some(EntryKind::ProviderPackage)
        );
        assert_eq!(
            EntryKind::of_artifact("provider-checksums/h/n/t/1.0.0/SHA256SUMS.sig"),
            Some(EntryKind::ProviderSignature)
        );
        assert_eq!(
            EntryKind::of_artifact("providers-unpacked/h/n/t/1.0.0/linux_amd64"),
            None
        );
        assert_eq!(
            EntryKind::of_document("providers/download/h/n/t/1.0.0/linux/amd64"),
            EntryKind::DownloadAnswer
        );
        assert_eq!(
            EntryKind::of_document("modules/archive-origin/x"),
            EntryKind::Document
        );
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "artifacts/../x",
            "artifacts/./x",
            "artifacts//x",
            "artifacts/x\\y",
            "artifacts/x\0",
            "elsewhere/x",
            "artifacts",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&format!("artifacts/{}", "x".repeat(2000))).is_err());
        for good in [
            "artifacts/providers/h/n/t/z.zip",
            "documents/providers%2Fdownload.json",
            "git/example.com/org/infra.git.bundle",
        ] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn document_paths_are_one_checked_component() {
        let path = document_path("providers/download/h/n/t/1.0.0/linux/amd64").unwrap();
        assert!(path.starts_with("documents/") && path.ends_with(".json"));
        assert_eq!(path.matches('/').count(), 1, "{path}");
        assert_eq!(check_path(&path), Ok(()));
    }

    #[test]
    fn an_entry_names_its_cache_item() {
        let entry = |path: &str| Entry {
            kind: EntryKind::Document,
            name: String::new(),
            path: path.to_owned(),
            size: 0,
            sha256: String::new(),
        };
        let key = "providers/download/h/n/t/1.0.0/linux/amd64";
        assert_eq!(
            item_of(&entry(&document_path(key).unwrap())),
            Some(ClosureItem::Document(key.to_owned()))
        );
        assert_eq!(
            item_of(&entry(&artifact_path("modules/archives/a.zip"))),
            Some(ClosureItem::Artifact("modules/archives/a.zip".to_owned()))
        );
        assert_eq!(
            item_of(&entry(&git_bundle_path("git/h/o/r.git"))),
            Some(ClosureItem::GitMirror("git/h/o/r.git".to_owned()))
        );
        assert_eq!(item_of(&entry("documents/not%2escaped%2Fright.json")), None);
    }

    #[test]
    fn created_follows_source_date_epoch() {
        assert_eq!(created(Some("0")), "1970-01-01T00:00:00Z");
        assert_eq!(created(Some("1700000000")), "2023-11-14T22:13:20Z");
        assert!(created(None).ends_with('Z'));
    }
}
