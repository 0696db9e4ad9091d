//! The cache directory's layout, in one place: which directory holds what
//! ([`Bucket`]), which files at the top are tfmirror's own bookkeeping, the
//! one temporary-name convention, and [`classify`], which says what any
//! path below the root is. The inventory, the index rebuild (and so gc)
//! and the start-up sweeps all ask [`classify`], so they cannot disagree.
//!
//! ```text
//! <root>/
//!   CACHEDIR.TAG            marks the directory as a cache (backup tools skip it)
//!   owner.lock server.json server.log server.log.1 terraform.rc   bookkeeping
//!   audit.jsonl audit.jsonl.<n>   the audit log and its rotated files
//!   index/ index.broken/    the sled index (and a damaged one moved aside)
//!   documents/              metadata documents as files
//!   providers/<host>/<ns>/<type>/<zip>                  a packed filesystem_mirror
//!   provider-checksums/<host>/<ns>/<type>/<version>/SHA256SUMS[.sig]
//!   providers-unpacked/<host>/<ns>/<type>/<version>/<os>_<arch>/   derived trees
//!   modules/archives/<key>.<ext>
//!   git/<host>/<path>.git/  bare mirrors (one artifact each)
//!   git-archives/<host>/<path>.git/<commit>.tar.gz
//!   git-snapshots/<run>/    per-run snapshots of mirrors
//! ```
//!
//! The directory names carry no version yet: renaming them would strand
//! every existing cache. [`LAYOUT_VERSION`] is written into `CACHEDIR.TAG`
//! instead, so a later layout can tell an old cache apart.

use std::io;
use std::path::{Path, PathBuf};

use super::segment::{RelPath, Segment};

/// The version of this layout, recorded in `CACHEDIR.TAG`. Bump it with any
/// change a cache written by an earlier tfmirror would not survive.
pub const LAYOUT_VERSION: u32 = 1;

/// Prefix of every temporary file and directory tfmirror makes in the
/// cache (a download, a document, an unpacked tree, a new git mirror, a
/// mirror's fetch stamp, a directory being removed): nothing else starts
/// with it, and whatever does is swept at the next start.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A temporary-name prefix that also says what is being made, e.g.
/// `.tmp-gc-` for a directory being removed.
pub fn temp_prefix(what: &str) -> String {
    format!("{TEMP_PREFIX}{what}")
}

/// The cache directory tag (<https://bford.info/cachedir/>).
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";

/// Files at the top of the cache that are tfmirror's bookkeeping, never
/// artifacts.
pub const OWNER_LOCK: &str = "owner.lock";
pub const SERVER_JSON: &str = "server.json";
pub const SERVER_LOG: &str = "server.log";
/// The server log's rotated copy.
pub const SERVER_LOG_OLD: &str = "server.log.1";
pub const TERRAFORM_RC: &str = "terraform.rc";
const BOOKKEEPING_FILES: [&str; 6] = [
    CACHEDIR_TAG,
    OWNER_LOCK,
    SERVER_JSON,
    SERVER_LOG,
    SERVER_LOG_OLD,
    TERRAFORM_RC,
];

/// The audit log's default file (see `crate::audit`); its rotated files
/// are `audit.jsonl.1`, `.2`, ...: bookkeeping too.
pub const AUDIT_LOG: &str = "audit.jsonl";

