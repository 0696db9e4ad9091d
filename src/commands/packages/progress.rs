//! What the user sees while packages are fetched.

use crate::human_size::human_bytes;

use super::fetch::{Fetched, PackageFetchError};
use super::platform::PackageId;

/// A line per package, or a bar (see [`crate::commands::progress`]).
pub(super) struct Progress(crate::commands::progress::Progress);

impl Progress {
    pub(super) fn new(total: u64) -> Progress {
        Progress(crate::commands::progress::Progress::new(total, "packages"))
    }

    pub(super) fn done(&self, package: &PackageId, result: &Result<Fetched, PackageFetchError>) {
        let line = match result {
            Ok(f) if f.was_cached => format!("cached      {package}"),
            Ok(f) => format!("downloaded  {package} ({})", human_bytes(f.bytes)),
            Err(e) => format!("tfmirror: {package}: {e}"),
        };
        self.0
            .done(&package.to_string(), Some(line), result.is_err());
    }

    pub(super) fn finish(&self) {
        self.0.finish();
    }
}
