//! `[policy]`: an allow-list of what the server may fetch and serve.
//!
//! ```toml
//! [policy]
//! providers = ["registry.terraform.io/hashicorp/*"]
//! modules   = ["terraform-aws-modules/*/*"]
//! git       = ["https://github.com/example-org/"]
//! archives  = ["https://artifacts.example.com/"]
//! deny_providers = ["registry.terraform.io/hashicorp/aws 4.*"]
//! deny_modules   = []
//! ```
//!
//! No `[policy]` allows everything. Within it, a list that is left out
//! allows everything of its kind and an empty list allows nothing, so a
//! team can restrict providers alone. `deny_*` entries win over the
//! allow-lists. The judgement is pure ([`Policy::judge`]); the server
//! keeps the policy in effect in one [`LivePolicy`], re-read when the
//! config file changes (only `[policy]` is live: every other setting is
//! read at start), enforces it through [`check`], the one place a refusal
//! is logged and answered, and `tfmirror policy check` reports it for a
//! directory.

pub mod check;
pub mod live;
pub mod patterns;
pub mod versions;

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::git::{MirrorPrefix, RepoId};
pub use live::LivePolicy;
use patterns::{BadPattern, DenyRule, Kind, NamePattern, UrlPrefix};

/// The `[policy]` section as written; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    providers: Option<Vec<String>>,
    modules: Option<Vec<String>>,
    git: Option<Vec<String>>,
    archives: Option<Vec<String>>,
    #[serde(default)]
    deny_providers: Vec<String>,
    #[serde(default)]
    deny_modules: Vec<String>,
}

/// The parsed `[policy]`. `None` in an allow-list: that kind is not
/// restricted.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    providers: Option<Vec<NamePattern>>,
    modules: Option<Vec<NamePattern>>,
    git: Option<Vec<MirrorPrefix>>,
    archives: Option<Vec<UrlPrefix>>,
    deny_providers: Vec<DenyRule>,
    deny_modules: Vec<DenyRule>,
    /// The config file it was read from, for refusals to name.
    pub file: Option<PathBuf>,
}

/// An entry of `[policy]` that is not a pattern: the key and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[policy] {key}: {pattern}")]
pub struct BadPolicy {
    pub key: &'static str,
    #[source]
    pub pattern: BadPattern,
}

impl PolicySection {
    pub fn parse(self) -> Result<Policy, BadPolicy> {
        fn each<T>(
            key: &'static str,
            texts: &[String],
            parse: impl Fn(&str) -> Result<T, BadPattern>,
        ) -> Result<Vec<T>, BadPolicy> {
            texts
                .iter()
                .map(|text| parse(text).map_err(|pattern| BadPolicy { key, pattern }))
                .collect()
        }
        let names = |key, kind, list: &Option<Vec<String>>| {
            list.as_deref()
                .map(|texts| each(key, texts, |t| NamePattern::parse(kind, t)))
                .transpose()
        };
        let git_prefix = |text: &str| {
            text.parse::<MirrorPrefix>().map_err(|e| BadPattern {
                text: text.to_owned(),
                why: e.to_string(),
            })
        };
        Ok(Policy {
            providers: names("providers", Kind::Provider, &self.providers)?,
            modules: names("modules", Kind::Module, &self.modules)?,
            git: self
                .git
                .as_deref()
                .map(|texts| each("git", texts, git_prefix))
                .transpose()?,
            archives: self
                .archives
                .as_deref()
                .map(|texts| each("archives", texts, UrlPrefix::parse))
                .transpose()?,
            deny_providers: each("deny_providers", &self.deny_providers, |t| {
                DenyRule::parse(Kind::Provider, t)
            })?,
            deny_modules: each("deny_modules", &self.deny_modules, |t| {
                DenyRule::parse(Kind::Module, t)
            })?,
            file: None,
        })
    }
}

/// What a request would have the server fetch or serve, named as
/// Terraform names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Artifact {
    /// `host/namespace/type`, and the version when the request names one.
    Provider {
        address: String,
        version: Option<String>,
    },
    /// `host/namespace/name/system`, and the version when named.
    Module {
        address: String,
        version: Option<String>,
    },
    /// A git repository's clone URL.
    Git(String),
    /// An HTTP module archive's URL.
    Archive(String),
}

