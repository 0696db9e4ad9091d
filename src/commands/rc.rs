//! `tfmirror rc`: print the CLI config for the running server. The URLs
//! carry the server's secret, as they must to be let in; the user's
//! registry tokens are left out: printed text ends up in terminals, logs
//! and tickets.

use std::path::Path;

use super::Health;
use crate::cliconfig::Tokens;
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
        super::render_network_mirror_config(cache_dir, &mirror_base(&server), Tokens::Omit)?
    } else {
        super::render_cli_config(config, cache_dir, &server.url, Tokens::Omit)?
    };
    print!("{}", rendered.text);
    Ok(0)
}

/// A team server's network mirror is for its clients, at its public URL
/// (they authenticate with a token); otherwise it is the owner's own.
fn mirror_base(server: &Health) -> String {
    match &server.server.public_url {
        Some(public) => public.clone(),
        None => server.url.clone(),
    }
}
