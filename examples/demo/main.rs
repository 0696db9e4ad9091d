//! `cargo run --example demo`: tfmirror tried with no registry access. The test suite's fake
//! registry (signed provider packages and a registry module) stands in for
//! registry.terraform.io on 127.0.0.1; the installed `tfmirror exec -- terraform init` runs
//! twice in a small root module, with an empty cache and then a warm one; the demo prints
//! what each run took and said, and leaves its directory to look at.
//!
//! An example rather than a `tfmirror demo` subcommand: the fake registry and its test
//! signing keys stay out of the binary users install. `tests/e2e/demo.rs` runs the same code.

#[path = "../../tests/fixtures/mod.rs"]
mod fixtures;
mod report;
mod sandbox;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;

use sandbox::{Demo, Tools};

#[derive(Parser)]
#[command(about = "Tries tfmirror against a fake registry on 127.0.0.1: no network needed")]
struct Args {
    /// Where the demo's files go; it must be empty or not exist [default: a new directory
    /// under the system's temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The tfmirror to try [default: `tfmirror` on PATH, which `cargo install --locked
    /// --path .` puts in ~/.cargo/bin].
    #[arg(long, value_name = "PATH", env = "TFMIRROR_BIN")]
    tfmirror: Option<PathBuf>,
    /// The terraform binary [default: `terraform` on PATH].
    #[arg(long, value_name = "PATH")]
    terraform: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tools = Tools {
        tfmirror: tool(
            args.tfmirror,
            "tfmirror",
            "install it from this clone with `cargo install --locked --path .` (into \
             ~/.cargo/bin, which must be on PATH), or pass --tfmirror PATH",
        )?,
        terraform: tool(
            args.terraform,
            "terraform",
            "install Terraform, or pass --terraform PATH",
        )?,
    };
    let dir = match args.dir {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("tfmirror-demo-")
            .tempdir()
            .context("create a temporary directory")?
            .keep(),
    };
    let demo = Demo::start(tools, &dir)?;
    demo.play(&mut std::io::stdout())?;
    Ok(())
}

/// `given`, else `name` on PATH; when neither is there, says how to get it (`missing`).
fn tool(given: Option<PathBuf>, name: &str, missing: &str) -> Result<PathBuf> {
    match given.or_else(|| on_path(name)) {
        // Absolute: the demo runs it from its own working directories.
        Some(path) if path.is_file() => Ok(std::path::absolute(path)?),
        Some(path) => bail!("{} does not exist", path.display()),
        None => bail!("{name} is not on PATH: {missing}"),
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
