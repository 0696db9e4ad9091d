//! What `tfmirror cache delete PATTERN` names, read as a user means it.
//!
//! A pattern with glob characters (`* ? [ {`) is a glob over names and
//! paths, as `cache list --filter` takes. Any other pattern is a name as
//! `cache list` shows it, or its leading words: `registry.terraform.io/hashicorp/tls`
//! names every file of that provider, `... 4.0.5` every file of that
//! version, `... 4.0.5 linux_amd64` one package (and its unpacked tree).
//! A provider address without a host (`hashicorp/tls`) stands for it on
//! the hosts Terraform and OpenTofu read it as. A path below the cache
//! directory names itself and what lies under it.

use globset::{Glob, GlobMatcher};

use super::unpacked_from;
use crate::provider_address::SHORT_SOURCE_HOSTS;

/// A parsed `cache delete` pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    Glob(GlobMatcher),
    /// Names that are one of these or start with one and a space, or paths
    /// that are the original text or lie below it.
    Words {
        names: Vec<String>,
        path: String,
    },
}

/// A glob that does not parse, e.g. `[a`.
#[derive(Debug, thiserror::Error)]
#[error("{pattern:?}: {source}")]
pub struct BadPattern {
    pattern: String,
    #[source]
    source: globset::Error,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, BadPattern> {
        if text.contains(['*', '?', '[', '{']) {
            let glob = Glob::new(text).map_err(|source| BadPattern {
                pattern: text.to_owned(),
                source,
            })?;
            return Ok(Pattern::Glob(glob.compile_matcher()));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let names = match words.split_first() {
            Some((address, rest)) if is_short_address(address) => SHORT_SOURCE_HOSTS
                .iter()
                .map(|host| [format!("{host}/{address}")].into_iter())
                .map(|first| first.chain(rest.iter().map(|w| (*w).to_owned())))
                .map(|all| all.collect::<Vec<_>>().join(" "))
                .collect(),
            Some(_) => vec![words.join(" ")],
            None => Vec::new(),
        };
        Ok(Pattern::Words {
            names,
            path: text.trim_end_matches('/').to_owned(),
        })
    }

    /// Whether the artifact `name` (as `cache list` shows it) at `path`
    /// (below the cache directory) is one this pattern names. An unpacked
    /// tree goes with the package it was made from.
    pub fn matches(&self, name: &str, path: &str) -> bool {
        let path_named = match self {
            Pattern::Glob(glob) => glob.is_match(path),
            Pattern::Words { path: own, .. } => !own.is_empty() && below(path, own, '/'),
        };
        path_named
            || self.names(name)
            || unpacked_from(name).is_some_and(|package| self.names(package))
    }

    fn names(&self, name: &str) -> bool {
        match self {
            Pattern::Glob(glob) => glob.is_match(name),
            Pattern::Words { names, .. } => names.iter().any(|words| below(name, words, ' ')),
        }
    }
}

/// Whether `whole` is `part`, or `part` followed by `separator` and more.
fn below(whole: &str, part: &str, separator: char) -> bool {
    whole
        .strip_prefix(part)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(separator))
}

