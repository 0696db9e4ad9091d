//! `tfmirror cache <verb>`: managing what the cache holds.

pub mod import;
mod inventory;
pub mod list;
pub mod push;
pub mod remove;
pub mod stats;

#[derive(clap::Subcommand)]
pub enum CacheAction {
    /// Import the provider zips of a `terraform providers mirror DIR`
    /// directory (the packed layout: `HOST/NAMESPACE/TYPE/*.zip`). The
    /// server stores a zip only if the registry's signed SHA256SUMS lists
    /// it, or, when the registry cannot answer, if a `--lock-file` holds
    /// its hash.
    Import {
        /// The directory `terraform providers mirror` wrote.
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
        /// A `.terraform.lock.hcl` whose `zh:`/`h1:` hashes vouch for the
        /// zips when the registry cannot; repeatable.
        #[arg(long = "lock-file", value_name = "FILE")]
        lock_files: Vec<std::path::PathBuf>,
    },
    /// One row per cached artifact: kind, size, last use, uses, name.
    List {
        /// Only artifacts of this kind.
        #[arg(long)]
        kind: Option<crate::catalog::Kind>,
        /// Only artifacts whose name or path matches this glob,
        /// e.g. `*hashicorp/aws*`.
        #[arg(long, value_name = "GLOB")]
        filter: Option<String>,
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove artifacts unused for long, then the least valuable while the
    /// cache is over a size; never one stored or used within `gc_min_age`.
    Gc {
        /// Shrink the cache to this size, e.g. `10GB` [default: the
        /// config's `gc_max_size`, else no limit].
        #[arg(long, value_name = "SIZE", value_parser = crate::config::parse_size)]
        max_size: Option<u64>,
        /// Remove what was unused this long [default: the config's
        /// `gc_unused_for`, else 30d].
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        unused_for: Option<std::time::Duration>,
        /// Keep what was stored or used this recently, e.g. `0s` to let
        /// everything go [default: the config's `gc_min_age`, else 12h].
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        min_age: Option<std::time::Duration>,
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// What was (or would be) removed as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove the artifacts a name names: `hashicorp/aws` (every version,
    /// on registry.terraform.io and registry.opentofu.org),
    /// `registry.terraform.io/hashicorp/aws 5.89.0` (one version), a name
    /// as `cache list` shows it, a path, or a glob over names and paths.
    Delete {
        /// e.g. `hashicorp/aws 5.89.0` or `*hashicorp/aws 5.89.0 linux_*`
        #[arg(value_name = "NAME|PATH|GLOB")]
        pattern: String,
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// What was (or would be) removed as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Drop cached registry metadata (version lists, discovery) older than
    /// DURATION [default: past its stale window]; artifacts stay.
    Prune {
        /// Drop what was fetched longer ago than this, e.g. `7d`.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Only count what would be dropped.
        #[arg(long)]
        dry_run: bool,
        /// What was (or would be) dropped as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Upload the cached provider packages, checksums, module archives and
    /// git archives to the shared tier (`[shared]` in the config), skipping
    /// what the bucket already holds; e.g. after `warm`, to seed a fleet.
    Push {
        /// Only show what would be uploaded.
        #[arg(long)]
        dry_run: bool,
    },
    /// Total size, counts and bytes per kind, the largest artifacts.
    Stats {
        /// A JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

impl CacheAction {
    /// Whether the action only reads and prints, so that a reader closing
    /// the pipe early (`| head`) may simply end it.
    pub fn only_prints(&self) -> bool {
        matches!(self, CacheAction::List { .. } | CacheAction::Stats { .. })
    }
}
