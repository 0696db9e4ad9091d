//! `tfmirror env`: the `export` lines that point git at the running
//! server's mirrors, for a shell that runs terraform without `exec`.

use std::path::Path;

use crate::config::Config;

pub async fn run(cache_dir: &Path, config: &Config) -> anyhow::Result<i32> {
    let Some(server) = super::require_server(cache_dir).await else {
        return Ok(1);
    };
    for (name, value) in super::git_config_env(config, &server.url, |name| std::env::var(name).ok())
    {
        println!("export {name}={}", shell_quote(&value));
    }
    Ok(0)
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
}
