//! Which providers a Terraform configuration names, read from its `.tf`
//! files: `required_providers` sources, plus the providers Terraform
//! implies from resource types and `provider` blocks without one.

use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Block, Body, Structure};

use crate::lockfile::ProviderAddress;
use crate::provider_address::SHORT_SOURCE_HOSTS;

/// A provider a configuration names, by its source address. A short
/// source (`hashicorp/aws`) has no host: Terraform reads it as
/// `registry.terraform.io`, OpenTofu as `registry.opentofu.org`, and
/// tfmirror cannot tell which of them will run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Requirement {
    pub host: Option<String>,
    pub namespace: String,
    pub kind: String,
}

impl Requirement {
    /// `[host/]namespace/type`, or `None` for what is not a provider source.
    fn parse(source: &str) -> Option<Requirement> {
        let parts: Vec<String> = source.split('/').map(str::to_lowercase).collect();
        let (host, namespace, kind) = match &parts[..] {
            [namespace, kind] => (None, namespace, kind),
            [host, namespace, kind] => (Some(host.clone()), namespace, kind),
            _ => return None,
        };
        Some(Requirement {
            host,
            namespace: namespace.clone(),
            kind: kind.clone(),
        })
    }

    /// The provider Terraform implies for a local name nobody declared.
    fn implied(local_name: &str) -> Requirement {
        Requirement {
            host: None,
            namespace: "hashicorp".into(),
            kind: local_name.to_lowercase(),
        }
    }

    pub fn matches(&self, address: &ProviderAddress) -> bool {
        let host_matches = match &self.host {
            Some(host) => *host == address.host,
            None => SHORT_SOURCE_HOSTS.contains(&address.host.as_str()),
        };
        host_matches && self.namespace == address.namespace && self.kind == address.kind
    }
}

/// What one file declares and uses; a unit's files are read together
/// ([`Usage::requirements`]) because a local name declared in one file is
/// used in another.
#[derive(Debug, Default)]
pub struct Usage {
    /// `required_providers` entries: local name and source.
    declared: Vec<(String, Requirement)>,
    /// Local names of resources, data sources and `provider` blocks.
    used: Vec<String>,
    /// The `source` of each `module` call; `None` where it is not a string.
    pub module_sources: Vec<Option<String>>,
}

impl Usage {
    /// Reads one file's text; `Err` with the parser's error when it is
    /// not HCL that tfmirror can read.
    pub fn parse(text: &str) -> Result<Usage, hcl_edit::parser::Error> {
        let body = hcl_edit::parser::parse_body(text)?;
        let mut usage = Usage::default();
        usage.read(&body);
        Ok(usage)
    }

    pub fn extend(&mut self, other: Usage) {
        self.declared.extend(other.declared);
        self.used.extend(other.used);
        self.module_sources.extend(other.module_sources);
    }

    /// Every provider named: those declared, and those implied for local
    /// names used without a declaration (but `terraform`, which is built
    /// in).
    pub fn requirements(&self) -> Vec<Requirement> {
        let mut all: Vec<Requirement> = self.declared.iter().map(|(_, r)| r.clone()).collect();
        for name in &self.used {
            let declared = self.declared.iter().any(|(local, _)| local == name);
            if !declared && name != "terraform" {
                all.push(Requirement::implied(name));
            }
        }
        all.sort();
        all.dedup();
        all
    }

    fn read(&mut self, body: &Body) {
        for block in body.iter().filter_map(Structure::as_block) {
            let label = block.labels.first().map(|label| label.as_str());
            match (block.ident.as_str(), label) {
                ("terraform", _) => {
                    let required = block.body.iter().filter_map(Structure::as_block);
                    for required in required.filter(|b| b.ident.as_str() == "required_providers") {
                        self.read_required_providers(required);
                    }
                }
                ("resource" | "data" | "ephemeral", Some(kind)) => {
                    let explicit = attribute(block, "provider").and_then(root_name);
                    let local = explicit.or_else(|| kind.split('_').next().map(str::to_owned));
                    self.used.extend(local);
                }
                ("provider", Some(name)) => self.used.push(name.to_owned()),
                ("module", _) => {
                    let source = attribute(block, "source").and_then(|expr| match expr {
                        Expression::String(s) => Some(s.as_str().to_owned()),
                        _ => None,
                    });
                    self.module_sources.push(source);
                }
                _ => {}
            }
        }
    }

