//! Naming a git repository three ways: its upstream URL, its path below
//! tfmirror's `/git/` and `/git-archive/` routes, and its mirror directory.
//!
//! The proxy path is `<scheme>/<host>/<path>`, so any upstream prefix maps
//! back: `https://github.com/org/infra.git` is `https/github.com/org/infra.git`.
//! An ssh user travels in the host segment (`ssh/git@github.com/...`).

use std::fmt;

use crate::store::{Bucket, RelPath, Segment};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoId {
    scheme: String,
    /// `host`, `host:port` or `user@host`.
    authority: String,
    /// Path segments, the last one without a `.git` suffix.
    path: Vec<Segment>,
}

impl RepoId {
    /// Parses an upstream clone URL (`https://h/o/r.git`, `ssh://git@h/o/r`,
    /// or scp-like `git@h:o/r.git`).
    pub fn from_url(url: &str) -> Option<RepoId> {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest.to_owned()),
            None => {
                let (authority, path) = url.split_once(':')?;
                authority.contains('@').then_some(())?;
                ("ssh".to_owned(), format!("{authority}/{path}"))
            }
        };
        if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
            return None;
        }
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let mut parts = rest.split('/');
        let authority = parts.next()?.to_ascii_lowercase();
        RepoId::from_parts(scheme, authority, parts)
    }

    /// Parses the segments of a proxy path: `[scheme, authority, path...]`.
    pub fn from_proxy_segments(segments: &[String]) -> Option<RepoId> {
        let (scheme, rest) = segments.split_first()?;
        let (authority, path) = rest.split_first()?;
        RepoId::from_parts(
            scheme.clone(),
            authority.clone(),
            path.iter().map(String::as_str),
        )
    }

    fn from_parts<'a>(
        scheme: String,
        authority: String,
        path: impl Iterator<Item = &'a str>,
    ) -> Option<RepoId> {
        let authority_ok = !authority.is_empty()
            && authority.len() <= 253
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '@'));
        if !authority_ok || !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
            return None;
        }
        let mut path: Vec<Segment> = path
            .filter(|p| !p.is_empty())
            .map(Segment::new)
            .collect::<Result<_, _>>()
            .ok()?;
        let last = path.pop()?;
        let bare = last.as_str().strip_suffix(".git").unwrap_or(last.as_str());
        path.push(Segment::new(bare).ok()?);
        Some(RepoId {
            scheme,
            authority,
            path,
        })
    }

    pub(super) fn scheme(&self) -> &str {
        &self.scheme
    }

    pub(super) fn authority(&self) -> &str {
        &self.authority
    }

    pub(super) fn path(&self) -> &[Segment] {
        &self.path
    }

    fn path_string(&self) -> String {
        self.path
            .iter()
            .map(Segment::as_str)
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Where the mirror is cloned from.
    pub fn upstream_url(&self) -> String {
        format!(
            "{}://{}/{}.git",
            self.scheme,
            self.authority,
            self.path_string()
        )
    }

    /// `<scheme>/<authority>/<path>.git`, below `/git/` or `/git-archive/`.
    pub fn proxy_path(&self) -> String {
        format!(
            "{}/{}/{}.git",
            self.scheme,
            self.authority,
            self.path_string()
        )
    }

    /// `git/<host>/<path>.git` below the cache root; the authority's `:`
    /// and `@`, which file names should not carry, become `+`.
    pub fn mirror_dir(&self) -> RelPath {
        self.below(Bucket::GitMirrors, ".git")
    }

    /// `git-archives/<host>/<path>.git/<name>` below the cache root.
    pub fn archive_path(&self, name: Segment) -> RelPath {
        let mut segments = self.below(Bucket::GitArchives, ".git").segments_owned();
        segments.push(name);
        RelPath::new(segments)
    }

    fn below(&self, bucket: Bucket, suffix: &str) -> RelPath {
        let authority =
            Segment::new(&self.authority.replace([':', '@'], "+")).expect("validated authority");
        let mut segments = bucket.join([authority]).segments_owned();
        segments.extend(self.path.iter().cloned());
        let last = segments.pop().expect("a repository path has a segment");
        segments
            .push(Segment::new(&format!("{last}{suffix}")).expect("suffix keeps a segment valid"));
        RelPath::new(segments)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.upstream_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_urls_both_ways() {
        let id = RepoId::from_url("https://github.com/org/infra.git").unwrap();
        assert_eq!(id.proxy_path(), "https/github.com/org/infra.git");
        assert_eq!(id.mirror_dir().key(), "git/github.com/org/infra.git");
        let back = RepoId::from_proxy_segments(&[
            "https".into(),
            "github.com".into(),
            "org".into(),
            "infra.git".into(),
        ]);
        assert_eq!(back, Some(id.clone()));
        assert_eq!(RepoId::from_url("https://github.com/org/infra"), Some(id));

        let ssh = RepoId::from_url("git@github.com:org/infra.git").unwrap();
        assert_eq!(ssh.upstream_url(), "ssh://git@github.com/org/infra.git");
        assert_eq!(ssh.mirror_dir().key(), "git/git+github.com/org/infra.git");
        let local = RepoId::from_url("http://127.0.0.1:9000/git/org/infra.git").unwrap();
        assert_eq!(
            local.mirror_dir().key(),
            "git/127.0.0.1+9000/git/org/infra.git"
        );
    }

    #[test]
    fn refuses_tricks() {
        for bad in [
            "https://h/../x.git",
            "https://h/a/%2e%2e/x",
            "file:///etc/x.git",
            "https://h/",
            "https:///x.git",
        ] {
            assert_eq!(RepoId::from_url(bad), None, "{bad}");
        }
    }
}
