//! `tfmirror rc`: print the CLI config for the running server.

use std::path::Path;

use crate::config::Config;

/// With `network_mirror`, providers come from the server's network mirror
/// (`provider_installation`) instead of through `host` blocks.
pub async fn run(cache_dir: &Path, config: &Config, network_mirror: bool) -> anyhow::Result<i32> {
    let Some(server) = super::require_server(cache_dir).await else {
        return Ok(1);
    };
    let rendered = if network_mirror {
        if server.url.starts_with("http://") {
            eprintln!(
                "tfmirror: Terraform uses a network mirror over HTTPS only; \
                 start the server with --tls-cert and --tls-key"
            );
        }
        super::render_network_mirror_config(cache_dir, &server.url)?
    } else {
        super::render_cli_config(config, cache_dir, &server.url)?
    };
    print!("{}", rendered.text);
    Ok(0)
}