/// Whether `name`, a file at the top of the cache, is the audit log or
/// one of its rotated files.
fn is_audit_log(name: &str) -> bool {
    name == AUDIT_LOG
        || name
            .strip_prefix(AUDIT_LOG)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a damaged index is moved aside (see `index.rs`, which names it
/// `<index>.broken`).
pub const BROKEN_INDEX_DIR: &str = "index.broken";

/// Appended to a mirror's directory name for the lock file of its fetches
/// (`<repo>.git.lock`).
pub const MIRROR_LOCK_SUFFIX: &str = ".lock";

/// Ends the name of a mirror's staging directory: `.tmp-<repo>.git.<random>.tmp`
/// now, `.<repo>.git.<random>.tmp` as earlier versions named it (still
/// recognised, so their leftovers are swept).
pub const MIRROR_STAGING_SUFFIX: &str = ".tmp";

/// One directory of the cache, each holding one kind of thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Provider zips, Terraform's packed `filesystem_mirror` layout.
    Providers,
    /// SHA256SUMS and their signatures, beside (not in) `providers/`.
    ProviderChecksums,
    /// Unpacked provider trees, derived from the zips.
    ProvidersUnpacked,
    /// HTTP module archives.
    ModuleArchives,
    /// Bare git mirrors.
    GitMirrors,
    /// tar.gz of a commit's tree.
    GitArchives,
    /// Per-run snapshots of git mirrors; not artifacts.
    GitSnapshots,
    /// Metadata documents as files; not artifacts.
    Documents,
    /// The sled index; not artifacts.
    Index,
}

impl Bucket {
    pub const ALL: [Bucket; 9] = [
        Bucket::Providers,
        Bucket::ProviderChecksums,
        Bucket::ProvidersUnpacked,
        Bucket::ModuleArchives,
        Bucket::GitMirrors,
        Bucket::GitArchives,
        Bucket::GitSnapshots,
        Bucket::Documents,
        Bucket::Index,
    ];

    /// The directory below the cache root, `/`-separated.
    pub const fn dir(self) -> &'static str {
        match self {
            Bucket::Providers => "providers",
            Bucket::ProviderChecksums => "provider-checksums",
            Bucket::ProvidersUnpacked => "providers-unpacked",
            Bucket::ModuleArchives => "modules/archives",
            Bucket::GitMirrors => "git",
            Bucket::GitArchives => "git-archives",
            Bucket::GitSnapshots => "git-snapshots",
            Bucket::Documents => "documents",
            Bucket::Index => "index",
        }
    }

    /// Whether what the bucket holds is listed as artifacts (the others are
    /// tfmirror's bookkeeping).
    pub const fn holds_artifacts(self) -> bool {
        !matches!(
            self,
            Bucket::GitSnapshots | Bucket::Documents | Bucket::Index
        )
    }

    /// Whether the bucket's artifacts go to a second tier (a bucket shared
    /// by a team or a fleet) and are looked for there: what can be checked
    /// when read back. Git mirrors are shared as bundles, by `git`; trees
    /// and archives made from a verified artifact are made again instead.
    pub const fn is_shared(self) -> bool {
        matches!(
            self,
            Bucket::Providers | Bucket::ProviderChecksums | Bucket::ModuleArchives
        )
    }

    /// The bucket's directory below `root`.
    pub fn path(self, root: &Path) -> PathBuf {
        root.join(self.dir())
    }

    /// `segments` below the bucket's directory.
    pub fn join(self, segments: impl IntoIterator<Item = Segment>) -> RelPath {
        RelPath::new(self.dir().split('/').map(RelPath::fixed).chain(segments))
    }

    /// The bucket `key` (a `/`-separated path below the root) lies in, and
    /// the parts of the key below the bucket's directory.
    pub fn split(key: &str) -> Option<(Bucket, Vec<&str>)> {
        Bucket::ALL.into_iter().find_map(|bucket| {
            let below = key.strip_prefix(bucket.dir())?.strip_prefix('/')?;
            Some((bucket, below.split('/').collect()))
        })
    }
}

/// How many path components below [`Bucket::ProvidersUnpacked`] name one
/// tree: `<host>/<namespace>/<type>/<version>/<os>_<arch>`.
const UNPACKED_PROVIDERS_DEPTH: usize = 5;

/// What a path below the cache root is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An artifact file, in the bucket the layout puts it in (`None`: a file
    /// the layout does not explain, e.g. left by another version; it is
    /// listed, so the user can see and remove it).
    File(Option<Bucket>),
    /// A directory that is one artifact as a whole: a git mirror, or a
    /// derived tree (an unpacked provider package).
    Whole { bucket: Bucket, derived: bool },
    /// Something inside a [`Kind::Whole`] directory.
    Part(Bucket),
    /// A directory on the way to artifacts.
    Directory,
    /// What a process killed half way leaves: never listed, swept at start.
    Leftover(Leftover),
    /// tfmirror's own: the bookkeeping files at the top, `CACHEDIR.TAG`,
    /// and the index, documents and snapshot directories with all they
    /// hold. Never listed.
    Bookkeeping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// A file or directory named with [`TEMP_PREFIX`].
    Temporary,
    /// A mirror's staging directory as earlier versions named it
    /// (`.<repo>.git.<random>.tmp`).
    MirrorStaging,
    /// A mirror's lock file, `<repo>.git.lock`.
    MirrorLock,
    /// git's temporary pack files in a mirror's `objects/pack`.
    GitTempPack,
}

