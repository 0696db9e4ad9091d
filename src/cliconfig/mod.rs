//! The Terraform CLI configuration that points Terraform and OpenTofu at
//! tfmirror.
//!
//! tfmirror routes registry traffic through itself with `host` blocks, which
//! replace service discovery for a hostname and accept a plain
//! `http://127.0.0.1:PORT/` URL (see DESIGN.md, "How Terraform is pointed at
//! it"). `tfmirror rc` prints the file and `tfmirror exec` points
//! `TF_CLI_CONFIG_FILE` (and `TOFU_CLI_CONFIG_FILE`) at it. Terraform then
//! reads that one file and nothing else: not `~/.terraformrc`, and not the
//! `~/.terraform.d/*.tfrc` files where `terraform login` keeps tokens;
//! OpenTofu likewise skips `~/.tofurc`. So the generated file carries the
//! user's own settings along, all but the `host` blocks it replaces, whose
//! services tfmirror then uses as that host's upstream (`routing`).
//!
//! - `locations`: where Terraform and OpenTofu look for their config files.
//! - `user`: reads the user's config from those files.
//! - `routing`: what the user's config says about routing: `host` blocks
//!   (tfmirror's upstream for that host) and `provider_installation`
//!   mirrors (which bypass tfmirror).
//! - `hcl1`: checks HCL 1 syntax (Terraform's CLI config is HCL 1, not
//!   HCL 2) and splits a file into top-level items, so that kept settings
//!   are copied byte for byte.
//! - `json`: turns JSON-syntax files (`*.tfrc.json`) into native syntax.
//! - `render`: writes the generated file.
//! - `installation`: the `provider_installation` block of `exec`'s fast
//!   path.
//!
//! The user's config and the rendered text hold credentials, so their
//! `Debug` output shows paths and sizes only.

mod hcl1;
mod installation;
mod json;
mod locations;
mod render;
mod routing;
mod user;

use std::fmt;
use std::path::PathBuf;

pub use installation::FilesystemMirror;
pub use locations::{Program, TOFU_CLI_CONFIG_FILE};
pub use render::{names_host_block, render, render_exec, render_network_mirror, Tokens};
pub use routing::{Bypass, UserHost};
pub use user::{find_user_config, UserConfig};

/// One registry host routed through tfmirror and the service URLs Terraform
/// should use for it.
///
/// A `host` block replaces the host's whole discovery document, so
/// `services` must list every service Terraform may need there, e.g.
/// `("providers.v1", url)` and `("modules.v1", url)`; they are written in
/// this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostServices {
    pub host: String,
    pub services: Vec<(String, String)>,
}

/// The generated CLI config.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The file's text. It holds the user's credentials: write it only to a
    /// 0600 file or to stdout.
    pub text: String,
    /// User settings the generated file replaces, e.g.
    /// `host "registry.terraform.io"`, to show the user in one stderr line.
    /// Blocks that tfmirror itself wrote earlier are replaced silently.
    pub overridden: Vec<String>,
    /// User settings left out without a replacement (`plugin_cache_dir`
    /// for `exec`), likewise to show in one line.
    pub left_out: Vec<String>,
}

/// The text holds credentials, which must not reach logs.
impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("overridden", &self.overridden)
            .field("left_out", &self.left_out)
            .finish()
    }
}

/// Why the user's CLI config could not be carried into the generated file.
///
/// Refusing is safer than dropping a file Terraform would have read: its
/// credentials or provider_installation would silently stop applying.
#[derive(Debug, thiserror::Error)]
pub enum CliConfigError {
    #[error("cannot read Terraform CLI config {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot parse Terraform CLI config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}