impl Artifact {
    pub fn provider(address: impl fmt::Display, version: Option<&str>) -> Artifact {
        Artifact::Provider {
            address: address.to_string(),
            version: version.map(str::to_owned),
        }
    }

    pub fn module(address: impl fmt::Display, version: Option<&str>) -> Artifact {
        Artifact::Module {
            address: address.to_string(),
            version: version.map(str::to_owned),
        }
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Artifact::Provider { address, version } | Artifact::Module { address, version } => {
                f.write_str(address)?;
                match version {
                    Some(version) => write!(f, " {version}"),
                    None => Ok(()),
                }
            }
            Artifact::Git(url) => write!(f, "git repository {}", shown(url)),
            Artifact::Archive(url) => write!(f, "module archive {}", shown(url)),
        }
    }
}

/// A URL as a refusal may show it, in logs and answers: without a
/// password, an http(s) user (a token, often) or a query (a presigned
/// URL's signature). An ssh user (`git@`) names no secret and stays; so
/// does what does not parse as a URL (scp-like `git@host:path`).
pub(super) fn shown(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return text.to_owned();
    };
    if matches!(url.scheme(), "http" | "https") {
        let _ = url.set_username("");
    }
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// Which rule refused an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Outside an allow-list: its key.
    NotAllowed(&'static str),
    /// Matched by a deny entry: its key and the entry.
    Denied(&'static str, String),
}

/// An artifact the policy refuses, and why: the message a user sees in
/// Terraform's output, the server's log and `policy check`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{artifact} is {rule}{}", file_text(file))]
pub struct Refusal {
    pub artifact: Artifact,
    pub rule: Rule,
    pub file: Option<PathBuf>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::NotAllowed(key) => write!(f, "not allowed by [policy] {key}"),
            Rule::Denied(key, entry) => write!(f, "denied by [policy] {key} {entry:?}"),
        }
    }
}

/// ` in <file>`, when the policy was read from one.
pub fn file_text(file: &Option<PathBuf>) -> String {
    match file {
        Some(file) => format!(" in {}", file.display()),
        None => String::new(),
    }
}

impl Policy {
    /// Whether the policy lets `artifact` through; pure, no logging.
    pub fn judge(&self, artifact: &Artifact) -> Result<(), Refusal> {
        let rule = match artifact {
            Artifact::Provider { address, version } => names_rule(
                ("providers", &self.providers),
                ("deny_providers", &self.deny_providers),
                address,
                version.as_deref(),
            ),
            Artifact::Module { address, version } => names_rule(
                ("modules", &self.modules),
                ("deny_modules", &self.deny_modules),
                address,
                version.as_deref(),
            ),
            Artifact::Git(url) => self.git.as_ref().and_then(|prefixes| {
                let allowed = RepoId::from_url(url)
                    .is_some_and(|repo| prefixes.iter().any(|p| p.matches(&repo)));
                (!allowed).then_some(Rule::NotAllowed("git"))
            }),
            Artifact::Archive(url) => self.archives.as_ref().and_then(|prefixes| {
                let allowed = prefixes.iter().any(|p| p.matches(url));
                (!allowed).then_some(Rule::NotAllowed("archives"))
            }),
        };
        match rule {
            None => Ok(()),
            Some(rule) => Err(Refusal {
                artifact: artifact.clone(),
                rule,
                file: self.file.clone(),
            }),
        }
    }

    /// The deny entry that covers `version` of `address`, with its key:
    /// such a version is left out of version lists. (Whether the provider
    /// or module is allowed at all is [`Policy::judge`]'s.)
    pub fn denied_version(&self, kind: Kind, address: &str, version: &str) -> Option<Rule> {
        let (key, rules) = match kind {
            Kind::Provider => ("deny_providers", &self.deny_providers),
            Kind::Module => ("deny_modules", &self.deny_modules),
        };
        let rule = rules.iter().find(|r| r.denies(address, Some(version)))?;
        Some(Rule::Denied(key, rule.to_string()))
    }

