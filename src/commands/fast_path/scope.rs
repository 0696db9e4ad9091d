//! Which lock files an `exec` may install providers by, read from its
//! command line.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::cliconfig::Program;
use crate::commands::run_start;

/// What the command is, for the fast path.
#[derive(Debug, PartialEq, Eq)]
pub enum Scope {
    /// Terraform or OpenTofu, but not `init`: it installs no provider.
    NoInstall,
    /// `init -upgrade` (or a command line that mentions it): the lock file
    /// is ignored and newer versions must be seen, so no provider may be
    /// limited to the versions in the tree.
    Upgrade,
    /// `terraform init` or `tofu init` in this directory: its lock file.
    Root(PathBuf),
    /// Another program (terragrunt, make, a script) that may run `init`s
    /// anywhere below this directory: every lock file there.
    Tree(PathBuf),
}

impl Scope {
    /// The scope of running `program args` in `cwd`; `env` reads an
    /// environment variable (`TF_CLI_ARGS`, `TF_CLI_ARGS_init`).
    pub fn of(
        program: &OsStr,
        args: &[OsString],
        cwd: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Scope {
        if !is_terraform(program) {
            return if args.iter().any(mentions_upgrade) {
                Scope::Upgrade
            } else {
                Scope::Tree(cwd.to_owned())
            };
        }
        let Some(command) = run_start::subcommand(args, cwd) else {
            return Scope::NoInstall;
        };
        if command.name != "init" {
            return Scope::NoInstall;
        }
        let from_env = ["TF_CLI_ARGS", "TF_CLI_ARGS_init"]
            .iter()
            .filter_map(|name| env(name))
            .any(|value| value.split_whitespace().any(is_upgrade_flag));
        let upgrade = command
            .args
            .iter()
            .filter_map(|arg| arg.to_str())
            .any(is_upgrade_flag);
        if upgrade || from_env {
            Scope::Upgrade
        } else {
            Scope::Root(command.workdir)
        }
    }

    /// Whether the command may install providers at all.
    pub fn installs_providers(&self) -> bool {
        *self != Scope::NoInstall
    }
}

/// `terraform` or `tofu`, by the program's file name.
fn is_terraform(program: &OsStr) -> bool {
    Program::of(program) != Program::Other
}

/// `-upgrade`, `--upgrade` or `-upgrade=VALUE` with a value Go's `flag`
/// package reads as true.
fn is_upgrade_flag(arg: &str) -> bool {
    let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
        return false;
    };
    match flag.split_once('=') {
        None => flag == "upgrade",
        Some((name, value)) => {
            name == "upgrade" && !matches!(value, "0" | "f" | "F" | "false" | "FALSE" | "False")
        }
    }
}

/// For a program tfmirror cannot read the arguments of (a script, `sh -c
/// '...'`, terragrunt): any mention of `-upgrade` is taken as one.
fn mentions_upgrade(arg: &OsString) -> bool {
    arg.to_string_lossy().contains("-upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(command: &[&str], env: &[(&str, &str)]) -> Scope {
        let (program, args) = command.split_first().unwrap();
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Scope::of(
            OsStr::new(program),
            &args,
            Path::new("/nonexistent"),
            |name| {
                env.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            },
        )
    }

    #[test]
    fn terraform_init_uses_its_workdirs_lock_file() {
        let root = |dir: &str| Scope::Root(PathBuf::from(dir));
        assert_eq!(scope(&["terraform", "init"], &[]), root("/nonexistent"));
        assert_eq!(
            scope(
                &["/usr/bin/tofu", "-chdir=env/prod", "init", "-input=false"],
                &[]
            ),
            root("/nonexistent/env/prod")
        );
        assert_eq!(
            scope(&["terraform", "init", "-upgrade=false"], &[]),
            root("/nonexistent")
        );
    }

    #[test]
    fn upgrade_and_other_subcommands_are_left_alone() {
        for command in [
            &["terraform", "init", "-upgrade"][..],
            &["terraform", "init", "--upgrade"],
            &["tofu", "init", "-upgrade=true"],
            &["terragrunt", "run-all", "init", "-upgrade"],
            &["sh", "-c", "cd a && terraform init -upgrade"],
        ] {
            assert_eq!(scope(command, &[]), Scope::Upgrade, "{command:?}");
        }
        assert_eq!(
            scope(
                &["terraform", "init"],
                &[("TF_CLI_ARGS_init", "-input=false -upgrade")]
            ),
            Scope::Upgrade
        );
        for command in [
            &["terraform", "plan"][..],
            &["terraform", "get"],
            &["terraform", "-version"],
            &["terraform", "plan", "init"],
        ] {
            assert_eq!(scope(command, &[]), Scope::NoInstall, "{command:?}");
            assert!(!scope(command, &[]).installs_providers());
        }
    }

    #[test]
    fn another_program_covers_the_whole_directory() {
        assert_eq!(
            scope(&["terragrunt", "run-all", "init"], &[]),
            Scope::Tree("/nonexistent".into())
        );
        assert_eq!(
            scope(&["sh", "-c", "terraform init"], &[]),
            Scope::Tree("/nonexistent".into())
        );
    }
}
