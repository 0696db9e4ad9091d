//! What `[policy]` entries are: globs over Terraform-level names, and URL
//! prefixes for archives (git prefixes are `[git] mirror`'s own
//! [`crate::git::MirrorPrefix`], compared by parts the same way).

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use url::Url;

use super::versions::{BadConstraint, Constraint};

/// The host Terraform gives a provider or registry module address that
/// names none (`hashicorp/aws` is `registry.terraform.io/hashicorp/aws`).
pub const DEFAULT_HOST: &str = "registry.terraform.io";

/// Which Terraform-level names a pattern is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `host/namespace/type`.
    Provider,
    /// `host/namespace/name/system`.
    Module,
}

impl Kind {
    /// Parts of a full address.
    fn parts(self) -> usize {
        match self {
            Kind::Provider => 3,
            Kind::Module => 4,
        }
    }

    fn shape(self) -> &'static str {
        match self {
            Kind::Provider => "[host/]namespace/type",
            Kind::Module => "[host/]namespace/name/system",
        }
    }
}

/// A glob over full addresses: `*`, `?`, `[abc]` and `{a,b}` match within
/// one part (never across `/`), case-insensitively, as Terraform compares
/// hosts and provider names. A pattern one part short of a full address
/// names no host and means [`DEFAULT_HOST`], as Terraform reads such an
/// address.
#[derive(Debug, Clone)]
pub struct NamePattern {
    /// The full pattern, host included: what a refusal quotes.
    full: String,
    glob: GlobMatcher,
}

impl NamePattern {
    pub fn parse(kind: Kind, text: &str) -> Result<NamePattern, BadPattern> {
        let bad = |why: String| BadPattern {
            text: text.to_owned(),
            why,
        };
        let parts = text.split('/').count();
        let full = if parts == kind.parts() {
            text.to_owned()
        } else if parts + 1 == kind.parts() {
            format!("{DEFAULT_HOST}/{text}")
        } else {
            return Err(bad(format!("expected {}", kind.shape())));
        };
        if full
            .split('/')
            .any(|part| part.is_empty() || part.contains("**"))
        {
            return Err(bad(format!(
                "expected {} with no empty part and no ** (a * never matches across /)",
                kind.shape()
            )));
        }
        let glob = GlobBuilder::new(&full)
            .literal_separator(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| bad(e.kind().to_string()))?
            .compile_matcher();
        Ok(NamePattern { full, glob })
    }

