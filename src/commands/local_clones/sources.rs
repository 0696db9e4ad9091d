//! The git repositories a working directory's module calls clone, found
//! before Terraform runs: the `source` of each `module` block in the root
//! module's files, and every source the directory's last `init` installed
//! (`.terraform/modules/modules.json`, nested modules included).
//!
//! Terraform requires a module's `source` to be a literal string, so a scan
//! for `source = "..."` lines finds every one without an HCL parser; a
//! provider's `source` (`hashicorp/aws`) is not a git source and drops out.
//! Each source is turned into the URL go-getter hands to `git clone`, since
//! that string, byte for byte, is what git's `insteadOf` rules match.

use std::path::Path;

use serde::Deserialize;

/// A module call that git clones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GitCall {
    /// The URL as go-getter passes it to `git clone`.
    pub url: String,
    /// `?ref=`; `None` clones the default branch.
    pub reference: Option<String>,
}

/// A configuration file bigger than this is not scanned.
const MAX_FILE: u64 = 8 << 20;

/// Where the sources were found, and whether the last run's full list of
/// them (nested modules included) was among them.
#[derive(Debug, Default)]
pub struct Found {
    pub calls: Vec<GitCall>,
    pub last_run_listed: bool,
}

/// The git calls of the root module in `workdir`, and of the last run's
/// installed modules (read from `data_dir`, Terraform's `.terraform`),
/// sorted and without duplicates.
pub fn find(workdir: &Path, data_dir: &Path) -> Found {
    let mut sources = Vec::new();
    if let Ok(entries) = std::fs::read_dir(workdir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_config = name.ends_with(".tf") || name.ends_with(".tf.json");
            let small = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= MAX_FILE);
            if is_config && small {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    sources.extend(literal_sources(&text));
                }
            }
        }
    }
    let installed = installed_sources(&data_dir.join("modules/modules.json"));
    let last_run_listed = installed.is_some();
    sources.extend(installed.unwrap_or_default());
    let mut calls: Vec<GitCall> = sources.iter().filter_map(|s| git_call(s)).collect();
    calls.sort();
    calls.dedup();
    Found {
        calls,
        last_run_listed,
    }
}

/// Every `source = "..."` (HCL) or `"source": "..."` (JSON) value on a
/// line of its own, comments left out.
pub fn literal_sources(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix("source")
                .or_else(|| line.strip_prefix("\"source\""))?;
            let rest = rest.trim_start();
            let rest = rest.strip_prefix(['=', ':'])?.trim_start();
            let value = rest.strip_prefix('"')?;
            let end = value.find('"')?;
            Some(value[..end].to_owned())
        })
        .collect()
}

#[derive(Deserialize)]
struct ModulesJson {
    #[serde(rename = "Modules", default)]
    modules: Vec<InstalledModule>,
}

#[derive(Deserialize)]
struct InstalledModule {
    #[serde(rename = "Source", default)]
    source: String,
}

/// The sources in Terraform's record of installed modules; `None` when
/// there is no readable record.
fn installed_sources(path: &Path) -> Option<Vec<String>> {
    let small = std::fs::metadata(path).ok()?.len() <= MAX_FILE;
    let text = small.then(|| std::fs::read(path).ok()).flatten()?;
    let record: ModulesJson = serde_json::from_slice(&text).ok()?;
    Some(record.modules.into_iter().map(|m| m.source).collect())
}

/// The `git clone` URL and ref of a module source, if go-getter clones it
/// with git: `git::<url>`, the `github.com/<org>/<repo>` shorthand, and
/// scp-like `git@host:path`. `//subdir` and the query are split off as
/// go-getter does; a URL with a password is left alone (git would get it
/// from the URL, and tfmirror never passes one on).
pub fn git_call(source: &str) -> Option<GitCall> {
    let (forced, rest) = match source.strip_prefix("git::") {
        Some(rest) => (true, rest),
        None => (false, source),
    };
    let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
    let address = without_subdir(address);
    let reference = url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "ref")
        .map(|(_, value)| value.into_owned());
    let url = if let Some((scheme, after)) = address.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        let known = matches!(scheme.as_str(), "https" | "http" | "ssh" | "git");
        // Without `git::`, an http(s) URL is an archive download.
        (forced && known).then(|| format!("{scheme}://{after}"))?
    } else if let Some(path) = address.strip_prefix("github.com/") {
        github_shorthand(path)?
    } else {
        scp_like(address, forced)?
    };
    let authority = url.split_once("://")?.1.split('/').next()?;
    let password = authority
        .split_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    (!password && !url.contains(char::is_whitespace)).then_some(GitCall { url, reference })
}

/// The address before go-getter's `//subdir`: the first `//` after the
/// scheme's own.
fn without_subdir(address: &str) -> &str {
    let start = address.find("://").map_or(0, |i| i + 3);
    match address[start..].find("//") {
        Some(i) => &address[..start + i],
        None => address,
    }
}

