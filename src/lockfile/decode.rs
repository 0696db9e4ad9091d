//! Checks a lock file as Terraform's `internal/depsfile/locks_file.go` does,
//! so that a file tfmirror accepts (and edits) is one Terraform accepts.
//!
//! Terraform's schema: top-level `provider "<address>"` blocks, plus
//! `module` blocks, which it only warns about (a placeholder for future
//! module locks) and which are skipped here. In a provider block: `version`
//! (required), `constraints`, and `hashes`, a non-empty list of strings
//! that each start with a scheme such as `h1:`. Nothing else.

use std::ops::Range;
use std::path::Path;

use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Block, Structure};
use hcl_edit::Span;

use super::{HashesAt, LockFileError, LockedProvider, ProviderAddress};

pub(super) fn decode(path: &Path, text: &str) -> Result<Vec<LockedProvider>, LockFileError> {
    let decoder = Decoder { path, text };
    let body = hcl_edit::parser::parse_body(text).map_err(|e| LockFileError::Invalid {
        path: path.to_owned(),
        line: e.location().line(),
        message: format!(
            "not valid HCL: {} (column {})",
            e.message(),
            e.location().column()
        ),
    })?;
    let mut providers: Vec<LockedProvider> = Vec::new();
    for structure in body.iter() {
        let block = match structure {
            Structure::Block(block) => block,
            Structure::Attribute(attribute) => {
                return Err(decoder.error(
                    attribute.span(),
                    format!(
                        "unexpected argument {:?}; a lock file has only provider blocks",
                        attribute.key.as_str()
                    ),
                ))
            }
        };
        match block.ident.as_str() {
            "provider" => {
                let provider = decoder.provider(block)?;
                if let Some(first) = providers.iter().find(|p| p.address == provider.address) {
                    return Err(decoder.error(
                        block.span(),
                        format!(
                            "a second provider block for {}; the first is on line {}",
                            provider.address, first.line
                        ),
                    ));
                }
                providers.push(provider);
            }
            "module" if block.labels.len() == 1 => {}
            "module" => {
                return Err(decoder.error(block.span(), "a module block has one label".into()))
            }
            other => {
                return Err(decoder.error(
                    block.span(),
                    format!("unknown block {other:?}; a lock file has only provider blocks"),
                ))
            }
        }
    }
    Ok(providers)
}

