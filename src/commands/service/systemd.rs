//! systemd's user instance: a unit in the user's own unit directory,
//! pulled in at login by `default.target`.

use std::path::{Path, PathBuf};

use super::{Manager, ServiceSpec, Step};

const UNIT: &str = "tfmirror.service";

pub(super) struct Systemd {
    file: PathBuf,
}

impl Systemd {
    /// `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`: of
    /// the directories the user instance reads, the one that is the user's
    /// to write.
    pub(super) fn from_env() -> anyhow::Result<Systemd> {
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| crate::config::home_dir().map(|home| home.join(".config")));
        let Some(config_home) = config_home else {
            anyhow::bail!("cannot find the systemd user unit directory: set HOME");
        };
        Ok(Systemd {
            file: config_home.join("systemd").join("user").join(UNIT),
        })
    }
}

impl Manager for Systemd {
    fn file(&self) -> &Path {
        &self.file
    }

    fn render(&self, spec: &ServiceSpec) -> anyhow::Result<String> {
        render(spec)
    }

    /// `enable --now` would leave a running server on the old command line
    /// after an update; `restart` starts a stopped one too.
    fn start(&self) -> Vec<Step> {
        vec![
            systemctl(&["daemon-reload"]),
            systemctl(&["enable", UNIT]),
            systemctl(&["restart", UNIT]),
        ]
    }

    fn stop(&self) -> Vec<Step> {
        vec![systemctl(&["disable", "--now", UNIT])]
    }

    fn forget(&self) -> Vec<Step> {
        vec![systemctl(&["daemon-reload"])]
    }

    fn logs(&self, _spec: &ServiceSpec) -> String {
        format!("journalctl --user -u {UNIT}")
    }
}

fn systemctl(args: &[&str]) -> Step {
    Step::new("systemctl", &[&["--user"], args].concat())
}

fn render(spec: &ServiceSpec) -> anyhow::Result<String> {
    let exec_start: Vec<String> = std::iter::once(executable(&spec.program)?)
        .chain(spec.args.iter().map(|arg| argument(arg)))
        .collect();
    // `Environment=` expands `%` specifiers but no `$VARIABLE`s.
    let environment: String = spec
        .environment
        .iter()
        .map(|(name, value)| format!("Environment={}\n", quote(&format!("{name}={value}"))))
        .collect();
    Ok(format!(
        "\
# Written by `tfmirror service install`, which rewrites it;
# `tfmirror service uninstall` removes it.
[Unit]
Description=tfmirror: caching proxy for Terraform and OpenTofu registries

[Service]
Type=exec
{environment}ExecStart={exec_start}
Restart=on-failure
RestartSec=5
# The server drains requests in flight for up to 30 s after SIGTERM.
TimeoutStopSec=40

[Install]
WantedBy=default.target
",
        exec_start = exec_start.join(" ")
    ))
}

/// systemd takes the executable's path literally (no `$VARIABLE`s) and
/// refuses one with quotes or backslashes in it.
fn executable(path: &str) -> anyhow::Result<String> {
    if path.contains(['"', '\'', '\\']) {
        anyhow::bail!(
            "systemd cannot run an executable whose path has quotes or backslashes: {path}; \
             move tfmirror to another directory"
        );
    }
    Ok(quote(path))
}

/// Arguments are searched for `$VARIABLE`s, which `$$` escapes.
fn argument(arg: &str) -> String {
    quote(&arg.replace('$', "$$"))
}

/// One word of `ExecStart=` as systemd splits it: `%` starts a specifier
/// everywhere, and a word with whitespace, quotes or backslashes is
/// double-quoted, inside which `\` escapes.
fn quote(word: &str) -> String {
    let word = word.replace('%', "%%");
    let plain = !word.is_empty()
        && !word.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if plain {
        word
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_file() {
        insta::assert_snapshot!(
            "unit_file",
            render(&super::super::tests::example()).unwrap()
        );
    }

    #[test]
    fn quotes_words_for_exec_start() {
        assert_eq!(argument("/usr/bin/tfmirror"), "/usr/bin/tfmirror");
        assert_eq!(argument("/a b"), "\"/a b\"");
        assert_eq!(argument(r#"/a"b\c"#), r#""/a\"b\\c""#);
        assert_eq!(argument("/it's"), "\"/it's\"");
        assert_eq!(argument("/100%/$HOME"), "/100%%/$$HOME");
        assert_eq!(argument(""), "\"\"");
    }

    #[test]
    fn takes_the_executable_literally_where_systemd_can() {
        assert_eq!(executable("/a b/$x 100%").unwrap(), "\"/a b/$x 100%%\"");
        assert!(executable("/it's/tfmirror").is_err());
        assert!(executable(r"/a\b/tfmirror").is_err());
    }
}