/// Whether `name`, a file in a mirror's `objects/pack`, is a temporary file
/// of git's: `.tmp-<pid>-pack-*` of `git repack`, `tmp_pack_*` and
/// `tmp_idx_*` of `pack-objects` and `index-pack`. Never a pack git reads.
pub fn is_temp_pack(name: &str) -> bool {
    [TEMP_PREFIX, "tmp_pack_", "tmp_idx_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// What `key`, a `/`-separated path below the cache root, is; `is_dir`
/// says whether it is a directory.
pub fn classify(key: &str, is_dir: bool) -> Kind {
    let parts: Vec<&str> = key.split('/').collect();
    let name = parts.last().copied().unwrap_or_default();
    if name.starts_with(TEMP_PREFIX) {
        return Kind::Leftover(Leftover::Temporary);
    }
    if parts.len() == 1 && !is_dir && (BOOKKEEPING_FILES.contains(&name) || is_audit_log(name)) {
        return Kind::Bookkeeping;
    }
    if parts[0] == BROKEN_INDEX_DIR && (is_dir || parts.len() > 1) {
        return Kind::Bookkeeping;
    }
    let bucket_dir = || {
        Bucket::ALL
            .into_iter()
            .find(|b| is_dir && b.dir() == key)
            .map(|b| (b, Vec::new()))
    };
    let Some((bucket, below)) = Bucket::split(key).or_else(bucket_dir) else {
        return if is_dir {
            Kind::Directory
        } else {
            Kind::File(None)
        };
    };
    if !bucket.holds_artifacts() {
        return Kind::Bookkeeping;
    }
    match bucket {
        Bucket::GitMirrors => classify_git(&below, is_dir),
        Bucket::ProvidersUnpacked => match below.len() {
            n if n < UNPACKED_PROVIDERS_DEPTH => directory_or(is_dir, bucket),
            n if n == UNPACKED_PROVIDERS_DEPTH && is_dir => Kind::Whole {
                bucket,
                derived: true,
            },
            n if n == UNPACKED_PROVIDERS_DEPTH => Kind::File(Some(bucket)),
            _ => Kind::Part(bucket),
        },
        _ => directory_or(is_dir, bucket),
    }
}

fn directory_or(is_dir: bool, bucket: Bucket) -> Kind {
    if is_dir {
        Kind::Directory
    } else {
        Kind::File(Some(bucket))
    }
}

/// Below `git/`: mirrors (`<host>/<path>.git`, the first directory whose
/// name ends in `.git`), what their fetches leave beside them, and their
/// insides.
fn classify_git(below: &[&str], is_dir: bool) -> Kind {
    let bucket = Bucket::GitMirrors;
    let Some((name, parents)) = below.split_last() else {
        return Kind::Directory;
    };
    if let Some(at) = parents.iter().position(|p| p.ends_with(".git")) {
        let inside = &below[at + 1..];
        return match inside {
            ["objects", "pack", file] if !is_dir && is_temp_pack(file) => {
                Kind::Leftover(Leftover::GitTempPack)
            }
            _ => Kind::Part(bucket),
        };
    }
    if is_dir {
        if name.starts_with('.') && name.contains(".git.") && name.ends_with(MIRROR_STAGING_SUFFIX)
        {
            Kind::Leftover(Leftover::MirrorStaging)
        } else if name.ends_with(".git") {
            Kind::Whole {
                bucket,
                derived: false,
            }
        } else {
            Kind::Directory
        }
    } else if name
        .strip_suffix(MIRROR_LOCK_SUFFIX)
        .is_some_and(|mirror| mirror.ends_with(".git"))
    {
        Kind::Leftover(Leftover::MirrorLock)
    } else {
        Kind::File(Some(bucket))
    }
}

/// One entry [`walk`] finds.
pub struct Entry {
    pub path: PathBuf,
    /// Its path below the root, `/`-separated.
    pub key: String,
    pub file_type: std::fs::FileType,
    pub kind: Kind,
}

/// Visits every entry below `start` (the root or a directory in it),
/// classified; goes into a directory when `visit` says so. The one walk of
/// the inventory, the index rebuild and the start-up sweeps.
pub fn walk(
    root: &Path,
    start: &Path,
    mut visit: impl FnMut(Entry) -> io::Result<bool>,
) -> io::Result<()> {
    let mut dirs = vec![start.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let key = key_of(root, &path);
            let file_type = entry.file_type()?;
            let kind = classify(&key, file_type.is_dir());
            let found = Entry {
                path: path.clone(),
                key,
                file_type,
                kind,
            };
            if visit(found)? {
                dirs.push(path);
            }
        }
    }
    Ok(())
}

/// The `/`-separated key of `path`, which lies below `root`.
pub fn key_of(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .expect("walk stays below root")
        .to_string_lossy()
        .replace(std::path::MAIN_SEPARATOR, "/")
}

/// The text of `CACHEDIR.TAG`: the standard signature, then a comment
/// naming tfmirror and the layout version.
pub fn cachedir_tag() -> String {
    format!(
        "{CACHEDIR_SIGNATURE}\n\
         # This file is a cache directory tag created by tfmirror (cache layout {LAYOUT_VERSION}).\n\
         # For information about cache directory tags, see https://bford.info/cachedir/\n"
    )
}

/// Writes `CACHEDIR.TAG` at `root` unless it already says the same.
pub fn write_cachedir_tag(root: &Path) -> io::Result<()> {
    let path = root.join(CACHEDIR_TAG);
    let text = cachedir_tag();
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    crate::replace_file::replace(&path, text.as_bytes(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(key: &str) -> Kind {
        classify(key, false)
    }

    fn dir(key: &str) -> Kind {
        classify(key, true)
    }

    #[test]
    fn bucket_names_are_the_directories_on_disk() {
        let names: Vec<_> = Bucket::ALL.iter().map(|b| b.dir()).collect();
        assert_eq!(
            names,
            [
                "providers",
                "provider-checksums",
                "providers-unpacked",
                "modules/archives",
                "git",
                "git-archives",
                "git-snapshots",
                "documents",
                "index"
            ]
        );
        let rel = Bucket::ModuleArchives.join([Segment::new("k.zip").unwrap()]);
        assert_eq!(rel.key(), "modules/archives/k.zip");
        assert_eq!(
            Bucket::split("git-archives/h/r.git/c.tar.gz"),
            Some((Bucket::GitArchives, vec!["h", "r.git", "c.tar.gz"]))
        );
        assert_eq!(Bucket::split("git"), None, "the directory itself");
        assert_eq!(Bucket::split("gitx/a"), None);
    }

    #[test]
    fn artifact_files() {
        for (key, bucket) in [
            (
                "providers/registry.terraform.io/hashicorp/aws/terraform-provider-aws_5.89.0_linux_amd64.zip",
                Bucket::Providers,
            ),
            (
                "provider-checksums/h/ns/t/1.0.0/SHA256SUMS.sig",
                Bucket::ProviderChecksums,
            ),
            ("modules/archives/ab12.tar.gz", Bucket::ModuleArchives),
            (
                "git-archives/github.com/org/infra.git/0123.tar.gz",
                Bucket::GitArchives,
            ),
        ] {
            assert_eq!(file(key), Kind::File(Some(bucket)), "{key}");
        }
        assert_eq!(file("stray.txt"), Kind::File(None));
        assert_eq!(file("modules/other/x"), Kind::File(None));
        assert_eq!(dir("providers"), Kind::Directory);
        assert_eq!(dir("providers/h/ns"), Kind::Directory);
        assert_eq!(dir("modules"), Kind::Directory);
        assert_eq!(dir("somewhere"), Kind::Directory);
    }

    #[test]
    fn mirrors_and_their_leftovers() {
        let mirror = Kind::Whole {
            bucket: Bucket::GitMirrors,
            derived: false,
        };
        assert_eq!(dir("git/github.com/org/infra.git"), mirror);
        assert_eq!(dir("git/github.com/org"), Kind::Directory);
        assert_eq!(dir("git"), Kind::Directory);
        assert_eq!(
            file("git/h/org/infra.git/HEAD"),
            Kind::Part(Bucket::GitMirrors)
        );
        assert_eq!(
            dir("git/h/org/infra.git/objects/pack"),
            Kind::Part(Bucket::GitMirrors)
        );
        assert_eq!(
            file("git/h/org/infra.git/tfmirror-fetched"),
            Kind::Part(Bucket::GitMirrors)
        );
        assert_eq!(
            file("git/h/org/infra.git/refs/main.lock"),
            Kind::Part(Bucket::GitMirrors),
            "git's own lock inside a mirror"
        );
        assert_eq!(
            file("git/h/org/infra.git/objects/pack/pack-ab.pack"),
            Kind::Part(Bucket::GitMirrors)
        );
        for pack in ["tmp_pack_Xy12", "tmp_idx_Xy12"] {
            assert_eq!(
                file(&format!("git/h/org/infra.git/objects/pack/{pack}")),
                Kind::Leftover(Leftover::GitTempPack)
            );
        }
        assert_eq!(
            file("git/h/org/infra.git/objects/pack/.tmp-123-pack-ab.pack"),
            Kind::Leftover(Leftover::Temporary)
        );
        assert_eq!(
            file("git/h/org/infra.git.lock"),
            Kind::Leftover(Leftover::MirrorLock)
        );
        assert_eq!(
            dir("git/h/org/.infra.git.Ab12.tmp"),
            Kind::Leftover(Leftover::MirrorStaging)
        );
        assert_eq!(
            dir("git/h/org/.tmp-infra.git.Ab12.tmp"),
            Kind::Leftover(Leftover::Temporary),
            "the staging name of this version"
        );
        assert_eq!(dir("git/h/org/infra.git.lock"), Kind::Directory);
        assert_eq!(dir("git/h/.cache.tmp"), Kind::Directory, "not a mirror's");
        assert_eq!(
            file("git/h/org/.infra.git.Ab12.tmp"),
            Kind::File(Some(Bucket::GitMirrors))
        );
        assert_eq!(
            dir("git-archives/h/.infra.git.Ab12.tmp"),
            Kind::Directory,
            "only beside mirrors"
        );
        assert_eq!(
            file("providers/h/infra.git.lock"),
            Kind::File(Some(Bucket::Providers))
        );
    }

    #[test]
    fn unpacked_trees() {
        let tree = "providers-unpacked/registry.terraform.io/hashicorp/aws/5.1.0/linux_amd64";
        assert_eq!(
            dir(tree),
            Kind::Whole {
                bucket: Bucket::ProvidersUnpacked,
                derived: true
            }
        );
        assert_eq!(
            file(&format!("{tree}/terraform-provider-aws")),
            Kind::Part(Bucket::ProvidersUnpacked)
        );
        assert_eq!(
            dir("providers-unpacked/registry.terraform.io/hashicorp/aws/5.1.0"),
            Kind::Directory
        );
        assert_eq!(
            dir("providers/h/n/t/5.1.0/linux_amd64"),
            Kind::Directory,
            "only below providers-unpacked"
        );
        assert_eq!(
            dir("providers-unpacked/h/ns/t/1.0.0/.tmp-abc"),
            Kind::Leftover(Leftover::Temporary)
        );
    }

    #[test]
    fn temporary_files_anywhere() {
        for key in [
            ".tmp-tfmirror-x",
            "providers/h/ns/t/.tmp-x",
            "documents/ab/.tmp-y",
            "modules/archives/.tmp-z",
            "git/h/org/.tmp-gc-infra.git",
            "git/h/org/infra.git/.tmp-fetched-x",
        ] {
            assert_eq!(file(key), Kind::Leftover(Leftover::Temporary), "{key}");
            assert_eq!(dir(key), Kind::Leftover(Leftover::Temporary), "{key}");
        }
        assert!(temp_prefix("gc-").starts_with(TEMP_PREFIX));
    }

    #[test]
    fn bookkeeping_is_never_an_artifact() {
        for name in [
            "CACHEDIR.TAG",
            "owner.lock",
            "server.json",
            "server.log",
            "server.log.1",
            "terraform.rc",
            "audit.jsonl",
            "audit.jsonl.1",
            "audit.jsonl.12",
        ] {
            assert_eq!(file(name), Kind::Bookkeeping, "{name}");
            assert_eq!(
                file(&format!("providers/{name}")),
                Kind::File(Some(Bucket::Providers)),
                "only at the top: {name}"
            );
        }
        for key in ["index", "index.broken", "documents", "git-snapshots"] {
            assert_eq!(dir(key), Kind::Bookkeeping, "{key}");
        }
        assert_eq!(file("index"), Kind::File(None), "not the index");
        assert_eq!(file("audit.jsonl.x"), Kind::File(None), "not a rotated log");
        for key in [
            "index/db",
            "index.broken/db",
            "documents/ab/cd.json",
            "git-snapshots/run-a/git/h/r.git/HEAD",
        ] {
            assert_eq!(file(key), Kind::Bookkeeping, "{key}");
        }
    }

    #[test]
    fn the_tag_starts_with_the_signature_and_names_the_version() {
        let dir = tempfile::tempdir().unwrap();
        write_cachedir_tag(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(CACHEDIR_TAG)).unwrap();
        assert!(text.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
        assert!(text.contains(&format!("cache layout {LAYOUT_VERSION}")));
        write_cachedir_tag(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
