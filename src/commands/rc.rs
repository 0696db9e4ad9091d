//! `tfmirror rc`: print the CLI config for the running server.

use std::path::Path;

use crate::config::Config;

pub async fn run(cache_dir: &Path, config: &Config) -> anyhow::Result<i32> {
    let Some(server) = super::require_server(cache_dir).await else {
        return Ok(1);
    };
    let rendered = super::render_cli_config(config, cache_dir, &server.url)?;
    print!("{}", rendered.text);
    Ok(0)
}
