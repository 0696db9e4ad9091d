//! Reads the user's own CLI config: the files Terraform or OpenTofu would
//! read (see `locations`) if tfmirror did not point `TF_CLI_CONFIG_FILE`
//! and `TOFU_CLI_CONFIG_FILE` at its own file.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::locations::{config_files, Program};
use super::{hcl1, json, render, CliConfigError};

/// The user's CLI config: one file named by a variable, or the main file
/// (`~/.terraformrc`, for OpenTofu `~/.tofurc`) plus the files of the
/// config directory (`~/.terraform.d`), in the order the program merges
/// them.
pub struct UserConfig {
    /// The first file read. [`UserConfig::files`] lists them all.
    pub path: PathBuf,
    pub(super) sources: Vec<UserConfigFile>,
}

impl UserConfig {
    /// Every file read, in the order Terraform merges them.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.sources.iter().map(|source| source.path.as_path())
    }

    /// The first of the user's files that sets the top-level `key` (e.g.
    /// `provider_installation`). A file tfmirror generated does not count:
    /// its settings are tfmirror's own, replaced as they come back.
    pub fn file_setting(&self, key: &str) -> Option<&Path> {
        self.sources
            .iter()
            .filter(|source| !source.generated)
            .find(|source| {
                source
                    .items
                    .iter()
                    .any(|item| render::is_setting(item, key))
            })
            .map(|source| source.path.as_path())
    }
}

/// One file of the user's config, as native HCL 1 text split into items.
pub(super) struct UserConfigFile {
    pub path: PathBuf,
    /// The file's own text, or for a JSON file its native translation.
    pub text: String,
    pub items: Vec<hcl1::Item>,
    pub comments: Vec<Range<usize>>,
    /// Written by tfmirror: its own header, markers and host blocks are
    /// dropped instead of copied again.
    pub generated: bool,
}

impl UserConfigFile {
    pub(super) fn parse(path: PathBuf, contents: &str) -> Result<UserConfigFile, CliConfigError> {
        let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
        let parse_error = |message: String| CliConfigError::Parse {
            path: path.clone(),
            message,
        };
        let text = if is_json(contents) {
            json::to_native(contents).map_err(|e| parse_error(e.to_string()))?
        } else {
            contents.to_owned()
        };
        let parsed = hcl1::parse(&text).map_err(|e| parse_error(e.to_string()))?;
        Ok(UserConfigFile {
            generated: render::is_generated(&text),
            path,
            text,
            items: parsed.items,
            comments: parsed.comments,
        })
    }
}

/// Terraform (through HCL 1) reads a file as JSON when its first
/// non-space character is `{`, whatever the file is called.
fn is_json(contents: &str) -> bool {
    contents.trim_start().starts_with('{')
}

/// The user's own CLI config for `program`, found the way it finds it (see
/// [`config_files`]); `env` reads an environment variable and `home` is
/// `$HOME`.
///
/// Returns `Ok(None)` when none of these files exists. A file that exists
/// but cannot be read or parsed is an error naming it.
pub fn find_user_config(
    program: Program,
    env: &dyn Fn(&str) -> Option<OsString>,
    home: Option<&Path>,
) -> Result<Option<UserConfig>, CliConfigError> {
    let mut sources = Vec::new();
    for path in config_files(program, env, home)? {
        if let Some(contents) = read_if_present(&path)? {
            sources.push(UserConfigFile::parse(path, &contents)?);
        }
    }
    Ok(UserConfig::from_sources(sources))
}

