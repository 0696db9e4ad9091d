//! The audit log: one JSON line per upstream fetch (and per `[policy]`
//! refusal), saying what was fetched, for which run and client, from
//! which URL (redacted), its size and sha256, how it was verified, and
//! what became of it.
//!
//! Lines are written off the runtime: [`AuditLog::write`] only sends the
//! record down a channel to one writer thread, which appends it to the
//! file (see [`file`]) or to stderr. A line that cannot be written is not
//! lost silently: it is logged whole in one WARN and counted in
//! `tfmirror_audit_write_failures_total`.
//!
//! Only fetches from an upstream are recorded. A cache hit is none, and
//! neither is a copy read from the `[shared]` tier: that copy was fetched
//! from the upstream once, by the server that recorded it in its own log.

mod file;
mod record;
mod redact;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

pub use file::files_oldest_first;
pub use record::{Kind, Record, Requester};

/// Where the log goes: a file, rotated by size, or stderr (`path = "-"`),
/// for a container whose log collector ships it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    File(PathBuf),
    Stderr,
}

/// `[audit]` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// `None`: `<cache>/audit.jsonl`.
    pub path: Option<AuditTarget>,
    /// A file past this size is rotated before the next line.
    pub max_size: u64,
    /// Rotated files kept (`audit.jsonl.1` ... `audit.jsonl.<keep>`).
    pub keep: usize,
}

/// The default file name below the cache directory, which the cache's
/// layout counts as bookkeeping, never an artifact.
pub const DEFAULT_FILE: &str = crate::store::layout::AUDIT_LOG;

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            max_size: 64 << 20,
            keep: 5,
        }
    }
}

impl AuditConfig {
    /// Where the log of the cache at `cache_dir` goes.
    pub fn target(&self, cache_dir: &Path) -> AuditTarget {
        self.path
            .clone()
            .unwrap_or_else(|| AuditTarget::File(cache_dir.join(DEFAULT_FILE)))
    }
}

tokio::task_local! {
    /// Who the request being served on this task is from.
    static REQUESTER: Requester;
}

/// Runs `handling`, a request's handling, with its `requester` known to
/// [`current_requester`]: for fetches made far below the handlers, through
/// calls that take no request context (git mirrors, whose fetch a clone,
/// a resolution or an archive may cause). Everything else passes the
/// requester along with `upstream::Forwarded`.
pub async fn serving<F: std::future::Future>(requester: Requester, handling: F) -> F::Output {
    REQUESTER.scope(requester, handling).await
}

/// The requester of the request this task serves; nobody's on a task of
/// its own (a background refresh), which serves no request.
pub fn current_requester() -> Requester {
    REQUESTER.try_with(Clone::clone).unwrap_or_default()
}

enum Message {
    Line(Box<Record>),
    /// Answered once every line sent before it is written.
    Flush(mpsc::SyncSender<()>),
}

/// The sending end of the audit log, cheap to clone. The default one
/// records nothing: for tests and tools that fetch nothing for a client.
#[derive(Clone, Default)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<Message>>,
}

impl AuditLog {
    /// Starts the writer thread for `config`'s log of the cache at
    /// `cache_dir`. The thread ends when the last [`AuditLog`] is dropped.
    pub fn start(config: &AuditConfig, cache_dir: &Path) -> std::io::Result<AuditLog> {
        let target = config.target(cache_dir);
        let mut sink = match &target {
            AuditTarget::File(path) => Sink::File(file::LogFile::new(
                path.clone(),
                config.max_size,
                config.keep,
            )),
            AuditTarget::Stderr => Sink::Stderr,
        };
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("tfmirror-audit".to_owned())
            .spawn(move || {
                for message in receiver {
                    match message {
                        Message::Line(record) => sink.write(&target, &record),
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(AuditLog {
            sender: Some(sender),
        })
    }

    /// Queues `record` for writing; never blocks.
    pub fn write(&self, record: Record) {
        let Some(sender) = &self.sender else {
            return;
        };
        if let Err(mpsc::SendError(Message::Line(record))) =
            sender.send(Message::Line(Box::new(record)))
        {
            lost(&"the audit writer has stopped", &record);
        }
    }

    /// Waits until every line written before this call is on its way to
    /// the file: at shutdown, so that the last fetches are recorded.
    /// Blocks, so off the runtime's threads.
    pub fn flush(&self) {
        let Some(sender) = &self.sender else {
            return;
        };
        let (done, written) = mpsc::sync_channel(1);
        if sender.send(Message::Flush(done)).is_ok() {
            let _ = written.recv();
        }
    }
}

enum Sink {
    File(file::LogFile),
    Stderr,
}

impl Sink {
    fn write(&mut self, target: &AuditTarget, record: &Record) {
        let mut line = serde_json::to_string(record).expect("a record serializes");
        line.push('\n');
        let written = match self {
            Sink::File(file) => file.append(line.as_bytes()),
            // One write of the whole line under the lock, between the
            // lines the server logs there.
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
        };
        if let Err(e) = written {
            let why = match target {
                AuditTarget::File(path) => format!("cannot write {}: {e}", path.display()),
                AuditTarget::Stderr => format!("cannot write to stderr: {e}"),
            };
            lost(&why, record);
        }
    }
}

/// One WARN carrying the line that could not be written, and the count.
fn lost(why: &dyn std::fmt::Display, record: &Record) {
    crate::metrics::AUDIT_WRITE_FAILURES.inc();
    let line = serde_json::to_string(record).expect("a record serializes");
    tracing::warn!("audit log: {why}; the line was: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines written from many tasks arrive whole and all of them, in the
    /// file the config names; `flush` returns once they are there.
    #[test]
    fn lines_reach_the_file_through_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(&AuditConfig::default(), dir.path()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        let name = format!("{t}/{n}");
                        log.write(Record::new(&Requester::default(), Kind::GitFetch, name));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        log.flush();
        let text = std::fs::read_to_string(dir.path().join(DEFAULT_FILE)).unwrap();
        let records: Vec<Record> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(records.len(), 200);
    }

    /// A line that cannot be written is counted, not dropped silently.
    #[test]
    fn a_failing_write_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let config = AuditConfig {
            path: Some(AuditTarget::File(blocker.join("audit.jsonl"))),
            ..AuditConfig::default()
        };
        let log = AuditLog::start(&config, dir.path()).unwrap();
        let before = crate::metrics::AUDIT_WRITE_FAILURES.get();
        log.write(Record::new(&Requester::default(), Kind::GitFetch, "x"));
        log.flush();
        assert!(crate::metrics::AUDIT_WRITE_FAILURES.get() > before);
    }
}