    /// What the policy restricts, in a few words, for the log line that
    /// says a new policy is in effect: each allow-list's length (or `any`)
    /// and the number of deny entries.
    pub fn summary(&self) -> String {
        fn rules(count: usize) -> String {
            match count {
                1 => "1 rule".to_owned(),
                n => format!("{n} rules"),
            }
        }
        let allow = |key: &str, list: Option<usize>| match list {
            Some(count) => format!("{key} {}", rules(count)),
            None => format!("{key} any"),
        };
        [
            allow("providers", self.providers.as_ref().map(Vec::len)),
            allow("modules", self.modules.as_ref().map(Vec::len)),
            allow("git", self.git.as_ref().map(Vec::len)),
            allow("archives", self.archives.as_ref().map(Vec::len)),
            format!(
                "deny {}",
                rules(self.deny_providers.len() + self.deny_modules.len())
            ),
        ]
        .join(", ")
    }
}

/// The rule that refuses a provider or module, if any: a deny entry first
/// (it names the more specific reason), then the allow-list.
fn names_rule(
    (allow_key, allow): (&'static str, &Option<Vec<NamePattern>>),
    (deny_key, deny): (&'static str, &[DenyRule]),
    address: &str,
    version: Option<&str>,
) -> Option<Rule> {
    if let Some(rule) = deny.iter().find(|r| r.denies(address, version)) {
        return Some(Rule::Denied(deny_key, rule.to_string()));
    }
    let allowed = allow
        .as_ref()
        .is_none_or(|patterns| patterns.iter().any(|p| p.matches(address)));
    (!allowed).then_some(Rule::NotAllowed(allow_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml: &str) -> Policy {
        let section: PolicySection = toml::from_str(toml).unwrap();
        let mut policy = section.parse().unwrap();
        policy.file = Some("/etc/tfmirror/config.toml".into());
        policy
    }

    fn verdict(policy: &Policy, artifact: Artifact) -> String {
        match policy.judge(&artifact) {
            Ok(()) => format!("{artifact}: allowed"),
            Err(refusal) => refusal.to_string(),
        }
    }

    #[test]
    fn each_kind_is_judged_by_its_own_keys() {
        let policy = policy(
            r#"
            providers = ["registry.terraform.io/hashicorp/*"]
            modules = ["terraform-aws-modules/*/aws"]
            git = ["https://github.com/example-org/"]
            archives = ["https://artifacts.example.com/"]
            deny_providers = ["registry.terraform.io/hashicorp/aws 4.*"]
            deny_modules = ["terraform-aws-modules/iam/aws"]
            "#,
        );
        let aws = "registry.terraform.io/hashicorp/aws";
        let vpc = "registry.terraform.io/terraform-aws-modules/vpc/aws";
        let cases = [
            (Artifact::provider(aws, Some("5.0.0")), "registry.terraform.io/hashicorp/aws 5.0.0: allowed"),
            (Artifact::provider(aws, None), "registry.terraform.io/hashicorp/aws: allowed"),
            (
                Artifact::provider(aws, Some("4.67.0")),
                "registry.terraform.io/hashicorp/aws 4.67.0 is denied by [policy] deny_providers \
                 \"registry.terraform.io/hashicorp/aws 4.*\" in /etc/tfmirror/config.toml",
            ),
            (
                Artifact::provider("registry.terraform.io/acme/widget", None),
                "registry.terraform.io/acme/widget is not allowed by [policy] providers in \
                 /etc/tfmirror/config.toml",
            ),
            (Artifact::module(vpc, Some("5.1.0")), "registry.terraform.io/terraform-aws-modules/vpc/aws 5.1.0: allowed"),
            (
                Artifact::module("registry.terraform.io/terraform-aws-modules/iam/aws", Some("1.0.0")),
                "registry.terraform.io/terraform-aws-modules/iam/aws 1.0.0 is denied by [policy] \
                 deny_modules \"terraform-aws-modules/iam/aws\" in /etc/tfmirror/config.toml",
            ),
            (
                Artifact::module("registry.terraform.io/acme/vpc/aws", None),
                "registry.terraform.io/acme/vpc/aws is not allowed by [policy] modules in \
                 /etc/tfmirror/config.toml",
            ),
            (
                Artifact::Git("https://github.com/example-org/infra.git".into()),
                "git repository https://github.com/example-org/infra.git: allowed",
            ),
            (
                Artifact::Git("https://github.com/example-org-evil/infra.git".into()),
                "git repository https://github.com/example-org-evil/infra.git is not allowed by \
                 [policy] git in /etc/tfmirror/config.toml",
            ),
            (
                Artifact::Git("not a url".into()),
                "git repository not a url is not allowed by [policy] git in /etc/tfmirror/config.toml",
            ),
            (
                Artifact::Archive("https://artifacts.example.com/m.zip?sig=x".into()),
                "module archive https://artifacts.example.com/m.zip: allowed",
            ),
            (
                Artifact::Git("https://user:token@github.com/example-org-evil/x.git".into()),
                "git repository https://github.com/example-org-evil/x.git is not allowed by \
                 [policy] git in /etc/tfmirror/config.toml",
            ),
            (
                Artifact::Git("ssh://git@github.com/example-org-evil/x.git".into()),
                "git repository ssh://git@github.com/example-org-evil/x.git is not allowed by \
                 [policy] git in /etc/tfmirror/config.toml",
            ),
            (
                Artifact::Archive("https://elsewhere.example.com/m.zip".into()),
                "module archive https://elsewhere.example.com/m.zip is not allowed by [policy] \
                 archives in /etc/tfmirror/config.toml",
            ),
        ];
        for (artifact, expected) in cases {
            assert_eq!(verdict(&policy, artifact), expected);
        }
        assert_eq!(
            policy.denied_version(Kind::Provider, aws, "4.1.0"),
            Some(Rule::Denied(
                "deny_providers",
                "registry.terraform.io/hashicorp/aws 4.*".into()
            ))
        );
        assert_eq!(policy.denied_version(Kind::Provider, aws, "5.1.0"), None);
    }

    #[test]
    fn a_list_left_out_allows_its_kind_and_an_empty_one_allows_nothing() {
        let open = policy(r#"providers = ["hashicorp/*"]"#);
        assert!(open
            .judge(&Artifact::module("example.com/a/b/c", None))
            .is_ok());
        assert!(open
            .judge(&Artifact::Git("https://x.example/y".into()))
            .is_ok());
        let closed = policy("archives = []");
        assert!(closed
            .judge(&Artifact::Archive("https://x/y.zip".into()))
            .is_err());
        assert!(closed.judge(&Artifact::provider("a/b/c", None)).is_ok());
    }

    #[test]
    fn bad_entries_name_their_key_and_value() {
        let cases = [
            (
                r#"providers = ["aws"]"#,
                "[policy] providers: \"aws\": expected [host/]namespace/type",
            ),
            (
                r#"modules = ["a/b"]"#,
                "[policy] modules: \"a/b\": expected [host/]namespace/name/system",
            ),
            (r#"git = ["github.com"]"#, "[policy] git: \"github.com\": "),
            (
                r#"archives = ["ftp://x/"]"#,
                "[policy] archives: \"ftp://x/\": expected an http(s) URL prefix",
            ),
            (
                r#"deny_providers = ["hashicorp/aws < banana"]"#,
                "[policy] deny_providers: \"hashicorp/aws < banana\": \"banana\" is not a version",
            ),
        ];
        for (text, expected) in cases {
            let section: PolicySection = toml::from_str(text).unwrap();
            let err = section.parse().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
        assert!(toml::from_str::<PolicySection>("allow = []").is_err());
    }

    /// Through the config file: a refusal names the file, and a bad entry
    /// is a config error naming the key and the value.
    #[test]
    fn the_config_file_carries_the_policy_and_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[policy]\nproviders = [\"hashicorp/*\"]\n").unwrap();
        let config = crate::config::Config::from_file(&path).unwrap();
        let refusal = config
            .policy
            .unwrap()
            .judge(&Artifact::provider("a.io/b/c", None));
        assert_eq!(
            refusal.unwrap_err().to_string(),
            format!(
                "a.io/b/c is not allowed by [policy] providers in {}",
                path.display()
            )
        );
        assert!(crate::config::Config::parse("").unwrap().policy.is_none());
        std::fs::write(&path, "[policy]\nmodules = [\"x\"]\n").unwrap();
        let err = crate::config::Config::from_file(&path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "invalid config {}:2:11: [policy] modules: \"x\": expected \
                 [host/]namespace/name/system",
                path.display()
            )
        );
    }
}
