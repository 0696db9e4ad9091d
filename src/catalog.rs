//! Names for what the cache holds, in Terraform's terms: the store lists
//! files by path, people look for `registry.terraform.io/hashicorp/aws
//! 5.89.0 linux_amd64`.

mod pattern;

pub use pattern::Pattern;

use serde::{Deserialize, Serialize};

use crate::provider_address::ZipName;
use crate::store::{Bucket, Store, StoredArtifact};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Providers,
    Modules,
    Git,
    /// A file the layout does not explain, e.g. left by another version.
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Providers => "providers",
            Kind::Modules => "modules",
            Kind::Git => "git",
            Kind::Other => "other",
        }
    }
}

/// One artifact as `tfmirror cache list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    /// What it is, e.g. `registry.terraform.io/hashicorp/aws 5.89.0 linux_amd64`.
    pub name: String,
    /// Its path below the cache directory.
    pub path: String,
    pub size: u64,
    pub stored_at_ms: u64,
    pub last_used_ms: u64,
    pub uses: u64,
}

/// A metadata document's body by its key, from wherever the caller reads
/// documents (the server's store, or an unowned cache's index).
pub type DocumentBody<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl Entry {
    /// The entry of `artifact` as `store`'s server names it.
    pub fn new(artifact: &StoredArtifact, store: &Store) -> Entry {
        Entry::named(artifact, describe_in(store, &artifact.key))
    }

    /// The entry of `artifact`, where `documents` tells where a module
    /// archive came from (see [`describe_with`]).
    pub fn with_documents(artifact: &StoredArtifact, documents: &DocumentBody) -> Entry {
        Entry::named(artifact, describe_with(&artifact.key, documents))
    }

    fn named(artifact: &StoredArtifact, (kind, name): (Kind, String)) -> Entry {
        Entry {
            kind,
            name,
            path: artifact.key.clone(),
            size: artifact.size,
            stored_at_ms: artifact.usage.stored_at_ms,
            last_used_ms: artifact.usage.last_used_ms,
            uses: artifact.usage.hits,
        }
    }
}

/// What the name of an unpacked provider tree adds to its package's name.
const UNPACKED_SUFFIX: &str = " (unpacked)";

/// The package name of an unpacked tree's name, e.g.
/// `registry.terraform.io/hashicorp/aws 5.1.0 linux_amd64` for its tree:
/// `cache delete` of a package removes its tree too.
pub fn unpacked_from(name: &str) -> Option<&str> {
    name.strip_suffix(UNPACKED_SUFFIX)
}

/// [`describe`], with a module archive named by where it came from: its
/// URL as its origin record has it, without the query (which may carry a
/// signature or token) but for `archive=`, and without user or password.
/// An archive whose record is lost keeps its file name.
pub fn describe_with(key: &str, documents: &DocumentBody) -> (Kind, String) {
    let described = describe(key);
    if let Some((Bucket::ModuleArchives, [file])) =
        Bucket::split(key).as_ref().map(|(b, p)| (*b, p.as_slice()))
    {
        if let Some(url) = archive_url(file, documents) {
            return (Kind::Modules, url);
        }
    }
    described
}

/// [`describe_with`] the documents of the server's store: the names a
/// server lists, and the names `cache delete` matches and reports.
pub fn describe_in(store: &Store, key: &str) -> (Kind, String) {
    describe_with(key, &|document| {
        store
            .documents()
            .cached(document)
            .map(|d| d.body.to_string())
    })
}

/// The shown URL of the archive stored as `file` (`<key>.<ext>`).
fn archive_url(file: &str, documents: &DocumentBody) -> Option<String> {
    let key = file.split('.').next()?;
    let body = documents(&crate::modules::origin_key(key))?;
    let origin: crate::modules::ArchiveOrigin = serde_json::from_str(&body).ok()?;
    let mut url = url::Url::parse(&origin.url).ok()?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(name, _)| name == "archive")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    url.set_query(None);
    if !kept.is_empty() {
        url.query_pairs_mut().extend_pairs(kept);
    }
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(url.into())
}

