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
        let base = mirror_base(&server);
        if !base.starts_with("https://") {
            eprintln!("tfmirror: {}", plain_http_text(&base));
            return Ok(1);
        }
        super::render_network_mirror_config(cache_dir, &base, Tokens::Omit)?
    } else {
        super::render_cli_config(config, cache_dir, &server.url, Tokens::Omit)?
    };
    print!("{}", rendered.text);
    Ok(0)
}

/// Why `rc --network-mirror` prints no config for a server at `base`:
/// Terraform refuses a `network_mirror` that is not HTTPS, so the config
/// would only fail at the next `init`.
fn plain_http_text(base: &str) -> String {
    format!(
        "Terraform reaches a network mirror over HTTPS only, and this cache's server serves \
         {base}; start it with `tfmirror serve --tls-cert FILE --tls-key FILE`, or run \
         `tfmirror rc` without --network-mirror for a config that works over plain HTTP"
    )
}

/// A team server's network mirror is for its clients, at its public URL
/// (they authenticate with a token); otherwise it is the owner's own.
fn mirror_base(server: &Health) -> String {
    match &server.server.public_url {
        Some(public) => public.clone(),
        None => server.url.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_mirror_is_refused_with_the_way_to_https() {
        insta::assert_snapshot!(plain_http_text("http://127.0.0.1:41234"));
    }
}
