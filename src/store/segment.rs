//! Names that become path components.
//!
//! Every hostname, namespace, type, version, platform and file name that
//! reaches the disk comes from a request or an upstream answer. A
//! [`Segment`] can only be built through [`Segment::new`], so a path made of
//! segments cannot climb out of the cache, hide a NUL, or exceed what a file
//! system accepts.

use std::fmt;

/// Longest accepted segment. Registry names are far shorter (namespaces and
/// types are at most 64 characters); hostnames may reach 253.
pub const MAX_SEGMENT_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("empty name")]
    Empty,
    #[error("name {0:?} is a relative path component")]
    Dots(String),
    #[error("name is longer than {MAX_SEGMENT_LEN} bytes")]
    TooLong,
    #[error("name {0:?} contains a character that is not allowed")]
    BadCharacter(String),
}

impl Segment {
    /// Accepts ASCII letters, digits and `. _ - +` (the alphabet of registry
    /// names, semantic versions and release file names), rejects `.`/`..`
    /// and anything longer than [`MAX_SEGMENT_LEN`].
    pub fn new(name: &str) -> Result<Segment, SegmentError> {
        if name.is_empty() {
            return Err(SegmentError::Empty);
        }
        if name.len() > MAX_SEGMENT_LEN {
            return Err(SegmentError::TooLong);
        }
        if name == "." || name == ".." {
            return Err(SegmentError::Dots(name.to_owned()));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
        if !name.chars().all(allowed) {
            return Err(SegmentError::BadCharacter(
                name.escape_default().to_string(),
            ));
        }
        Ok(Segment(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<std::path::Path> for Segment {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

/// A path below the cache root, built only from [`Segment`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath(Vec<Segment>);

impl RelPath {
    pub fn new(segments: impl IntoIterator<Item = Segment>) -> RelPath {
        RelPath(segments.into_iter().collect())
    }

    /// For fixed names chosen by tfmirror itself; panics on a bad literal,
    /// which is a programming error rather than bad input.
    pub fn fixed(name: &str) -> Segment {
        Segment::new(name).expect("tfmirror's own path names are valid segments")
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn segments_owned(self) -> Vec<Segment> {
        self.0
    }

    /// The `/`-joined form used as the index key of the artifact's usage.
    pub fn key(&self) -> String {
        self.0
            .iter()
            .map(Segment::as_str)
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn to_path(&self, root: &std::path::Path) -> std::path::PathBuf {
        let mut path = root.to_path_buf();
        path.extend(self.0.iter());
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_registry_names() {
        for name in [
            "registry.terraform.io",
            "hashicorp",
            "aws",
            "5.89.0",
            "1.0.0-beta.1+build.5",
            "terraform-provider-aws_5.89.0_linux_amd64.zip",
        ] {
            assert!(Segment::new(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_path_tricks() {
        assert_eq!(Segment::new(""), Err(SegmentError::Empty));
        assert!(matches!(Segment::new(".."), Err(SegmentError::Dots(_))));
        assert!(matches!(Segment::new("."), Err(SegmentError::Dots(_))));
        for bad in ["a/b", "a\\b", "a\0b", "/etc", "%2e%2e", "a b", "é"] {
            assert!(
                matches!(Segment::new(bad), Err(SegmentError::BadCharacter(_))),
                "{bad}"
            );
        }
        assert_eq!(Segment::new(&"a".repeat(254)), Err(SegmentError::TooLong));
        assert!(Segment::new(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn paths_stay_below_the_root() {
        let rel = RelPath::new([RelPath::fixed("providers"), Segment::new("x.zip").unwrap()]);
        assert_eq!(rel.key(), "providers/x.zip");
        assert_eq!(
            rel.to_path(std::path::Path::new("/cache")),
            std::path::Path::new("/cache/providers/x.zip")
        );
    }
}
