//! Platforms and packages, named as registries and lock files name them.

use std::fmt;
use std::str::FromStr;

use crate::lockfile::LockedProvider;
use crate::provider_address::Package;

/// An `OS_ARCH` pair in Go's names, as registries and lock files use them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.os, self.arch)
    }
}

/// A `--platform` value that is not `OS_ARCH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a platform; write OS_ARCH as Terraform does, e.g. linux_amd64")]
pub struct BadPlatform(String);

impl FromStr for Platform {
    type Err = BadPlatform;

    /// Both halves become parts of a file name, so only lowercase letters
    /// and digits are allowed, as in every platform Terraform knows.
    fn from_str(s: &str) -> Result<Platform, BadPlatform> {
        let word = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match s.split_once('_') {
            Some((os, arch)) if word(os) && word(arch) => Ok(Platform {
                os: os.to_owned(),
                arch: arch.to_owned(),
            }),
            _ => Err(BadPlatform(s.to_owned())),
        }
    }
}

impl Platform {
    /// This machine's platform in Go's names, the one `terraform init`
    /// here installs.
    pub fn host() -> Platform {
        Platform::from_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    fn from_rust(os: &str, arch: &str) -> Platform {
        let os = match os {
            "macos" => "darwin",
            other => other,
        };
        let arch = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: os.to_owned(),
            arch: arch.to_owned(),
        }
    }

    /// The platforms asked for, else this machine's.
    pub fn or_host(requested: Vec<Platform>) -> Vec<Platform> {
        if requested.is_empty() {
            return vec![Platform::host()];
        }
        let mut platforms = requested;
        platforms.sort();
        platforms.dedup();
        platforms
    }
}

/// One provider package: a locked version of a provider for one platform,
/// named as the lock file names it.
pub type PackageId = Package<String>;

impl PackageId {
    /// The packages of `provider` for each of `platforms`.
    pub fn of(provider: &LockedProvider, platforms: &[Platform]) -> Vec<PackageId> {
        platforms
            .iter()
            .map(|platform| PackageId {
                address: provider.address.clone(),
                version: provider.version.clone(),
                os: platform.os.clone(),
                arch: platform.arch.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_rust_platforms_to_go_names() {
        for (os, arch, go) in [
            ("linux", "x86_64", "linux_amd64"),
            ("macos", "aarch64", "darwin_arm64"),
            ("windows", "x86", "windows_386"),
            ("freebsd", "arm", "freebsd_arm"),
        ] {
            assert_eq!(Platform::from_rust(os, arch).to_string(), go);
        }
    }

    #[test]
    fn reads_platform_arguments() {
        let platform: Platform = "darwin_arm64".parse().unwrap();
        assert_eq!((&*platform.os, &*platform.arch), ("darwin", "arm64"));
        for bad in [
            "linux",
            "linux_",
            "_amd64",
            "linux_amd64_v2",
            "Linux_amd64",
            "../x_y",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        assert_eq!(
            "linux".parse::<Platform>().unwrap_err().to_string(),
            r#""linux" is not a platform; write OS_ARCH as Terraform does, e.g. linux_amd64"#
        );
    }
}
