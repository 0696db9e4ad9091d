//! A provider's address and its packages: the one model that routes, lock
//! files, `warm`/`lock`, the network mirror and the catalog share.
//!
//! The parts are validated once, where they enter, and how strictly depends
//! on where they come from, so the part type is a parameter:
//!
//! - `Segment` (the default): parts that name files in the cache, read from
//!   a request path or a stored key (`providers::route`,
//!   `providers::network_mirror`).
//! - `String`: a lock file's label, checked by Terraform's rules
//!   (`lockfile::address`); a host may carry a `:port` and names may hold
//!   non-ASCII letters, which never become a path in this process.

use std::fmt;

use crate::store::Segment;

/// The hosts a provider source without one (`hashicorp/aws`) stands for:
/// Terraform reads it as `registry.terraform.io`, OpenTofu as
/// `registry.opentofu.org`, and tfmirror serves both.
pub const SHORT_SOURCE_HOSTS: [&str; 2] = ["registry.terraform.io", "registry.opentofu.org"];

/// `<host>/<namespace>/<type>`, the address of a provider.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderAddress<P = Segment> {
    pub host: P,
    pub namespace: P,
    /// The provider type, e.g. `aws`.
    pub kind: P,
}

impl<P: fmt::Display> fmt::Display for ProviderAddress<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.namespace, self.kind)
    }
}

/// One version of a provider built for one platform. Ordered by address,
/// version, os and arch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package<P = Segment> {
    pub address: ProviderAddress<P>,
    pub version: P,
    pub os: P,
    pub arch: P,
}

impl<P: fmt::Display> fmt::Display for Package<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.address, self.version, self.platform())
    }
}

/// What precedes the type in a zip's file name.
const ZIP_PREFIX: &str = "terraform-provider-";

impl<P: fmt::Display> Package<P> {
    /// `<os>_<arch>`, as registries and lock files name a platform.
    pub fn platform(&self) -> String {
        format!("{}_{}", self.os, self.arch)
    }

    /// `terraform-provider-<type>_<version>_<os>_<arch>.zip`, the name
    /// registries, `terraform providers mirror`, the packed
    /// `filesystem_mirror` layout and the network mirror protocol use.
    pub fn zip_name(&self) -> String {
        format!(
            "{ZIP_PREFIX}{}_{}_{}_{}.zip",
            self.address.kind, self.version, self.os, self.arch
        )
    }

    /// `<host>/<ns>/<type>/<zip name>`, the packed layout of a
    /// `filesystem_mirror` and of the network mirror's URLs.
    pub fn packed_path(&self) -> String {
        format!("{}/{}", self.address, self.zip_name())
    }
}

/// The version, os and arch a zip's file name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipName<'a> {
    pub version: &'a str,
    pub os: &'a str,
    pub arch: &'a str,
}

impl<'a> ZipName<'a> {
    /// Reads `terraform-provider-<kind>_<version>_<os>_<arch>.zip`;
    /// versions, systems and architectures have no `_` of their own, so
    /// any other name is `None`.
    pub fn parse(kind: &str, file: &'a str) -> Option<ZipName<'a>> {
        let rest = file
            .strip_suffix(".zip")?
            .strip_prefix(ZIP_PREFIX)?
            .strip_prefix(kind)?
            .strip_prefix('_')?;
        let mut parts = rest.split('_');
        let (version, os, arch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(ZipName { version, os, arch })
    }
}

impl Package {
    /// The package of `address` a zip's file name names, if it names one
    /// of that provider's with valid segments.
    pub fn from_zip_name(address: &ProviderAddress, file: &str) -> Option<Package> {
        let name = ZipName::parse(address.kind.as_str(), file)?;
        Some(Package {
            address: address.clone(),
            version: Segment::new(name.version).ok()?,
            os: Segment::new(name.os).ok()?,
            arch: Segment::new(name.arch).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> ProviderAddress {
        let s = |v: &str| Segment::new(v).unwrap();
        ProviderAddress {
            host: s("registry.terraform.io"),
            namespace: s("hashicorp"),
            kind: s("aws"),
        }
    }

    #[test]
    fn reads_packed_zip_names() {
        let package =
            Package::from_zip_name(&address(), "terraform-provider-aws_5.1.0_linux_amd64.zip")
                .unwrap();
        assert_eq!(
            package.to_string(),
            "registry.terraform.io/hashicorp/aws 5.1.0 linux_amd64"
        );
        for bad in [
            "terraform-provider-aws_5.1.0_linux.zip",
            "terraform-provider-gcp_5.1.0_linux_amd64.zip",
            "terraform-provider-aws_5.1.0_linux_amd64_x.zip",
            "terraform-provider-aws_5.1.0_linux_amd64.tar",
        ] {
            assert!(Package::from_zip_name(&address(), bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_zip_name_reads_back_as_its_package() {
        let package = Package::from_zip_name(
            &address(),
            "terraform-provider-aws_5.1.0-beta.1+x_darwin_arm64.zip",
        )
        .unwrap();
        assert_eq!(
            package.zip_name(),
            "terraform-provider-aws_5.1.0-beta.1+x_darwin_arm64.zip"
        );
        assert_eq!(
            package.packed_path(),
            "registry.terraform.io/hashicorp/aws/terraform-provider-aws_5.1.0-beta.1+x_darwin_arm64.zip"
        );
    }
}
