//! Relaying what the server logged during one `exec` run.
//!
//! Terraform shows only "502 Bad Gateway" for a refused download; the
//! reason (a checksum mismatch, a missing ref) is in the server's log. A
//! background server writes that log to `<cache>/server.log`, so `exec`
//! notes where the log ends before the command runs and afterwards repeats
//! the warnings and errors added since. With several runs at once, the
//! lines of the others show up too; each line names what it is about.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

pub struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    pub fn from_end(path: PathBuf) -> LogTail {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogTail { path, offset }
    }

    /// Warnings and errors logged since [`LogTail::from_end`], without
    /// their timestamps.
    pub fn warnings(&self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A log rotated in the meantime starts over.
        let offset = if len < self.offset { 0 } else { self.offset };
        let mut text = String::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_string(&mut text).is_err() {
            return Vec::new();
        }
        text.lines().filter_map(warning).collect()
    }
}

/// `2026-01-01T00:00:00.000000Z ERROR refusing x: ...` → `ERROR refusing x: ...`
fn warning(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(' ')?;
    let rest = rest.trim_start();
    (rest.starts_with("WARN") || rest.starts_with("ERROR")).then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_only_new_warnings_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::layout::SERVER_LOG);
        std::fs::write(&path, "2026-01-01T00:00:00Z ERROR old\n").unwrap();
        let tail = LogTail::from_end(path.clone());
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(
            &mut log,
            b"2026-01-01T00:00:01Z  INFO stored x\n2026-01-01T00:00:02Z  WARN served stale\n2026-01-01T00:00:03Z ERROR refusing y: bad\n",
        )
        .unwrap();
        assert_eq!(
            tail.warnings(),
            ["WARN served stale", "ERROR refusing y: bad"]
        );
    }
}
