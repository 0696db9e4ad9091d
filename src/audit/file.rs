//! The audit log on disk: whole lines appended, rotated by size.
//!
//! Each line is one `write(2)` on a file opened with `O_APPEND`, so lines
//! from several writers (a second process pointed at the same file) land
//! whole, one after another, never interleaved. Rotation renames
//! `audit.jsonl` to `audit.jsonl.1`, `.1` to `.2`, and so on, dropping the
//! one past `keep`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The appending end of one audit log file.
pub struct LogFile {
    path: PathBuf,
    /// Past this size, the file is rotated before the next line.
    max_size: u64,
    /// Rotated files kept; 0 keeps none (the file starts over).
    keep: usize,
    file: Option<File>,
}

impl LogFile {
    pub fn new(path: PathBuf, max_size: u64, keep: usize) -> LogFile {
        LogFile {
            path,
            max_size,
            keep,
            file: None,
        }
    }

    /// Appends `line` (ending in `\n`) with one write, rotating first if it
    /// would take the file past `max_size`. A file that is empty takes the
    /// line whatever its size: a line is never split or dropped for size.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let size = self.open()?.metadata()?.len();
        if size > 0 && size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        let file = self.open()?;
        let written = file.write(line)?;
        if written != line.len() {
            // Only a full disk or a signal does this to a regular file;
            // the rest must not be written by a second call, which another
            // writer's line could precede.
            return Err(io::Error::other(format!(
                "wrote {written} of {} bytes",
                line.len()
            )));
        }
        Ok(())
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(parent) = self.path.parent() {
                fs::create_dir_all(parent)?;
            }
            // 0600: the log names what a team fetched, and which runs.
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Shifts the rotated files up by one and starts a new file. Another
    /// process may have rotated a moment ago: a file that is not there is
    /// skipped.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            return ignore_missing(fs::remove_file(&self.path));
        }
        ignore_missing(fs::remove_file(rotated(&self.path, self.keep)))?;
        for n in (1..self.keep).rev() {
            ignore_missing(fs::rename(
                rotated(&self.path, n),
                rotated(&self.path, n + 1),
            ))?;
        }
        ignore_missing(fs::rename(&self.path, rotated(&self.path, 1)))
    }
}

/// The `n`th rotated file of `path`: `audit.jsonl.1` is the newest.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The log's files that exist, oldest first: the rotated ones from the
/// highest number down, then `path` itself.
pub fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|file| file.exists())
        .collect();
    files.reverse();
    if path.exists() {
        files.push(path.to_owned());
    }
    files
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_full_file_is_rotated_and_only_keep_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = LogFile::new(path.clone(), 10, 2);
        for n in 0..5 {
            log.append(format!("line {n}\n").as_bytes()).unwrap();
        }
        assert_eq!(lines(&path), ["line 4"]);
        assert_eq!(lines(&rotated(&path, 1)), ["line 3"]);
        assert_eq!(lines(&rotated(&path, 2)), ["line 2"]);
        assert!(!rotated(&path, 3).exists(), "keep = 2");
        assert_eq!(
            files_oldest_first(&path),
            [rotated(&path, 2), rotated(&path, 1), path.clone()]
        );
    }

    #[test]
    fn keep_zero_starts_the_file_over_and_a_long_line_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = LogFile::new(path.clone(), 4, 0);
        log.append(b"a much longer line\n").unwrap();
        assert_eq!(lines(&path), ["a much longer line"]);
        log.append(b"b\n").unwrap();
        assert_eq!(lines(&path), ["b"]);
        assert_eq!(files_oldest_first(&path), vec![path]);
    }

    /// Writers with their own file handles, as two processes would have,
    /// append at once: every line arrives whole.
    #[test]
    fn concurrent_appends_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut log = LogFile::new(path, u64::MAX, 1);
                    for n in 0..500 {
                        let line = format!("{writer}:{n}:{}\n", "x".repeat(500 + n));
                        log.append(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let lines = lines(&path);
        assert_eq!(lines.len(), 2000);
        for line in lines {
            let mut parts = line.split(':');
            let (_, n, body) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
            let n: usize = n.parse().unwrap();
            assert_eq!(body, "x".repeat(500 + n), "a line arrived whole");
            assert!(parts.next().is_none());
        }
    }
}