    /// Whether a full address (`registry.terraform.io/hashicorp/aws`)
    /// matches.
    pub fn matches(&self, address: &str) -> bool {
        self.glob.is_match(address)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// A `deny_providers` / `deny_modules` entry: a name pattern, optionally
/// followed by a version constraint (`registry.terraform.io/hashicorp/aws
/// 4.*`, `hashicorp/aws < 5.0`). Without one, every version is denied.
#[derive(Debug, Clone)]
pub struct DenyRule {
    /// As written, for the refusal to quote.
    text: String,
    name: NamePattern,
    versions: Option<Constraint>,
}

impl DenyRule {
    pub fn parse(kind: Kind, text: &str) -> Result<DenyRule, BadPattern> {
        let trimmed = text.trim();
        let (name, constraint) = match trimmed.split_once(char::is_whitespace) {
            Some((name, constraint)) => (name, Some(constraint)),
            None => (trimmed, None),
        };
        let name = NamePattern::parse(kind, name).map_err(|e| BadPattern {
            text: text.to_owned(),
            why: e.why,
        })?;
        let versions =
            constraint
                .map(Constraint::parse)
                .transpose()
                .map_err(|e: BadConstraint| BadPattern {
                    text: text.to_owned(),
                    why: e.to_string(),
                })?;
        Ok(DenyRule {
            text: trimmed.to_owned(),
            name,
            versions,
        })
    }

    /// Whether the rule denies `version` of `address`; with no version
    /// known (a request that names none), only a rule for every version
    /// does.
    pub fn denies(&self, address: &str, version: Option<&str>) -> bool {
        if !self.name.matches(address) {
            return false;
        }
        match (&self.versions, version) {
            (None, _) => true,
            (Some(constraint), Some(version)) => constraint.matches(version),
            (Some(_), None) => false,
        }
    }
}

impl fmt::Display for DenyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An `archives` entry: an http(s) URL prefix, compared by parts on
/// normalised URLs: scheme and host (case-insensitive), port (a missing
/// one is the scheme's default), then whole path segments, so
/// `https://artifacts.example.com/team/` admits neither
/// `https://artifacts.example.com/team-evil/` nor
/// `https://artifacts.example.com.evil.example/`. A URL's user, password,
/// query and fragment take no part.
#[derive(Debug, Clone)]
pub struct UrlPrefix {
    text: String,
    url: Url,
    path: Vec<String>,
}

impl UrlPrefix {
    pub fn parse(text: &str) -> Result<UrlPrefix, BadPattern> {
        let bad = |why: &str| BadPattern {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(bad(
                "expected an http(s) URL prefix such as \"https://artifacts.example.com/\"",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("a user or password does not belong in a prefix"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment does not belong in a prefix"));
        }
        let path = segments(&url);
        Ok(UrlPrefix {
            text: text.to_owned(),
            url,
            path,
        })
    }

    /// Whether `url` lies under this prefix; a URL that does not parse
    /// lies under none.
    pub fn matches(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else {
            return false;
        };
        url.scheme() == self.url.scheme()
            && url.host_str() == self.url.host_str()
            && url.port_or_known_default() == self.url.port_or_known_default()
            && segments(&url).starts_with(&self.path)
    }
}

impl fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A URL's path segments, a trailing empty one (`/team/`) left out.
fn segments(url: &Url) -> Vec<String> {
    let mut segments: Vec<String> = url
        .path_segments()
        .map(|s| s.map(str::to_owned).collect())
        .unwrap_or_default();
    if segments.last().is_some_and(String::is_empty) {
        segments.pop();
    }
    segments
}

/// A `[policy]` entry that is no pattern: the entry and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {why}")]
pub struct BadPattern {
    pub text: String,
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_match_whole_parts_with_the_default_host() {
        let cases: &[(Kind, &str, &[&str], &[&str])] = &[
            (
                Kind::Provider,
                "registry.terraform.io/hashicorp/*",
                &[
                    "registry.terraform.io/hashicorp/aws",
                    "REGISTRY.terraform.io/HashiCorp/aws",
                ],
                &[
                    "registry.terraform.io/hashicorp-evil/aws",
                    "example.com/hashicorp/aws",
                ],
            ),
            (
                Kind::Provider,
                "hashicorp/aws",
                &["registry.terraform.io/hashicorp/aws"],
                &[
                    "registry.opentofu.org/hashicorp/aws",
                    "registry.terraform.io/hashicorp/awsx",
                ],
            ),
            (
                Kind::Provider,
                "*/*/*",
                &[
                    "registry.terraform.io/hashicorp/aws",
                    "example.com:8443/a/b",
                ],
                &[],
            ),
            (
                Kind::Provider,
                "registry.terraform.io/{acme,hashicorp}/a?s",
                &[
                    "registry.terraform.io/acme/aws",
                    "registry.terraform.io/hashicorp/abs",
                ],
                &["registry.terraform.io/other/aws"],
            ),
            (
                Kind::Module,
                "terraform-aws-modules/*/aws",
                &["registry.terraform.io/terraform-aws-modules/vpc/aws"],
                &[
                    "registry.terraform.io/terraform-aws-modules/vpc/google",
                    "app.terraform.io/terraform-aws-modules/vpc/aws",
                ],
            ),
            (
                Kind::Module,
                "app.terraform.io/example-org/*/*",
                &["app.terraform.io/example-org/net/aws"],
                &["app.terraform.io/example-org-evil/net/aws"],
            ),
        ];
        for (kind, pattern, inside, outside) in cases {
            let parsed = NamePattern::parse(*kind, pattern).unwrap();
            for name in *inside {
                assert!(parsed.matches(name), "{pattern} should match {name}");
            }
            for name in *outside {
                assert!(!parsed.matches(name), "{pattern} should not match {name}");
            }
        }
        let short = NamePattern::parse(Kind::Provider, "hashicorp/*").unwrap();
        assert_eq!(short.to_string(), "registry.terraform.io/hashicorp/*");
    }

    #[test]
    fn a_bad_name_pattern_is_refused_with_why() {
        for bad in [
            "aws",
            "a/b/c/d",
            "registry.terraform.io/**",
            "a//b",
            "a/[b/c",
        ] {
            let err = NamePattern::parse(Kind::Provider, bad).unwrap_err();
            assert_eq!(err.text, bad);
        }
        assert!(NamePattern::parse(Kind::Module, "a/b").is_err());
    }

    #[test]
    fn deny_rules_may_constrain_versions() {
        let rule =
            DenyRule::parse(Kind::Provider, "registry.terraform.io/hashicorp/aws 4.*").unwrap();
        let aws = "registry.terraform.io/hashicorp/aws";
        assert!(rule.denies(aws, Some("4.67.0")));
        assert!(!rule.denies(aws, Some("5.0.0")));
        assert!(!rule.denies(aws, None));
        assert!(!rule.denies("registry.terraform.io/hashicorp/google", Some("4.0.0")));
        let range = DenyRule::parse(Kind::Provider, "hashicorp/aws >= 4.0, < 5.0").unwrap();
        assert!(range.denies(aws, Some("4.1.0")) && !range.denies(aws, Some("5.1.0")));
        let all = DenyRule::parse(Kind::Module, "acme/*/aws").unwrap();
        assert!(all.denies("registry.terraform.io/acme/vpc/aws", None));
        let err = DenyRule::parse(Kind::Provider, "hashicorp/aws ~> banana").unwrap_err();
        assert!(
            err.to_string().contains("\"banana\" is not a version"),
            "{err}"
        );
    }

    #[test]
    fn url_prefixes_match_whole_segments_of_normalised_urls() {
        let prefix = UrlPrefix::parse("https://Artifacts.example.com/team/").unwrap();
        for inside in [
            "https://artifacts.example.com/team/mod.zip",
            "https://artifacts.example.com:443/team/sub/mod.tar.gz?archive=tgz",
            "https://user:secret@artifacts.example.com/team/mod.zip",
        ] {
            assert!(prefix.matches(inside), "{inside}");
        }
        for outside in [
            "https://artifacts.example.com/team-evil/mod.zip",
            "https://artifacts.example.com.evil.example/team/mod.zip",
            "http://artifacts.example.com/team/mod.zip",
            "https://artifacts.example.com:8443/team/mod.zip",
            "https://artifacts.example.com/mod.zip?x=/team/",
            "not a url",
        ] {
            assert!(!prefix.matches(outside), "{outside}");
        }
        let bare = UrlPrefix::parse("https://github.com/example-org").unwrap();
        assert!(bare.matches("https://github.com/example-org/x.zip"));
        assert!(!bare.matches("https://github.com/example-org-evil/x.zip"));
        for bad in ["ftp://x/", "https://u:p@x/", "https://x/?a=b", "x/y"] {
            assert!(UrlPrefix::parse(bad).is_err(), "{bad}");
        }
    }
}