/// The kind and human name of the artifact at `key`, from the key alone.
pub fn describe(key: &str) -> (Kind, String) {
    let Some((bucket, parts)) = Bucket::split(key) else {
        return (Kind::Other, key.to_owned());
    };
    match (bucket, parts.as_slice()) {
        (Bucket::Providers, [host, namespace, kind, file]) => {
            let name = match ZipName::parse(kind, file) {
                Some(ZipName { version, os, arch }) => {
                    format!("{host}/{namespace}/{kind} {version} {os}_{arch}")
                }
                None => format!("{host}/{namespace}/{kind} {file}"),
            };
            (Kind::Providers, name)
        }
        (Bucket::ProvidersUnpacked, [host, namespace, kind, version, platform]) => (
            Kind::Providers,
            format!("{host}/{namespace}/{kind} {version} {platform}{UNPACKED_SUFFIX}"),
        ),
        (Bucket::ProviderChecksums, [host, namespace, kind, version, file]) => (
            Kind::Providers,
            format!("{host}/{namespace}/{kind} {version} {file}"),
        ),
        (Bucket::ModuleArchives, [file]) => (Kind::Modules, format!("module archive {file}")),
        (Bucket::GitMirrors, repo) if key.ends_with(".git") => {
            (Kind::Git, format!("{} mirror", repo_name(repo)))
        }
        (Bucket::GitArchives, [repo @ .., file]) => {
            let commit = file.split('.').next().unwrap_or(file);
            let short = &commit[..commit.len().min(12)];
            (Kind::Git, format!("{} {short} archive", repo_name(repo)))
        }
        _ => (Kind::Other, key.to_owned()),
    }
}

/// `host/org/repo.git` → `host/org/repo`.
fn repo_name(parts: &[&str]) -> String {
    parts.join("/").trim_end_matches(".git").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_kind() {
        let cases = [
            (
                "providers/registry.terraform.io/hashicorp/aws/terraform-provider-aws_5.89.0_linux_amd64.zip",
                Kind::Providers,
                "registry.terraform.io/hashicorp/aws 5.89.0 linux_amd64",
            ),
            (
                "providers-unpacked/registry.terraform.io/hashicorp/aws/5.89.0/linux_amd64",
                Kind::Providers,
                "registry.terraform.io/hashicorp/aws 5.89.0 linux_amd64 (unpacked)",
            ),
            (
                "provider-checksums/registry.terraform.io/hashicorp/aws/5.89.0/SHA256SUMS.sig",
                Kind::Providers,
                "registry.terraform.io/hashicorp/aws 5.89.0 SHA256SUMS.sig",
            ),
            ("modules/archives/ab12.tar.gz", Kind::Modules, "module archive ab12.tar.gz"),
            ("git/github.com/org/infra.git", Kind::Git, "github.com/org/infra mirror"),
            (
                "git-archives/github.com/org/infra.git/0123456789abcdef0123.tar.gz",
                Kind::Git,
                "github.com/org/infra 0123456789ab archive",
            ),
            ("stray.bin", Kind::Other, "stray.bin"),
        ];
        for (key, kind, name) in cases {
            assert_eq!(describe(key), (kind, name.to_owned()), "{key}");
        }
    }

    #[test]
    fn a_module_archive_is_named_by_its_url_without_secrets() {
        let key = "0123456789abcdef0123456789abcdef";
        let path = format!("modules/archives/{key}.tar.gz");
        let origin_key = crate::modules::origin_key(key);
        let documents = |wanted: &str| {
            (wanted == origin_key).then(|| {
                r#"{"url":"https://jo:pw@example.com/net/aws-1.2.0.tgz?archive=tar.gz&X-Amz-Signature=secret#frag","registry_host":"registry.terraform.io"}"#
                    .to_owned()
            })
        };
        assert_eq!(
            describe_with(&path, &documents),
            (
                Kind::Modules,
                "https://example.com/net/aws-1.2.0.tgz?archive=tar.gz".to_owned()
            )
        );
        let other = "modules/archives/ffffffffffffffffffffffffffffffff.zip";
        assert_eq!(describe_with(other, &documents), describe(other));
        let provider = "providers/h/ns/t/terraform-provider-t_1.0.0_linux_amd64.zip";
        assert_eq!(describe_with(provider, &documents), describe(provider));
    }

    #[test]
    fn a_tree_names_its_package() {
        let (_, tree) =
            describe("providers-unpacked/registry.terraform.io/hashicorp/aws/5.89.0/linux_amd64");
        let (_, zip) = describe(
            "providers/registry.terraform.io/hashicorp/aws/terraform-provider-aws_5.89.0_linux_amd64.zip",
        );
        assert_eq!(unpacked_from(&tree), Some(zip.as_str()));
        assert_eq!(unpacked_from(&zip), None);
    }
}
