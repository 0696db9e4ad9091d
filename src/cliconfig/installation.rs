//! The `provider_installation` block `exec` writes for the fast path:
//! locked providers from tfmirror's unpacked tree, everything else through
//! the registry hosts as before.

use std::path::PathBuf;

/// Providers Terraform installs from an unpacked `filesystem_mirror`: it
/// hashes each directory against the lock file's `h1:` and symlinks it,
/// instead of downloading and unpacking a zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesystemMirror {
    /// The tree's root, absolute.
    pub path: PathBuf,
    /// Provider addresses (`registry.terraform.io/hashicorp/aws`), each of
    /// which Terraform then looks for only in the tree.
    pub include: Vec<String>,
}

/// `provider_installation { filesystem_mirror { ... } direct { exclude } }`.
///
/// `direct` excludes exactly what the mirror includes, so every other
/// provider is installed as without the mirror: through the `host` blocks,
/// with the registry's `zh:` for every platform in a new lock entry.
pub(super) fn write_installation_block(out: &mut String, mirror: &FilesystemMirror) {
    let list = |addresses: &[String]| {
        let quoted: Vec<String> = addresses.iter().map(|a| super::render::quoted(a)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let path = super::render::quoted(&mirror.path.to_string_lossy());
    let include = list(&mirror.include);
    out.push_str(&format!(
        "provider_installation {{\n  filesystem_mirror {{\n    path    = {path}\n    include = {include}\n  }}\n  direct {{\n    exclude = {include}\n  }}\n}}\n"
    ));
}