/// `github.com/<org>/<repo>[/<subdir>...]`: https, with `.git` added.
fn github_shorthand(path: &str) -> Option<String> {
    let mut parts = path.split('/');
    let (org, repo) = (parts.next()?, parts.next()?);
    if org.is_empty() || repo.is_empty() {
        return None;
    }
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    Some(format!("https://github.com/{org}/{repo}.git"))
}

/// `user@host:path` as `ssh://user@host/path`. Without `git::`, go-getter
/// takes it for git only when the user is `git`.
fn scp_like(address: &str, forced: bool) -> Option<String> {
    let (authority, path) = address.split_once(':')?;
    let (user, host) = authority.split_once('@')?;
    let ok = !user.is_empty() && !host.is_empty() && !host.contains('/') && !path.is_empty();
    (ok && (forced || user == "git"))
        .then(|| format!("ssh://{user}@{host}/{}", path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(url: &str, reference: Option<&str>) -> Option<GitCall> {
        Some(GitCall {
            url: url.to_owned(),
            reference: reference.map(str::to_owned),
        })
    }

    #[test]
    fn sources_become_what_git_is_asked_to_clone() {
        for (source, expected) in [
            (
                "git::https://example.com/org/infra.git//modules/vpc?ref=v1.2.0",
                call("https://example.com/org/infra.git", Some("v1.2.0")),
            ),
            (
                "git::https://example.com/org/infra?ref=main&depth=1",
                call("https://example.com/org/infra", Some("main")),
            ),
            (
                "git::HTTP://127.0.0.1:8080/git/org/infra.git",
                call("http://127.0.0.1:8080/git/org/infra.git", None),
            ),
            (
                "git::ssh://git@example.com/org/infra.git//x?ref=v1",
                call("ssh://git@example.com/org/infra.git", Some("v1")),
            ),
            (
                "git@github.com:org/infra.git//modules/vpc?ref=v1",
                call("ssh://git@github.com/org/infra.git", Some("v1")),
            ),
            (
                "git::deploy@example.com:org/infra.git",
                call("ssh://deploy@example.com/org/infra.git", None),
            ),
            (
                "github.com/org/infra//modules/vpc?ref=v2",
                call("https://github.com/org/infra.git", Some("v2")),
            ),
            (
                "github.com/org/infra/modules/vpc",
                call("https://github.com/org/infra.git", None),
            ),
            (
                "git::https://example.com/org/infra.git?ref=release%2F1.0",
                call("https://example.com/org/infra.git", Some("release/1.0")),
            ),
        ] {
            assert_eq!(git_call(source), expected, "{source}");
        }
    }

    #[test]
    fn other_sources_are_not_git() {
        for source in [
            "hashicorp/aws",
            "terraform-aws-modules/vpc/aws",
            "app.terraform.io/org/vpc/aws",
            "./modules/vpc",
            "../shared",
            "https://example.com/vpc.zip",
            "s3::https://s3.amazonaws.com/bucket/vpc.zip",
            "deploy@example.com:org/infra.git",
            "git::https://user:token@example.com/org/infra.git",
            "git::file:///srv/git/infra.git",
            "github.com/org",
            "",
        ] {
            assert_eq!(git_call(source), None, "{source}");
        }
    }

    #[test]
    fn literal_sources_in_hcl_and_json() {
        let hcl = r#"
module "vpc" {
  source  = "git::https://example.com/org/infra.git//modules/vpc?ref=v1"
  version = "1.0.0"
}
# source = "git::https://example.com/commented.git"
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}
"#;
        assert_eq!(
            literal_sources(hcl),
            ["git::https://example.com/org/infra.git//modules/vpc?ref=v1"]
        );
        let json = r#"{"module": {"dns": {
            "source": "git::https://example.com/org/infra.git//modules/dns?ref=v2"}}}"#;
        assert_eq!(
            literal_sources(json),
            ["git::https://example.com/org/infra.git//modules/dns?ref=v2"]
        );
    }

    #[test]
    fn the_root_module_and_the_last_run_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join(".terraform");
        assert!(!find(dir.path(), &data).last_run_listed);
        std::fs::write(
            dir.path().join("main.tf"),
            "module \"a\" {\n  source = \"git::https://h/o/r.git//a?ref=v1\"\n}\n\
             module \"b\" {\n  source = \"git::https://h/o/r.git//b?ref=v1\"\n}\n",
        )
        .unwrap();
        std::fs::create_dir_all(data.join("modules")).unwrap();
        std::fs::write(
            data.join("modules/modules.json"),
            r#"{"Modules":[{"Key":"","Source":"","Dir":"."},
               {"Key":"a.n","Source":"git::https://h/o/nested.git?ref=v3","Dir":"x"}]}"#,
        )
        .unwrap();
        let found = find(dir.path(), &data);
        assert!(found.last_run_listed);
        assert_eq!(
            found.calls,
            [
                GitCall {
                    url: "https://h/o/nested.git".into(),
                    reference: Some("v3".into())
                },
                GitCall {
                    url: "https://h/o/r.git".into(),
                    reference: Some("v1".into())
                },
            ]
        );
    }
}
