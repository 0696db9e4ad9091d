//! The multi-unit rule: when `exec` runs something other than terraform
//! itself (terragrunt, make, a script), one CLI config serves every `init`
//! below the working directory, so a provider may come from the tree only
//! if no unit there could select a different version of it.
//!
//! Why: with `filesystem_mirror { include }` Terraform sees only the
//! tree's versions of an included provider. A unit whose lock file pins the
//! provider gets the pinned version either way; a unit that uses it without
//! a lock entry would pick the newest version *in the tree* instead of the
//! newest the registry publishes. So a provider qualifies only when every
//! unit either locks it, or is known not to use it.
//!
//! A unit is a directory with Terraform files. What it uses is what its
//! files name (`required_providers`, plus providers implied by resource
//! types). A unit with a lock file is taken to use no more than that and
//! its lock (Terraform refuses to plan with an incomplete lock file, so the
//! lock covers what its modules need); one without a lock file that calls a
//! module tfmirror cannot read, or whose files tfmirror cannot parse, might
//! use anything, and disqualifies every provider.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::usage::{Requirement, Usage};
use crate::lockfile::{walk_files, LockFile, LockFileError, ProviderAddress, LOCK_FILE_NAME};

/// One directory of Terraform files below the working directory.
#[derive(Debug)]
pub struct Unit {
    pub dir: PathBuf,
    /// The providers its lock file pins; `None` without a lock file.
    pub locked: Option<Vec<ProviderAddress>>,
    pub uses: Uses,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Uses {
    Known(Vec<Requirement>),
    /// Anything: tfmirror cannot tell, for the reason given.
    Unknown(String),
}

/// The first unit that keeps `provider` out of the tree, if any.
pub fn disqualifying<'a>(units: &'a [Unit], provider: &ProviderAddress) -> Option<&'a Unit> {
    units.iter().find(|unit| {
        let locks_it = unit
            .locked
            .as_ref()
            .is_some_and(|locked| locked.contains(provider));
        let never_uses_it = match &unit.uses {
            Uses::Known(requirements) => !requirements.iter().any(|r| r.matches(provider)),
            Uses::Unknown(_) => false,
        };
        !(locks_it || never_uses_it)
    })
}

/// Every unit under `root`, with what `locks` (the lock files found
/// there) say of it. Reads files: call it off the async runtime.
pub fn read_units(root: &Path, locks: &[LockFile]) -> Result<Vec<Unit>, LockFileError> {
    let mut files: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    walk_files(root, &mut |path| {
        if is_terraform_file(path) {
            if let Some(dir) = path.parent() {
                files
                    .entry(dir.to_owned())
                    .or_default()
                    .push(path.to_owned());
            }
        }
    })?;
    let units = files
        .into_iter()
        .map(|(dir, files)| {
            let lock_path = dir.join(LOCK_FILE_NAME);
            let locked = locks
                .iter()
                .find(|lock| lock.path == lock_path)
                .map(|lock| {
                    lock.providers
                        .iter()
                        .map(|provider| provider.address.clone())
                        .collect()
                });
            let uses = read_uses(root, &dir, &files, locked.is_some());
            Unit { dir, locked, uses }
        })
        .collect();
    Ok(units)
}

