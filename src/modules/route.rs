//! Which module registry request a path names.

use std::fmt;

use crate::request::validate_segments;
pub use crate::request::RouteError;
use crate::store::Segment;

/// `<host>/<namespace>/<name>/<system>`, the address of a registry module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleAddr {
    pub host: Segment,
    pub namespace: Segment,
    pub name: Segment,
    pub system: Segment,
}

impl fmt::Display for ModuleAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.host, self.namespace, self.name, self.system
        )
    }
}

impl ModuleAddr {
    /// Reads back what `Display` wrote, with every segment validated again.
    pub fn parse(text: &str) -> Option<ModuleAddr> {
        let mut segments: Vec<String> = text.split('/').map(str::to_owned).collect();
        segments.push("versions".to_owned());
        match ModuleRoute::parse(&segments) {
            Ok(ModuleRoute::Versions(addr)) => Some(addr),
            _ => None,
        }
    }

    /// The path of this module below the registry's `modules.v1` URL,
    /// followed by `rest`: one path segment an item (see
    /// `upstream::registry::api_url`).
    pub fn registry_path(&self, rest: &[&str]) -> Vec<String> {
        [
            self.namespace.as_str(),
            self.name.as_str(),
            self.system.as_str(),
        ]
        .iter()
        .chain(rest)
        .map(|part| (*part).to_owned())
        .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRoute {
    Versions(ModuleAddr),
    Download(ModuleAddr, Segment),
}

impl ModuleRoute {
    /// What `[policy]` judges: the module, and the version when the
    /// request names one.
    pub fn artifact(&self) -> crate::policy::Artifact {
        match self {
            ModuleRoute::Versions(addr) => crate::policy::Artifact::module(addr, None),
            ModuleRoute::Download(addr, version) => {
                crate::policy::Artifact::module(addr, Some(version.as_str()))
            }
        }
    }

    /// Parses the decoded path segments after `/v1/modules/`.
    pub fn parse(segments: &[String]) -> Result<ModuleRoute, RouteError> {
        let valid = validate_segments(segments)?;
        let addr = |parts: &[Segment]| ModuleAddr {
            host: parts[0].clone(),
            namespace: parts[1].clone(),
            name: parts[2].clone(),
            system: parts[3].clone(),
        };
        let words: Vec<&str> = valid.iter().map(Segment::as_str).collect();
        match words.as_slice() {
            [_, _, _, _, "versions"] => Ok(ModuleRoute::Versions(addr(&valid))),
            [_, _, _, _, _, "download"] => {
                Ok(ModuleRoute::Download(addr(&valid), valid[4].clone()))
            }
            _ => Err(RouteError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<ModuleRoute, RouteError> {
        ModuleRoute::parse(&crate::request::test_segments(path))
    }

    #[test]
    fn parses_module_paths() {
        assert!(matches!(
            parse("registry.terraform.io/hashicorp/consul/aws/versions"),
            Ok(ModuleRoute::Versions(_))
        ));
        let Ok(ModuleRoute::Download(addr, version)) =
            parse("registry.terraform.io/hashicorp/consul/aws/0.1.0/download")
        else {
            panic!("not a download route");
        };
        assert_eq!(
            addr.to_string(),
            "registry.terraform.io/hashicorp/consul/aws"
        );
        assert_eq!(version.as_str(), "0.1.0");
        assert_eq!(
            parse("registry.terraform.io/a/b/versions"),
            Err(RouteError::NotFound)
        );
        assert!(matches!(
            parse("registry.terraform.io/a/../c/versions"),
            Err(RouteError::BadName(_))
        ));
    }
}
