//! `tfmirror env`: the `export` lines that point Terraform, OpenTofu and
//! git at the running server, for a shell that runs them without `exec`.
//!
//! Terraform is pointed at the cache's persistent CLI config (see
//! `terraform_rc_path`: outside the cache, mode 0600), which every server
//! rewrites as it starts, so that export outlives a restart. The git
//! variables name the server's address and secret, which a restarted
//! server changes: run `eval "$(tfmirror env)"` again after one.
//!
//! A server that a command started on a port the system picked exits when
//! idle, and the next one listens elsewhere: exports of its address would
//! die with it, so `env` refuses one and says how to get a lasting server.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;

pub async fn run(cache_dir: &Path, config: &Config) -> anyhow::Result<i32> {
    let Some(server) = super::require_server(cache_dir).await else {
        return Ok(1);
    };
    if let Some(idle_timeout) = server.server.ephemeral() {
        eprintln!(
            "tfmirror: {}",
            ephemeral_text(server.server.pid, &server.server.url, idle_timeout)
        );
        return Ok(1);
    }
    let terraform_rc = super::terraform_rc_path(&server.server.cache_dir);
    let terraform_rc = terraform_rc.to_string_lossy();
    let cli_config = ["TF_CLI_CONFIG_FILE", "TOFU_CLI_CONFIG_FILE"]
        .map(|name| (name.to_owned(), terraform_rc.clone().into_owned()));
    let git = super::git_config_env(config, &server.url, &[], |name| std::env::var(name).ok());
    for (name, value) in cli_config.into_iter().chain(git) {
        println!("export {name}={}", shell_quote(&value));
    }
    Ok(0)
}

/// Why `env` refuses a server whose address dies with it, and the two
/// ways to a lasting one, in one line.
fn ephemeral_text(pid: u32, url: &str, idle_timeout: Duration) -> String {
    format!(
        "the server for this cache (pid {pid}, {url}) listens on a random port and exits after \
         {} without clients, so exports of its address would stop working; run \
         `tfmirror service install` for a server on a fixed address, or set a fixed `listen` in \
         tfmirror's config and `tfmirror stop` this one",
        humantime::format_duration(idle_timeout)
    )
}

/// Single quotes keep every character literal; a single quote itself is
/// closed, escaped and reopened.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_a_posix_shell() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn an_ephemeral_server_is_refused_in_one_line() {
        let text = ephemeral_text(4242, "http://127.0.0.1:41234", Duration::from_secs(15 * 60));
        assert!(!text.contains('\n'));
        insta::assert_snapshot!(text);
    }
}