struct Decoder<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Decoder<'_> {
    fn error(&self, span: Option<Range<usize>>, message: String) -> LockFileError {
        LockFileError::Invalid {
            path: self.path.to_owned(),
            line: span.map_or(1, |span| line_of(self.text, span.start)),
            message,
        }
    }

    fn provider(&self, block: &Block) -> Result<LockedProvider, LockFileError> {
        let [label] = &block.labels[..] else {
            return Err(self.error(
                block.span(),
                "a provider block has one label, the provider address".into(),
            ));
        };
        let address = ProviderAddress::parse(label.as_str())
            .map_err(|e| self.error(label.span(), e.to_string()))?;
        let mut version = None;
        let mut constraints = None;
        let mut hashes = None;
        let mut arguments = Vec::new();
        for structure in block.body.iter() {
            let attribute = match structure {
                Structure::Attribute(attribute) => attribute,
                Structure::Block(inner) => {
                    return Err(self.error(
                        inner.span(),
                        format!(
                            "unexpected block {:?} in the provider block for {address}",
                            inner.ident.as_str()
                        ),
                    ))
                }
            };
            arguments.push(attribute.span().unwrap_or_default());
            match attribute.key.as_str() {
                "version" => version = Some(self.version(attribute)?),
                "constraints" => constraints = Some(self.string(attribute)?),
                "hashes" => hashes = Some(self.hashes(attribute)?),
                other => {
                    return Err(self.error(
                        attribute.span(),
                        format!(
                            "unexpected argument {other:?} in the provider block for {address}; \
                             expected version, constraints or hashes"
                        ),
                    ))
                }
            }
        }
        let Some(version) = version else {
            return Err(self.error(
                block.span(),
                format!("the provider block for {address} has no version"),
            ));
        };
        let (hashes, hashes_at) = match hashes {
            Some((hashes, spans)) => (hashes, HashesAt::List(spans)),
            None => (Vec::new(), self.missing_hashes(block, arguments)),
        };
        let line = block
            .span()
            .map_or(1, |span| line_of(self.text, span.start));
        Ok(LockedProvider {
            address,
            version,
            constraints,
            hashes,
            line,
            hashes_at,
        })
    }

    /// Where a `hashes` argument would go. The label before `{` is a
    /// checked provider address, so the first `{` is the block's.
    fn missing_hashes(&self, block: &Block, arguments: Vec<Range<usize>>) -> HashesAt {
        let span = block.span().unwrap_or_default();
        let text = &self.text[span.clone()];
        HashesAt::Missing {
            open: span.start + text.find('{').unwrap_or_default(),
            close: span.start + text.rfind('}').unwrap_or_default(),
            arguments,
        }
    }

    /// An exact version, as Terraform requires; it also becomes part of
    /// package file names and URLs, so nothing else may pass.
    fn version(&self, attribute: &Attribute) -> Result<String, LockFileError> {
        let version = self.string(attribute)?;
        let exact = version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
        if !exact {
            return Err(self.error(
                attribute.value.span(),
                format!("version {version:?} is not an exact version such as \"1.2.0\""),
            ));
        }
        Ok(version)
    }

    fn string(&self, attribute: &Attribute) -> Result<String, LockFileError> {
        match &attribute.value {
            Expression::String(value) => Ok(value.as_str().to_owned()),
            _ => Err(self.error(
                attribute.value.span(),
                format!("{} must be a quoted string", attribute.key.as_str()),
            )),
        }
    }

    fn hashes(
        &self,
        attribute: &Attribute,
    ) -> Result<(Vec<String>, Vec<Range<usize>>), LockFileError> {
        let Expression::Array(list) = &attribute.value else {
            return Err(self.error(
                attribute.value.span(),
                "hashes must be a list of strings".into(),
            ));
        };
        if list.is_empty() {
            // Terraform's rule: omit the argument rather than leave it empty.
            return Err(self.error(
                attribute.value.span(),
                "hashes is an empty list; omit it or list at least one hash".into(),
            ));
        }
        let mut hashes = Vec::new();
        let mut spans = Vec::new();
        for item in list.iter() {
            let Expression::String(hash) = item else {
                return Err(self.error(item.span(), "hashes must be a list of strings".into()));
            };
            if hash.find(':').is_none_or(|colon| colon == 0) {
                return Err(self.error(
                    item.span(),
                    format!(
                        "{:?} is not a provider hash; a hash starts with a scheme such as \"h1:\"",
                        hash.as_str()
                    ),
                ));
            }
            hashes.push(hash.as_str().to_owned());
            spans.push(item.span().unwrap_or_default());
        }
        Ok((hashes, spans))
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::super::LockFile;
    use super::*;

    const HEADER: &str = "# This file is maintained automatically by \"terraform init\".\n\
                          # Manual edits may be lost in future updates.\n\n";

    fn error(text: &str) -> String {
        let text = format!("{HEADER}{text}");
        LockFile::parse(Path::new(".terraform.lock.hcl"), &text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_what_terraform_writes() {
        let text = format!(
            "{HEADER}provider \"registry.terraform.io/hashicorp/aws\" {{\n  \
             version     = \"5.89.0\"\n  constraints = \">= 5.0.0\"\n  hashes = [\n    \
             \"h1:abc=\",\n    \"zh:0123\",\n  ]\n}}\n\n\
             module \"future\" {{\n}}\n\n\
             provider \"example.com/me/thing\" {{\n  version = \"0.1.0\"\n}}\n"
        );
        let lock = LockFile::parse(Path::new("x.hcl"), &text).unwrap();
        let [aws, thing] = &lock.providers[..] else {
            panic!("{:?}", lock.providers);
        };
        assert_eq!(
            aws.address.to_string(),
            "registry.terraform.io/hashicorp/aws"
        );
        assert_eq!(aws.version, "5.89.0");
        assert_eq!(aws.constraints.as_deref(), Some(">= 5.0.0"));
        assert_eq!(aws.hashes, ["h1:abc=", "zh:0123"]);
        assert_eq!(aws.line, 4);
        assert_eq!(thing.address.kind, "thing");
        assert_eq!(thing.constraints, None);
        assert!(thing.hashes.is_empty());
        assert_eq!(thing.line, 16);
    }

    #[test]
    fn malformed_lock_files() {
        let cases = [
            (
                "not HCL",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
                 hashes = [\n    \"h1:a=\"\n    \"zh:b\",\n  ]\n}\n",
            ),
            (
                "unknown block",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n}\n\n\
                 foo \"bar\" {\n}\n",
            ),
            ("top-level argument", "version = \"1.0.0\"\n"),
            (
                "no version",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  constraints = \"~> 1.0\"\n}\n",
            ),
            (
                "short address",
                "provider \"hashicorp/aws\" {\n  version = \"1.0.0\"\n}\n",
            ),
            (
                "not normalized",
                "provider \"registry.terraform.io/HashiCorp/aws\" {\n  version = \"1.0.0\"\n}\n",
            ),
            (
                "unknown argument",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
                 checksum = \"abc\"\n}\n",
            ),
            (
                "empty hashes",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
                 hashes = []\n}\n",
            ),
            (
                "hash without scheme",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
                 hashes = [\n    \"h1:a=\",\n    \"0123\",\n  ]\n}\n",
            ),
            (
                "version not a string",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = 1\n}\n",
            ),
            (
                "version not exact",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"../1.0\"\n}\n",
            ),
            (
                "duplicate provider",
                "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n}\n\n\
                 provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"2.0.0\"\n}\n",
            ),
        ];
        let mut report = String::new();
        for (name, text) in cases {
            writeln!(report, "{name}:\n  {}", error(text)).unwrap();
        }
        insta::assert_snapshot!("errors", report);
    }
}
