//! Which provider request a path names.
//!
//! Every segment is validated before anything else looks at the request, so
//! a name that could not safely become a file path never gets further than
//! a 400.

pub use crate::provider_address::{Package, ProviderAddress};
use crate::request::validate_segments;
pub use crate::request::RouteError;
use crate::store::Segment;

/// The files of a package that tfmirror serves in place of the upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    Zip,
    Checksums,
    Signature,
}

impl Artifact {
    /// The path word in tfmirror's own URLs for this file.
    pub fn path_word(self) -> &'static str {
        match self {
            Artifact::Zip => "package",
            Artifact::Checksums => "shasums",
            Artifact::Signature => "shasums.sig",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRoute {
    Versions(ProviderAddress),
    Download(Package),
    /// A file of the package, with the grant that tfmirror's URLs carry
    /// when the download answer naming them was private.
    Artifact(Package, Artifact, Option<Segment>),
}

impl ProviderRoute {
    /// What `[policy]` judges: the provider, and the version when the
    /// request names one.
    pub fn artifact(&self) -> crate::policy::Artifact {
        match self {
            ProviderRoute::Versions(addr) => crate::policy::Artifact::provider(addr, None),
            ProviderRoute::Download(p) | ProviderRoute::Artifact(p, ..) => {
                crate::policy::Artifact::provider(&p.address, Some(p.version.as_str()))
            }
        }
    }

    /// Parses the decoded path segments after `/v1/providers/`.
    pub fn parse(segments: &[String]) -> Result<ProviderRoute, RouteError> {
        let valid = validate_segments(segments)?;
        let addr = |host: &Segment, namespace: &Segment, kind: &Segment| ProviderAddress {
            host: host.clone(),
            namespace: namespace.clone(),
            kind: kind.clone(),
        };
        let words: Vec<&str> = valid.iter().map(Segment::as_str).collect();
        match (valid.as_slice(), words.as_slice()) {
            ([host, ns, kind, _], [.., "versions"]) => {
                Ok(ProviderRoute::Versions(addr(host, ns, kind)))
            }
            ([host, ns, kind, version, _, os, arch, grant @ ..], [_, _, _, _, word, ..])
                if grant.len() <= 1 =>
            {
                let package = Package {
                    address: addr(host, ns, kind),
                    version: version.clone(),
                    os: os.clone(),
                    arch: arch.clone(),
                };
                let grant = grant.first().cloned();
                let artifact = match *word {
                    "download" if grant.is_none() => return Ok(ProviderRoute::Download(package)),
                    "package" => Artifact::Zip,
                    "shasums" => Artifact::Checksums,
                    "shasums.sig" => Artifact::Signature,
                    _ => return Err(RouteError::NotFound),
                };
                Ok(ProviderRoute::Artifact(package, artifact, grant))
            }
            _ => Err(RouteError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<ProviderRoute, RouteError> {
        ProviderRoute::parse(&crate::request::test_segments(path))
    }

    #[test]
    fn parses_registry_and_artifact_paths() {
        assert!(matches!(
            parse("registry.terraform.io/hashicorp/aws/versions"),
            Ok(ProviderRoute::Versions(_))
        ));
        assert!(matches!(
            parse("registry.terraform.io/hashicorp/aws/5.0.0/download/linux/amd64"),
            Ok(ProviderRoute::Download(_))
        ));
        assert!(matches!(
            parse("registry.terraform.io/hashicorp/aws/5.0.0/shasums.sig/linux/amd64"),
            Ok(ProviderRoute::Artifact(_, Artifact::Signature, None))
        ));
        match parse("registry.terraform.io/hashicorp/aws/5.0.0/package/linux/amd64/0a1b") {
            Ok(ProviderRoute::Artifact(_, Artifact::Zip, Some(grant))) => {
                assert_eq!(grant.as_str(), "0a1b")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse("registry.terraform.io/hashicorp/aws/5.0.0/download/linux/amd64/0a1b"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            parse("registry.terraform.io/hashicorp/aws/x"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn bad_names_are_rejected_before_routing() {
        assert!(matches!(
            parse("registry.terraform.io/../aws/versions"),
            Err(RouteError::BadName(_))
        ));
        assert!(matches!(
            parse("registry.terraform.io/a\0/aws/versions"),
            Err(RouteError::BadName(_))
        ));
    }
}
