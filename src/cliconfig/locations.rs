//! Where Terraform and OpenTofu look for their CLI config files, and so
//! where tfmirror reads the user's own settings from.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::CliConfigError;

/// The program a CLI config is read for. Each reads its own files:
/// [`config_files`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Terraform,
    OpenTofu,
    /// Anything else `exec` runs (terragrunt, make, a script): it may run
    /// either; tfmirror reads Terraform's files for it.
    Other,
}

impl Program {
    /// The program `exec` runs, by its file name (`terraform`, `tofu`,
    /// with or without a directory or `.exe`).
    pub fn of(program: &OsStr) -> Program {
        let name = Path::new(program).file_name().unwrap_or(program);
        let name = name.to_string_lossy();
        match name.strip_suffix(".exe").unwrap_or(&name) {
            "terraform" => Program::Terraform,
            "tofu" => Program::OpenTofu,
            _ => Program::Other,
        }
    }

    /// The variables naming a file that replaces the default files, in the
    /// order they are read; the first one set and not empty wins.
    pub fn override_variables(self) -> &'static [&'static str] {
        match self {
            Program::Terraform | Program::Other => &["TF_CLI_CONFIG_FILE", "TERRAFORM_CONFIG"],
            Program::OpenTofu => &[
                TOFU_CLI_CONFIG_FILE,
                "TF_CLI_CONFIG_FILE",
                "TERRAFORM_CONFIG",
            ],
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Program::Terraform => "Terraform",
            Program::OpenTofu => "OpenTofu",
            Program::Other => "the program",
        })
    }
}

/// What `exec` sets for OpenTofu besides `TF_CLI_CONFIG_FILE`; a value the
/// user set is their own config for OpenTofu.
pub const TOFU_CLI_CONFIG_FILE: &str = "TOFU_CLI_CONFIG_FILE";

