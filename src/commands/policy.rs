//! `tfmirror policy check [DIR...]`: what the config's `[policy]` would
//! refuse of the providers that lock files under DIR pin and the modules
//! their configurations call, for CI to run before `terraform init`. It
//! reads the config and the files only; no server is involved.
//!
//! Lock files are found as `warm` finds them; module sources are the
//! literal `source = "..."` lines of every `.tf` / `.tf.json` file (as
//! `exec` finds git sources), read as Terraform reads them: a registry
//! address (`[host/]namespace/name/system`), a git source, or an HTTP
//! archive. A registry module's version is not known before `init`, so
//! only rules on the whole module apply to it.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::lockfile::{find_lock_files, walk_files, LockFile};
use crate::policy::patterns::DEFAULT_HOST;
use crate::policy::{file_text, Artifact, Policy, Refusal};

use super::local_clones::sources::{git_call, literal_sources};

#[derive(clap::Subcommand)]
pub enum PolicyAction {
    /// List what `[policy]` would refuse of the lock files and module
    /// sources under DIR (exit 1 if anything).
    Check {
        /// Directories searched recursively (`.terraform` and `.git` are
        /// skipped) [default: .].
        #[arg(value_name = "DIR")]
        dirs: Vec<PathBuf>,
    },
}

/// One artifact the policy would refuse, and the file that names it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    /// `path` or `path:line`.
    place: String,
    message: String,
}

pub async fn run(action: PolicyAction, config: &Config) -> anyhow::Result<i32> {
    let PolicyAction::Check { dirs } = action;
    let Some(policy) = config.policy.clone() else {
        println!("no [policy] in the config: nothing is refused");
        return Ok(0);
    };
    let dirs = if dirs.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        dirs
    };
    let findings = tokio::task::spawn_blocking(move || check(&policy, &dirs)).await??;
    for finding in &findings {
        println!("{}: {}", finding.place, finding.message);
    }
    let file = file_text(&config.policy.as_ref().and_then(|p| p.file.clone()));
    if findings.is_empty() {
        println!("nothing would be refused by [policy]{file}");
        Ok(0)
    } else {
        println!(
            "{} artifact(s) would be refused by [policy]{file}",
            findings.len()
        );
        Ok(1)
    }
}

/// Every refusal for the files under `dirs`, sorted, each once.
fn check(policy: &Policy, dirs: &[PathBuf]) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let mut refuse = |place: String, artifact: Artifact| {
        if let Err(refusal) = policy.judge(&artifact) {
            findings.push(Finding {
                place,
                message: message(&refusal),
            });
        }
    };
    for path in find_lock_files(dirs)? {
        let lock = LockFile::read(&path)?;
        for provider in &lock.providers {
            let artifact = Artifact::provider(&provider.address, Some(&provider.version));
            refuse(format!("{}:{}", path.display(), provider.line), artifact);
        }
    }
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        let mut configs = Vec::new();
        walk_files(dir, &mut |path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.ends_with(".tf") || name.ends_with(".tf.json") {
                configs.push(path.to_owned());
            }
        })?;
        for path in configs {
            for artifact in module_artifacts(&path) {
                refuse(path.display().to_string(), artifact);
            }
        }
    }
    findings.sort();
    findings.dedup();
    Ok(findings)
}

/// The refusal without the config file, which the summary names once.
fn message(refusal: &Refusal) -> String {
    format!("{} is {}", refusal.artifact, refusal.rule)
}

/// What each module source in a configuration file would fetch.
fn module_artifacts(path: &Path) -> Vec<Artifact> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    literal_sources(&text)
        .iter()
        .filter_map(|source| source_artifact(source))
        .collect()
}

/// A module source as Terraform reads it: a git source, an HTTP archive,
/// or a registry address; local paths and other getters name nothing the
/// policy covers.
fn source_artifact(source: &str) -> Option<Artifact> {
    if let Some(call) = git_call(source) {
        return Some(Artifact::Git(call.url));
    }
    let forced = source
        .strip_prefix("http::")
        .or_else(|| source.strip_prefix("https::"))
        .unwrap_or(source);
    if forced.starts_with("https://") || forced.starts_with("http://") {
        return Some(Artifact::Archive(forced.to_owned()));
    }
    registry_module(source).map(|address| Artifact::module(address, None))
}

/// `[host/]namespace/name/system[//subdir]` as a full address, if the
/// source is one: Terraform's registry address rules (a namespace and a
/// name of letters, digits, `-` and `_`; a system of lowercase letters
/// and digits; a host with a dot, or `localhost`). A provider's `source`
/// (`hashicorp/aws`) has too few parts to be one.
fn registry_module(source: &str) -> Option<String> {
    let address = source.split("//").next()?;
    let parts: Vec<&str> = address.split('/').collect();
    let (host, rest) = match parts.as_slice() {
        [host, rest @ ..] if rest.len() == 3 => (host.to_ascii_lowercase(), rest),
        rest if rest.len() == 3 => (DEFAULT_HOST.to_owned(), rest),
        _ => return None,
    };
    let host_ok = host == "localhost" || (host.contains('.') && !host.starts_with('.'));
    let name = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    let system = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let (namespace, module, target) = (rest[0], rest[1], rest[2]);
    (host_ok && name(namespace) && name(module) && system(target))
        .then(|| format!("{host}/{namespace}/{module}/{target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_sources_are_read_as_terraform_reads_them() {
        let cases = [
            (
                "terraform-aws-modules/vpc/aws",
                Some(Artifact::module(
                    "registry.terraform.io/terraform-aws-modules/vpc/aws",
                    None,
                )),
            ),
            (
                "app.terraform.io/example-org/net/aws//modules/x",
                Some(Artifact::module(
                    "app.terraform.io/example-org/net/aws",
                    None,
                )),
            ),
            (
                "git::https://github.com/org/repo.git//sub?ref=v1",
                Some(Artifact::Git("https://github.com/org/repo.git".into())),
            ),
            (
                "https://artifacts.example.com/m.zip",
                Some(Artifact::Archive(
                    "https://artifacts.example.com/m.zip".into(),
                )),
            ),
            ("hashicorp/aws", None),
            ("registry.terraform.io/hashicorp/aws", None),
            ("./modules/local", None),
            ("../up/one/two", None),
            ("s3::https://bucket.s3.amazonaws.com/m.zip", None),
        ];
        for (source, expected) in cases {
            assert_eq!(source_artifact(source), expected, "{source}");
        }
    }
}
