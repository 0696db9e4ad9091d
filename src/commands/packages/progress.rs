//! What the user sees while packages are fetched.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::fetch::{Fetched, PackageFetchError};
use super::platform::PackageId;

/// A progress bar on a terminal; elsewhere (CI logs, pipes) a plain line
/// per package, which a log keeps and a bar would garble.
pub(super) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub(super) fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let style = ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} packages, {elapsed} {wide_msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            let bar = ProgressBar::new(total).with_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }

    /// Failures are printed either way; successes only without a bar.
    pub(super) fn done(&self, package: &PackageId, result: &Result<Fetched, PackageFetchError>) {
        let line = match result {
            Ok(f) if f.was_cached => format!("cached      {package}"),
            Ok(f) => format!("downloaded  {package} ({})", HumanBytes(f.bytes)),
            Err(e) => format!("tfmirror: {package}: {e}"),
        };
        match &self.bar {
            Some(bar) => {
                if result.is_err() {
                    bar.println(line);
                }
                bar.set_message(package.to_string());
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