/// The files `program` reads its CLI config from, in the order it merges
/// them; each may not exist. `env` reads an environment variable and
/// `home` is `$HOME`.
///
/// Terraform (`internal/command/cliconfig`, `config_unix.go`): the file
/// `TF_CLI_CONFIG_FILE` names (else `TERRAFORM_CONFIG`) is the whole
/// config; otherwise `~/.terraformrc`, then `~/.terraform.d/*.tfrc` and
/// `*.tfrc.json` by name.
///
/// OpenTofu, as read in opentofu/opentofu `internal/command/cliconfig/`
/// (`cliconfig.go`: `LoadConfig`, `cliConfigFileOverride`;
/// `config_unix.go`: `configFile`, `configDir`):
/// - a file named by `TF_CLI_CONFIG_FILE`, else `TERRAFORM_CONFIG`, is the
///   whole config (the config directory is skipped). OpenTofu's source reads
///   no `TOFU_CLI_CONFIG_FILE`; tfmirror takes a value the user set there
///   first, since it can only be meant for OpenTofu.
/// - otherwise one main file: `~/.tofurc`; `~/.terraformrc` when it exists
///   and `~/.tofurc` does not; when neither exists,
///   `$XDG_CONFIG_HOME/opentofu/tofurc` (`$XDG_CONFIG_HOME` defaulting to
///   `~/.config`);
/// - then the `*.tfrc` and `*.tfrc.json` files, by name, of the config
///   directory: `~/.terraform.d` if it exists, else
///   `$XDG_CONFIG_HOME/opentofu`.
pub fn config_files(
    program: Program,
    env: &dyn Fn(&str) -> Option<OsString>,
    home: Option<&Path>,
) -> Result<Vec<PathBuf>, CliConfigError> {
    let set = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(path) = program
        .override_variables()
        .iter()
        .find_map(|name| set(name))
    {
        return Ok(vec![PathBuf::from(path)]);
    }
    let Some(home) = home else {
        return Ok(Vec::new());
    };
    let mut files = Vec::new();
    match program {
        Program::Terraform | Program::Other => {
            files.push(home.join(".terraformrc"));
            files.extend(config_dir_files(&home.join(".terraform.d"))?);
        }
        Program::OpenTofu => {
            let xdg_config = set("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".config"));
            let tofurc = home.join(".tofurc");
            let terraformrc = home.join(".terraformrc");
            files.push(match (tofurc.exists(), terraformrc.exists()) {
                (false, false) => xdg_config.join("opentofu").join("tofurc"),
                (false, true) => terraformrc,
                (true, _) => tofurc,
            });
            let legacy_dir = home.join(".terraform.d");
            let dir = match legacy_dir.exists() {
                true => legacy_dir,
                false => xdg_config.join("opentofu"),
            };
            files.extend(config_dir_files(&dir)?);
        }
    }
    Ok(files)
}

/// The `*.tfrc` and `*.tfrc.json` files in `dir`, sorted by name as
/// Terraform reads them. A missing directory holds none.
fn config_dir_files(dir: &Path) -> Result<Vec<PathBuf>, CliConfigError> {
    let read_error = |error| CliConfigError::Read {
        path: dir.to_owned(),
        error,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(read_error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_error)?.path();
        if is_config_file_name(&path) && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn is_config_file_name(path: &Path) -> bool {
    path.file_name().is_some_and(|name| {
        let name = name.as_encoded_bytes();
        name.ends_with(b".tfrc") || name.ends_with(b".tfrc.json")
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn files(program: Program, vars: &[(&str, &str)], home: &Path) -> Vec<String> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        config_files(program, &|name| vars.get(name).cloned(), Some(home))
            .unwrap()
            .iter()
            .map(|p| match p.strip_prefix(home) {
                Ok(relative) => format!("~/{}", relative.display()),
                Err(_) => p.display().to_string(),
            })
            .collect()
    }

    #[test]
    fn programs_are_told_by_file_name() {
        assert_eq!(Program::of(OsStr::new("terraform")), Program::Terraform);
        assert_eq!(Program::of(OsStr::new("/opt/bin/tofu")), Program::OpenTofu);
        assert_eq!(Program::of(OsStr::new("tofu.exe")), Program::OpenTofu);
        assert_eq!(Program::of(OsStr::new("terragrunt")), Program::Other);
        assert_eq!(Program::of(OsStr::new("./tofu-wrapper.sh")), Program::Other);
    }

    #[test]
    fn terraform_reads_terraformrc_then_its_config_dir() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(&h.join(".tofurc"), "");
        write(&h.join(".terraform.d/b.tfrc"), "");
        write(&h.join(".terraform.d/a.tfrc.json"), "{}");
        write(&h.join(".terraform.d/notes.txt"), "");
        let expected = [
            "~/.terraformrc",
            "~/.terraform.d/a.tfrc.json",
            "~/.terraform.d/b.tfrc",
        ];
        assert_eq!(files(Program::Terraform, &[], h), expected);
        assert_eq!(files(Program::Other, &[], h), expected);
        // Only OpenTofu reads TOFU_CLI_CONFIG_FILE.
        let tofu_only = [("TOFU_CLI_CONFIG_FILE", "/t.rc")];
        assert_eq!(files(Program::Terraform, &tofu_only, h), expected);
    }

    #[test]
    fn an_override_variable_is_the_whole_config() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(&h.join(".terraformrc"), "");
        write(&h.join(".terraform.d/a.tfrc"), "");
        let both = [
            ("TF_CLI_CONFIG_FILE", "/tf.rc"),
            ("TERRAFORM_CONFIG", "/old.rc"),
        ];
        assert_eq!(files(Program::Terraform, &both, h), ["/tf.rc"]);
        assert_eq!(
            files(Program::Terraform, &[("TERRAFORM_CONFIG", "/old.rc")], h),
            ["/old.rc"]
        );
        let empty = [("TF_CLI_CONFIG_FILE", "")];
        assert_eq!(files(Program::Terraform, &empty, h).len(), 2);
        let all = [
            ("TOFU_CLI_CONFIG_FILE", "/tofu.rc"),
            ("TF_CLI_CONFIG_FILE", "/tf.rc"),
        ];
        assert_eq!(files(Program::OpenTofu, &all, h), ["/tofu.rc"]);
        assert_eq!(files(Program::OpenTofu, &both, h), ["/tf.rc"]);
    }

    #[test]
    fn opentofu_prefers_tofurc_and_falls_back_to_terraformrc() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(&h.join(".terraformrc"), "");
        write(&h.join(".terraform.d/a.tfrc"), "");
        assert_eq!(
            files(Program::OpenTofu, &[], h),
            ["~/.terraformrc", "~/.terraform.d/a.tfrc"]
        );
        write(&h.join(".tofurc"), "");
        assert_eq!(
            files(Program::OpenTofu, &[], h),
            ["~/.tofurc", "~/.terraform.d/a.tfrc"]
        );
    }

    #[test]
    fn opentofu_uses_xdg_dirs_on_a_fresh_install() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(&h.join(".config/opentofu/x.tfrc"), "");
        assert_eq!(
            files(Program::OpenTofu, &[], h),
            ["~/.config/opentofu/tofurc", "~/.config/opentofu/x.tfrc"]
        );
        let xdg = h.join("xdg");
        write(&xdg.join("opentofu/y.tfrc"), "");
        let vars = [("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
        assert_eq!(
            files(Program::OpenTofu, &vars, h),
            ["~/xdg/opentofu/tofurc", "~/xdg/opentofu/y.tfrc"]
        );
        // An existing ~/.terraform.d stays the config directory.
        write(&h.join(".terraform.d/z.tfrc"), "");
        assert_eq!(
            files(Program::OpenTofu, &vars, h),
            ["~/xdg/opentofu/tofurc", "~/.terraform.d/z.tfrc"]
        );
    }
}
