//! go-getter source addresses, as found in `X-Terraform-Get`.
//!
//! tfmirror caches the sources it can fetch whole over HTTP (archives,
//! recognised the way go-getter recognises them) and passes every other
//! source (`git::`, `s3::`, `gcs::`, ...) through unchanged.

use sha2::{Digest, Sha256};
use url::Url;

/// Archive formats go-getter unpacks, by file extension; longer
/// extensions first so `tar.gz` wins over `gz`.
const ARCHIVE_EXTENSIONS: [&str; 7] = ["tar.bz2", "tar.gz", "tar.xz", "tbz2", "tgz", "txz", "zip"];

/// The canonical name of an archive extension go-getter unpacks.
pub fn archive_extension(extension: &str) -> Option<&'static str> {
    ARCHIVE_EXTENSIONS.into_iter().find(|e| *e == extension)
}

/// A source split into the package address and the `//subdir` within it,
/// as go-getter's `SourceDirSubdir` splits it: the first `//` after the
/// scheme's `://` and before the query starts the subdir, and a query
/// written after the subdir belongs to the package address.
pub fn split_subdir(source: &str) -> (String, Option<String>) {
    let stop = source.find('?').unwrap_or(source.len());
    let offset = source[..stop].find("://").map_or(0, |i| i + 3);
    let Some(index) = source[offset..stop].find("//").map(|i| i + offset) else {
        return (source.to_owned(), None);
    };
    let mut package = source[..index].to_owned();
    let mut subdir = source[index + 2..].to_owned();
    if let Some(query) = subdir.find('?') {
        package.push_str(&subdir[query..]);
        subdir.truncate(query);
    }
    (package, Some(subdir).filter(|s| !s.is_empty()))
}

/// A subdir must stay inside its package.
pub fn subdir_is_safe(subdir: &str) -> bool {
    !subdir.starts_with('/')
        && !subdir.contains('\\')
        && !subdir.contains('\0')
        && subdir.split('/').all(|part| part != "..")
}

/// A `git::` source: clone URL, ref, subdir, and any other query
/// parameters (`depth`, `sshkey`) as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
    /// The query as written, without `ref`.
    pub other_query: Vec<(String, String)>,
}

impl GitSource {
    pub fn parse(source: &str) -> Option<GitSource> {
        let (package, subdir) = split_subdir(source);
        let forced = package.strip_prefix("git::")?;
        let (url, query) = forced.split_once('?').unwrap_or((forced, ""));
        let mut reference = None;
        let mut other_query = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if key == "ref" {
                reference = Some(value.into_owned());
            } else {
                other_query.push((key.into_owned(), value.into_owned()));
            }
        }
        Some(GitSource {
            url: url.to_owned(),
            reference,
            subdir,
            other_query,
        })
    }

    /// The query string to keep when the source is rewritten.
    pub fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(reference) = &self.reference {
            query.append_pair("ref", reference);
        }
        for (key, value) in &self.other_query {
            query.append_pair(key, value);
        }
        query.finish()
    }
}

/// An HTTP(S) archive tfmirror downloads whole and serves from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSource {
    /// The package address without subdir: what is downloaded.
    pub url: Url,
    /// Canonical extension, which tells go-getter how to unpack it.
    pub extension: &'static str,
    pub subdir: Option<String>,
}

impl ArchiveSource {
    /// Recognises `http(s)://...` sources (optionally forced with
    /// `http::`/`https::`) whose path ends in an archive extension or whose
    /// query says `archive=<format>`.
    pub fn parse(source: &str) -> Option<ArchiveSource> {
        let (package, subdir) = split_subdir(source);
        let unforced = package
            .strip_prefix("http::")
            .or_else(|| package.strip_prefix("https::"))
            .unwrap_or(&package);
        let url = Url::parse(unforced).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let by_query = url
            .query_pairs()
            .find(|(k, _)| k == "archive")
            .map(|(_, v)| v.into_owned());
        let extension = match by_query {
            Some(format) => archive_extension(&format)?,
            None => ARCHIVE_EXTENSIONS
                .into_iter()
                .find(|e| url.path().ends_with(&format!(".{e}")))?,
        };
        Some(ArchiveSource {
            url,
            extension,
            subdir,
        })
    }

    /// Names the stored archive: the same package address, whatever the
    /// subdir, is one file.
    pub fn key(&self) -> String {
        hex::encode(&Sha256::digest(self.url.as_str().as_bytes())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_go_getter() {
        assert_eq!(
            split_subdir("https://h/a.zip//sub/dir"),
            ("https://h/a.zip".into(), Some("sub/dir".into()))
        );
        assert_eq!(
            split_subdir("https://h/a//sub?archive=zip"),
            ("https://h/a?archive=zip".into(), Some("sub".into()))
        );
        assert_eq!(
            split_subdir("git::https://h/r.git//modules/vpc?ref=v1"),
            (
                "git::https://h/r.git?ref=v1".into(),
                Some("modules/vpc".into())
            )
        );
        assert_eq!(
            split_subdir("https://h/a.tgz"),
            ("https://h/a.tgz".into(), None)
        );
    }

    #[test]
    fn recognises_archives() {
        let source = ArchiveSource::parse("https://h/m/1.0.0.tar.gz//sub").unwrap();
        assert_eq!(
            (source.extension, source.subdir.as_deref()),
            ("tar.gz", Some("sub"))
        );
        let by_query = ArchiveSource::parse("http://h/m/download?archive=zip").unwrap();
        assert_eq!(by_query.extension, "zip");
        assert_eq!(
            ArchiveSource::parse("https://h/m/1.0.0.tgz")
                .unwrap()
                .extension,
            "tgz"
        );
        for other in [
            "git::https://h/r.git?ref=v1",
            "s3::https://s3.amazonaws.com/b/m.zip",
            "https://h/m/page",
            "https://h/m?archive=false",
            "github.com/org/repo",
        ] {
            assert_eq!(ArchiveSource::parse(other), None, "{other}");
        }
    }

    #[test]
    fn one_key_per_package_whatever_the_subdir() {
        let a = ArchiveSource::parse("https://h/m.zip//a").unwrap();
        let b = ArchiveSource::parse("https://h/m.zip//b").unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 32);
    }

    #[test]
    fn parses_git_sources() {
        let git = GitSource::parse("git::https://h/org/infra.git//modules/vpc?ref=v1.0.0&depth=1")
            .unwrap();
        assert_eq!(git.url, "https://h/org/infra.git");
        assert_eq!(git.reference.as_deref(), Some("v1.0.0"));
        assert_eq!(git.subdir.as_deref(), Some("modules/vpc"));
        assert_eq!(git.query(), "ref=v1.0.0&depth=1");
        let scp = GitSource::parse("git::git@github.com:org/infra.git").unwrap();
        assert_eq!(
            (scp.url.as_str(), scp.reference),
            ("git@github.com:org/infra.git", None)
        );
        assert_eq!(GitSource::parse("https://h/x.zip"), None);
    }

    #[test]
    fn subdirs_stay_inside() {
        assert!(subdir_is_safe("modules/vpc"));
        for bad in ["../x", "a/../../b", "/etc", "a\\b"] {
            assert!(!subdir_is_safe(bad), "{bad}");
        }
    }
}