/// `namespace/type`: one slash, and a first part that is no host name (a
/// host has a dot or a port; a git repository's name is `host/org/repo`).
fn is_short_address(word: &str) -> bool {
    match word.split_once('/') {
        Some((namespace, kind)) => {
            !namespace.is_empty()
                && !kind.is_empty()
                && !kind.contains('/')
                && !namespace.contains(['.', ':'])
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS_ZIP: (&str, &str) = (
        "registry.terraform.io/hashicorp/tls 4.0.5 linux_amd64",
        "providers/registry.terraform.io/hashicorp/tls/terraform-provider-tls_4.0.5_linux_amd64.zip",
    );
    const TLS_TREE: (&str, &str) = (
        "registry.terraform.io/hashicorp/tls 4.0.5 linux_amd64 (unpacked)",
        "providers-unpacked/registry.terraform.io/hashicorp/tls/4.0.5/linux_amd64",
    );
    const TLS_SUMS: (&str, &str) = (
        "registry.terraform.io/hashicorp/tls 4.0.5 SHA256SUMS",
        "provider-checksums/registry.terraform.io/hashicorp/tls/4.0.5/SHA256SUMS",
    );
    const TLS_OLDER: (&str, &str) = (
        "registry.terraform.io/hashicorp/tls 4.0.4 linux_amd64",
        "providers/registry.terraform.io/hashicorp/tls/terraform-provider-tls_4.0.4_linux_amd64.zip",
    );
    const TLS_TOFU: (&str, &str) = (
        "registry.opentofu.org/hashicorp/tls 4.0.5 linux_amd64",
        "providers/registry.opentofu.org/hashicorp/tls/terraform-provider-tls_4.0.5_linux_amd64.zip",
    );
    const TLS_PRIVATE: (&str, &str) = (
        "tf.example.com/hashicorp/tls 4.0.5 linux_amd64",
        "providers/tf.example.com/hashicorp/tls/terraform-provider-tls_4.0.5_linux_amd64.zip",
    );
    const TLSX: (&str, &str) = (
        "registry.terraform.io/hashicorp/tlsx 1.0.0 linux_amd64",
        "providers/registry.terraform.io/hashicorp/tlsx/terraform-provider-tlsx_1.0.0_linux_amd64.zip",
    );
    const REPO_MIRROR: (&str, &str) = (
        "github.com/org/infra mirror",
        "git/github.com/org/infra.git",
    );
    const REPO_ARCHIVE: (&str, &str) = (
        "github.com/org/infra 0123456789ab archive",
        "git-archives/github.com/org/infra.git/0123456789abcdef.tar.gz",
    );
    const ALL: [(&str, &str); 9] = [
        TLS_ZIP,
        TLS_TREE,
        TLS_SUMS,
        TLS_OLDER,
        TLS_TOFU,
        TLS_PRIVATE,
        TLSX,
        REPO_MIRROR,
        REPO_ARCHIVE,
    ];

    fn selected(pattern: &str) -> Vec<&'static str> {
        let pattern = Pattern::parse(pattern).unwrap();
        ALL.iter()
            .filter(|(name, path)| pattern.matches(name, path))
            .map(|(name, _)| *name)
            .collect()
    }

    #[test]
    fn a_provider_address_names_all_its_versions() {
        let every_version = vec![TLS_ZIP.0, TLS_TREE.0, TLS_SUMS.0, TLS_OLDER.0];
        assert_eq!(
            selected("registry.terraform.io/hashicorp/tls"),
            every_version
        );
        let mut both_hosts = every_version.clone();
        both_hosts.push(TLS_TOFU.0);
        assert_eq!(
            selected("hashicorp/tls"),
            both_hosts,
            "a short address is Terraform's and OpenTofu's"
        );
    }

    #[test]
    fn more_words_name_a_version_then_a_package() {
        let version = vec![TLS_ZIP.0, TLS_TREE.0, TLS_SUMS.0];
        assert_eq!(
            selected("registry.terraform.io/hashicorp/tls 4.0.5"),
            version
        );
        assert_eq!(
            selected("hashicorp/tls  4.0.5 "),
            [version, vec![TLS_TOFU.0]].concat()
        );
        assert_eq!(
            selected("registry.terraform.io/hashicorp/tls 4.0.5 linux_amd64"),
            [TLS_ZIP.0, TLS_TREE.0],
            "a package and its unpacked tree"
        );
        assert_eq!(
            selected("hashicorp/tls 4.0"),
            Vec::<&str>::new(),
            "words, not text"
        );
    }

    #[test]
    fn globs_paths_and_repositories() {
        assert_eq!(
            selected("*hashicorp/tls 4.0.5 linux_amd64"),
            [TLS_ZIP.0, TLS_TREE.0, TLS_TOFU.0, TLS_PRIVATE.0],
            "a glob takes the unpacked tree of a package too"
        );
        assert_eq!(
            selected("providers/registry.terraform.io/hashicorp/tls/"),
            [TLS_ZIP.0, TLS_OLDER.0]
        );
        assert_eq!(selected(TLS_SUMS.1), [TLS_SUMS.0]);
        assert_eq!(
            selected("github.com/org/infra"),
            [REPO_MIRROR.0, REPO_ARCHIVE.0]
        );
        assert_eq!(selected("hashicorp"), Vec::<&str>::new());
        assert_eq!(
            selected(""),
            Vec::<&str>::new(),
            "an empty pattern names nothing"
        );
        assert!(Pattern::parse("[a").is_err());
    }
}