/// Paths only: the files hold credentials, which must not reach logs.
impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("path", &self.path)
            .field("files", &self.files().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl UserConfig {
    /// The config of files `(path, text)`, for tests; panics on a bad one.
    #[cfg(test)]
    pub(super) fn of_texts(files: &[(&str, &str)]) -> UserConfig {
        let sources = files
            .iter()
            .map(|(path, text)| UserConfigFile::parse(PathBuf::from(path), text).unwrap())
            .collect();
        UserConfig::from_sources(sources).unwrap()
    }

    pub(super) fn from_sources(sources: Vec<UserConfigFile>) -> Option<UserConfig> {
        let path = sources.first()?.path.clone();
        Some(UserConfig { path, sources })
    }
}

/// The file's text, or `None` if it does not exist.
fn read_if_present(path: &Path) -> Result<Option<String>, CliConfigError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(CliConfigError::Read {
                path: path.to_owned(),
                error,
            })
        }
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| CliConfigError::Parse {
            path: path.to_owned(),
            message: format!("not valid UTF-8: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    /// Terraform's config, with `file` as `TF_CLI_CONFIG_FILE`.
    fn find(
        file: Option<&OsStr>,
        home: Option<&Path>,
    ) -> Result<Option<UserConfig>, CliConfigError> {
        let file = file.map(OsStr::to_owned);
        let env = move |name: &str| {
            (name == "TF_CLI_CONFIG_FILE")
                .then(|| file.clone())
                .flatten()
        };
        find_user_config(Program::Terraform, &env, home)
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn names(config: &UserConfig, home: &Path) -> Vec<String> {
        config
            .files()
            .map(|p| p.strip_prefix(home).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn nothing_to_find_is_none() {
        let home = tempfile::tempdir().unwrap();
        assert!(find(None, Some(home.path())).unwrap().is_none());
        assert!(find(None, None).unwrap().is_none());
        let missing = home.path().join("missing.tfrc");
        assert!(find(Some(missing.as_os_str()), Some(home.path()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn default_config_is_terraformrc_then_config_dir_by_name() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(&h.join(".terraformrc"), "disable_checkpoint = true\n");
        write(
            &h.join(".terraform.d/credentials.tfrc.json"),
            r#"{"credentials": {"app.terraform.io": {"token": "t"}}}"#,
        );
        write(
            &h.join(".terraform.d/a.tfrc"),
            "plugin_cache_dir = \"/c\"\n",
        );
        write(&h.join(".terraform.d/notes.txt"), "not a config {");
        fs::create_dir_all(h.join(".terraform.d/plugins")).unwrap();

        let config = find(Some(OsStr::new("")), Some(h)).unwrap().unwrap();
        assert_eq!(config.path, h.join(".terraformrc"));
        assert_eq!(
            names(&config, h),
            [
                ".terraformrc",
                ".terraform.d/a.tfrc",
                ".terraform.d/credentials.tfrc.json"
            ]
        );
    }

    #[test]
    fn config_dir_alone_is_enough() {
        let home = tempfile::tempdir().unwrap();
        let creds = home.path().join(".terraform.d/credentials.tfrc.json");
        write(
            &creds,
            r#"{"credentials": {"app.terraform.io": {"token": "t"}}}"#,
        );
        let config = find(None, Some(home.path())).unwrap().unwrap();
        assert_eq!(config.path, creds);
    }

    #[test]
    fn explicit_file_replaces_the_defaults() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(&h.join(".terraformrc"), "disable_checkpoint = true\n");
        write(
            &h.join(".terraform.d/a.tfrc"),
            "disable_checkpoint = true\n",
        );
        let explicit = h.join("tofu.rc");
        write(&explicit, "plugin_cache_dir = \"/c\"\n");

        let config = find(Some(explicit.as_os_str()), Some(h)).unwrap().unwrap();
        assert_eq!(names(&config, h), ["tofu.rc"]);
    }

    #[test]
    fn broken_file_is_an_error_naming_it() {
        let home = tempfile::tempdir().unwrap();
        let rc = home.path().join(".terraformrc");
        write(
            &rc,
            "credentials \"app.terraform.io\" {\n  token = \"x\n}\n",
        );
        let err = find(None, Some(home.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot parse Terraform CLI config {}: line 2, column 11: string not terminated",
                rc.display()
            )
        );

        write(&rc, "{\"credentials\": ");
        let err = find(None, Some(home.path())).unwrap_err();
        assert!(err.to_string().starts_with(&format!(
            "cannot parse Terraform CLI config {}: EOF while parsing",
            rc.display()
        )));
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("dir.tfrc");
        fs::create_dir(&dir).unwrap();
        let err = find(Some(dir.as_os_str()), None).unwrap_err();
        assert!(matches!(err, CliConfigError::Read { .. }));
        assert!(err.to_string().starts_with(&format!(
            "cannot read Terraform CLI config {}: ",
            dir.display()
        )));
    }
}
