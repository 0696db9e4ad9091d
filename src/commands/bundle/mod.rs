//! `tfmirror bundle <verb>`: the closure of runs as one file (see
//! `crate::bundle` for the format).

pub mod create;
pub mod import;
pub mod inspect;

use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum BundleAction {
    /// Run a command (e.g. `terraform init`) as `exec` does and write all
    /// it was served, with the lock file's provider packages for this
    /// machine and each --platform, as one bundle file.
    Create {
        #[command(flatten)]
        args: create::CreateArgs,
    },
    /// Check a bundle whole (as verify does) and store it in the cache,
    /// through the server that owns it; a bad entry refuses all of it
    /// and nothing is stored.
    Import {
        /// The bundle file, as `bundle create` wrote it.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print a bundle's manifest: kind, size and name of every entry.
    List {
        /// The bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The manifest as it is, JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read the whole bundle and check every entry's size and sha256, that
    /// it holds exactly the manifest's entries, and every provider zip
    /// against its signed SHA256SUMS (exit 1 naming the first bad entry).
    Verify {
        /// The bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

impl BundleAction {
    /// Whether the command only prints (see `main::only_prints`).
    pub fn only_prints(&self) -> bool {
        matches!(self, BundleAction::List { .. })
    }
}

/// A bundle's bytes are counted in megabytes (decimal, as every size
/// tfmirror shows: `human_size`) for the progress display
/// of create and import, shown for bundles over [`PROGRESS_FROM`].
pub const PROGRESS_STEP: u64 = 1_000_000;
pub const PROGRESS_FROM: u64 = 4_000_000;
