//! Provider addresses as a lock file spells them.
//!
//! Terraform accepts only the fully-qualified, normalized form in a lock
//! file (`registry.terraform.io/hashicorp/aws`, never `hashicorp/aws` or
//! `Hashicorp/AWS`), so that each block names its provider unambiguously.

/// `host/namespace/type`, lowercase; a host may carry a `:port`.
pub type ProviderAddress = crate::provider_address::ProviderAddress<String>;

impl ProviderAddress {
    /// Reads a lock file's block label; the error is a message for the user.
    pub fn parse(label: &str) -> Result<ProviderAddress, BadProviderAddress> {
        let invalid = || BadProviderAddress::Invalid(label.to_owned());
        let parts: Vec<&str> = label.split('/').collect();
        let [host, namespace, kind] = parts[..] else {
            return Err(invalid());
        };
        if !is_host(host) || !is_name(namespace) || !is_name(kind) {
            return Err(invalid());
        }
        let address = ProviderAddress {
            host: host.to_lowercase(),
            namespace: namespace.to_lowercase(),
            kind: kind.to_lowercase(),
        };
        if address.host == "terraform.io" && address.namespace == "builtin" {
            return Err(BadProviderAddress::BuiltIn(label.to_owned()));
        }
        let normalized = address.to_string();
        if normalized != label {
            return Err(BadProviderAddress::NotNormalized {
                label: label.to_owned(),
                normalized,
            });
        }
        Ok(address)
    }
}

/// Why a lock file's block label is no provider address it may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadProviderAddress {
    #[error("invalid provider address {0:?}; a lock file spells it \"hostname/namespace/type\"")]
    Invalid(String),
    #[error("{0:?} is built into Terraform and cannot be locked")]
    BuiltIn(String),
    #[error("provider address {label:?} must be written {normalized:?}")]
    NotNormalized { label: String, normalized: String },
}

/// A hostname with an optional port; internationalized names allowed.
fn is_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => host,
    };
    !name.is_empty() && name.split('.').all(is_name)
}

/// A namespace, type or hostname label: letters, digits and single dashes
/// between them (Terraform's `ParseProviderPart`).
fn is_name(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('-')
        && !part.ends_with('-')
        && !part.contains("--")
        && part.chars().all(|c| c == '-' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normalized_addresses() {
        let address = ProviderAddress::parse("registry.terraform.io/hashicorp/aws").unwrap();
        assert_eq!(address.host, "registry.terraform.io");
        assert_eq!(address.namespace, "hashicorp");
        assert_eq!(address.kind, "aws");
        assert_eq!(address.to_string(), "registry.terraform.io/hashicorp/aws");
        assert!(ProviderAddress::parse("localhost:8443/my-org/thing2").is_ok());
    }

    #[test]
    fn refuses_what_terraform_refuses() {
        for label in [
            "hashicorp/aws",
            "a/b/c/d",
            "registry.terraform.io//aws",
            "registry.terraform.io/hashi corp/aws",
            "registry.terraform.io/-x/aws",
            "registry.terraform.io/x--y/aws",
            "host:port/x/y",
        ] {
            assert!(ProviderAddress::parse(label).is_err(), "{label}");
        }
        assert_eq!(
            ProviderAddress::parse("Registry.Terraform.io/HashiCorp/aws")
                .unwrap_err()
                .to_string(),
            r#"provider address "Registry.Terraform.io/HashiCorp/aws" must be written "registry.terraform.io/hashicorp/aws""#
        );
        assert!(ProviderAddress::parse("terraform.io/builtin/terraform").is_err());
    }
}
