//! `tfmirror cache <verb>`: managing what the cache holds.

pub mod import;

#[derive(clap::Subcommand)]
pub enum CacheAction {
    /// Import the provider zips of a `terraform providers mirror DIR`
    /// directory (the packed layout: `HOST/NAMESPACE/TYPE/*.zip`), checked
    /// against the hashes in its `<version>.json` files.
    Import {
        /// The directory `terraform providers mirror` wrote.
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}