    /// `name = { source = "ns/type", ... }`, or the old `name = "constraint"`
    /// which implies `hashicorp/name`.
    fn read_required_providers(&mut self, block: &Block) {
        for attr in block.body.iter().filter_map(Structure::as_attribute) {
            let local = attr.key.as_str().to_owned();
            let source = match &attr.value {
                Expression::Object(object) => object.iter().find_map(|(key, value)| {
                    let is_source = match key {
                        ObjectKey::Ident(ident) => ident.as_str() == "source",
                        ObjectKey::Expression(Expression::String(s)) => s.as_str() == "source",
                        _ => false,
                    };
                    match value.expr() {
                        Expression::String(s) if is_source => Some(s.as_str().to_owned()),
                        _ => None,
                    }
                }),
                _ => None,
            };
            let requirement = source
                .as_deref()
                .and_then(Requirement::parse)
                .unwrap_or_else(|| Requirement::implied(&local));
            self.declared.push((local, requirement));
        }
    }
}

fn attribute<'a>(block: &'a Block, key: &str) -> Option<&'a Expression> {
    block
        .body
        .iter()
        .filter_map(Structure::as_attribute)
        .find(|attr| attr.key.as_str() == key)
        .map(|attr| &attr.value)
}

/// `aws` of `aws.west`.
fn root_name(expr: &Expression) -> Option<String> {
    match expr {
        Expression::Variable(name) => Some(name.as_str().to_owned()),
        Expression::Traversal(traversal) => root_name(&traversal.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> ProviderAddress {
        ProviderAddress::parse(text).unwrap()
    }

    #[test]
    fn reads_declared_and_implied_providers() {
        let main = r#"
terraform {
  required_providers {
    aws    = { source = "hashicorp/aws", version = "~> 5.0" }
    thing  = { source = "example.com/Acme/Thing" }
    random = ">= 3.0"
  }
}
provider "google" {}
resource "aws_instance" "x" {}
data "null_data_source" "y" {}
resource "thing_widget" "z" { provider = thing.west }
data "terraform_remote_state" "s" {}
module "local" { source = "../modules/vpc" }
module "remote" { source = "terraform-aws-modules/vpc/aws" }
"#;
        let usage = Usage::parse(main).unwrap();
        let names: Vec<String> = usage
            .requirements()
            .iter()
            .map(|r| format!("{:?}/{}/{}", r.host, r.namespace, r.kind))
            .collect();
        assert_eq!(
            names,
            [
                "None/hashicorp/aws",
                "None/hashicorp/google",
                "None/hashicorp/null",
                "None/hashicorp/random",
                "Some(\"example.com\")/acme/thing",
            ]
        );
        assert_eq!(
            usage.module_sources,
            [
                Some("../modules/vpc".to_owned()),
                Some("terraform-aws-modules/vpc/aws".to_owned())
            ]
        );
    }

    #[test]
    fn a_short_source_stands_for_either_default_registry() {
        let aws = Requirement::parse("hashicorp/aws").unwrap();
        assert!(aws.matches(&address("registry.terraform.io/hashicorp/aws")));
        assert!(aws.matches(&address("registry.opentofu.org/hashicorp/aws")));
        assert!(!aws.matches(&address("example.com/hashicorp/aws")));
        let full = Requirement::parse("example.com/acme/thing").unwrap();
        assert!(full.matches(&address("example.com/acme/thing")));
        assert!(!full.matches(&address("registry.terraform.io/acme/thing")));
    }

    #[test]
    fn a_file_it_cannot_read_is_an_error() {
        assert!(Usage::parse("resource \"a\" {").is_err());
    }
}