/// `.tf` and `.tofu` files, in native or JSON syntax.
fn is_terraform_file(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    [".tf", ".tofu", ".tf.json", ".tofu.json"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

fn read_uses(root: &Path, dir: &Path, files: &[PathBuf], has_lock: bool) -> Uses {
    let mut usage = Usage::default();
    for file in files {
        if file.extension().is_some_and(|ext| ext == "json") {
            return Uses::Unknown(format!("{} is JSON syntax", file.display()));
        }
        let parsed = match std::fs::read_to_string(file) {
            Ok(text) => Usage::parse(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match parsed {
            Ok(file_usage) => usage.extend(file_usage),
            Err(e) => return Uses::Unknown(format!("cannot read {}: {e}", file.display())),
        }
    }
    if !has_lock {
        for source in &usage.module_sources {
            if !is_local_module_under(root, dir, source.as_deref()) {
                return Uses::Unknown(format!(
                    "{} calls module {:?}, which tfmirror does not read",
                    dir.display(),
                    source.as_deref().unwrap_or("(not a string)")
                ));
            }
        }
    }
    Uses::Known(usage.requirements())
}

/// A `./` or `../` source whose directory is under `root`: the walk finds
/// it as a unit of its own.
fn is_local_module_under(root: &Path, dir: &Path, source: Option<&str>) -> bool {
    let Some(source) = source else {
        return false;
    };
    if !(source.starts_with("./") || source.starts_with("../")) {
        return false;
    }
    let mut resolved = PathBuf::new();
    for component in dir.join(source).components() {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    resolved.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const LOCK_ALPHA_BETA: &str = "provider \"registry.terraform.io/hashicorp/alpha\" {\n  version = \"1.0.0\"\n}\nprovider \"registry.terraform.io/acme/beta\" {\n  version = \"1.0.0\"\n}\n";

    fn tf(providers: &[&str]) -> String {
        let lines: Vec<String> = providers
            .iter()
            .map(|source| {
                let name = source.rsplit('/').next().unwrap();
                format!("    {name} = {{ source = \"{source}\" }}\n")
            })
            .collect();
        format!(
            "terraform {{\n  required_providers {{\n{}  }}\n}}\n",
            lines.concat()
        )
    }

    fn qualifying(root: &Path) -> Vec<&'static str> {
        let locks: Vec<LockFile> = crate::lockfile::find_lock_files(&[root.to_owned()])
            .unwrap()
            .iter()
            .map(|path| LockFile::read(path).unwrap())
            .collect();
        let units = read_units(root, &locks).unwrap();
        [
            "registry.terraform.io/hashicorp/alpha",
            "registry.terraform.io/acme/beta",
        ]
        .into_iter()
        .filter(|a| disqualifying(&units, &ProviderAddress::parse(a).unwrap()).is_none())
        .collect()
    }

    #[test]
    fn a_unit_without_a_lock_entry_keeps_its_providers_on_the_registry_path() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        write(
            &root.join("a/main.tf"),
            &tf(&["hashicorp/alpha", "acme/beta"]),
        );
        write(&root.join("a/.terraform.lock.hcl"), LOCK_ALPHA_BETA);
        assert_eq!(
            qualifying(root),
            [
                "registry.terraform.io/hashicorp/alpha",
                "registry.terraform.io/acme/beta"
            ]
        );

        write(&root.join("b/main.tf"), &tf(&["acme/beta"]));
        assert_eq!(
            qualifying(root),
            ["registry.terraform.io/hashicorp/alpha"],
            "b has no lock file"
        );

        write(
            &root.join("b/.terraform.lock.hcl"),
            "provider \"registry.terraform.io/hashicorp/alpha\" {\n  version = \"1.0.0\"\n}\n",
        );
        assert_eq!(
            qualifying(root),
            ["registry.terraform.io/hashicorp/alpha"],
            "b's lock lacks beta"
        );
    }

    #[test]
    fn a_unit_that_might_use_anything_disqualifies_everything_it_does_not_lock() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        write(
            &root.join("a/main.tf"),
            &tf(&["hashicorp/alpha", "acme/beta"]),
        );
        write(&root.join("a/.terraform.lock.hcl"), LOCK_ALPHA_BETA);
        write(&root.join("modules/vpc/main.tf"), "variable \"x\" {}\n");
        write(
            &root.join("c/main.tf"),
            "module \"vpc\" {\n  source = \"../modules/vpc\"\n}\n",
        );
        assert_eq!(
            qualifying(root).len(),
            2,
            "local modules are units of their own"
        );

        write(
            &root.join("c/main.tf"),
            "module \"vpc\" {\n  source = \"acme/vpc/aws\"\n}\n",
        );
        assert!(qualifying(root).is_empty());
        write(&root.join("c/main.tf"), "resource \"x\" {\n");
        assert!(qualifying(root).is_empty());
        write(&root.join("c/.terraform.lock.hcl"), LOCK_ALPHA_BETA);
        assert_eq!(qualifying(root).len(), 2, "but not what it locks");
    }
}
