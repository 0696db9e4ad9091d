//! `tfmirror rc`: print the CLI config for the running server.

use std::path::Path;

use crate::cliconfig;
use crate::config::{self, Config};

pub async fn run(cache_dir: &Path, config: &Config) -> anyhow::Result<i32> {
    let Some(server) = super::require_server(cache_dir).await else {
        return Ok(1);
    };
    let user = cliconfig::find_user_config(
        std::env::var_os("TF_CLI_CONFIG_FILE").as_deref(),
        config::home_dir().as_deref(),
    )?;
    let rendered = cliconfig::render(&super::host_services(config, &server.url), user.as_ref());
    print!("{}", rendered.text);
    Ok(0)
}
