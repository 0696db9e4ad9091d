//! `tfmirror audit`: the audit log of upstream fetches, as a table or as
//! its JSON lines. Reads the files themselves, rotated ones first, so it
//! works whether or not a server runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Args;

use crate::audit::{files_oldest_first, AuditConfig, AuditTarget, Record};
use crate::human_size::human_bytes;

#[derive(Args)]
pub struct AuditArgs {
    /// Only what was fetched within this long (e.g. `24h`, `7d`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Print the log's JSON lines as they are stored.
    #[arg(long)]
    json: bool,
}

/// Why the log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditReadError {
    #[error("the audit log goes to stderr ([audit] path = \"-\"); there is no file to read")]
    Stderr,
    #[error("cannot read the audit log {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub async fn run(cache_dir: &Path, config: &AuditConfig, args: AuditArgs) -> anyhow::Result<i32> {
    let AuditTarget::File(path) = config.target(cache_dir) else {
        return Err(AuditReadError::Stderr.into());
    };
    let since = args.since.map(|age| {
        SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    });
    let log = tokio::task::spawn_blocking(move || read(&path, since)).await??;
    if log.unreadable > 0 {
        tracing::warn!(
            "skipped {} line(s) of the audit log that are not audit records",
            log.unreadable
        );
    }
    if args.json {
        for (line, _) in &log.entries {
            println!("{line}");
        }
    } else {
        let records: Vec<&Record> = log.entries.iter().map(|(_, record)| record).collect();
        print!("{}", table(&records));
    }
    Ok(0)
}

/// The lines of the log, oldest first, each with its record.
struct Log {
    entries: Vec<(String, Record)>,
    /// Lines that are not records (a line cut short by a crash).
    unreadable: usize,
}

/// Reads the log at `path` and its rotated files, keeping the records at
/// or after `since`.
fn read(path: &Path, since: Option<SystemTime>) -> Result<Log, AuditReadError> {
    let mut log = Log {
        entries: Vec::new(),
        unreadable: 0,
    };
    for file in files_oldest_first(path) {
        // Read line by line: the log and its rotated files may be tens of
        // MB each, and only the lines kept need holding.
        let reader = match std::fs::File::open(&file) {
            Ok(opened) => std::io::BufReader::new(opened),
            // Rotated away between listing and reading: its lines are in
            // the next file now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(AuditReadError::Read { path: file, source }),
        };
        for line in std::io::BufRead::lines(reader) {
            let line = line.map_err(|source| AuditReadError::Read {
                path: file.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let Ok(record) = serde_json::from_str::<Record>(&line) else {
                log.unreadable += 1;
                continue;
            };
            let time = humantime::parse_rfc3339(&record.time).ok();
            if since.is_some_and(|since| time.is_none_or(|time| time < since)) {
                continue;
            }
            log.entries.push((line, record));
        }
    }
    Ok(log)
}

/// One row per record: time (to the second), run, client, kind, size,
/// name, and the outcome last, as a failure's reason may be long.
fn table(records: &[&Record]) -> String {
    let dash = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|record| {
            [
                record
                    .time
                    .get(..19)
                    .unwrap_or(&record.time)
                    .replace('T', " "),
                dash(record.run.as_deref()),
                dash(record.client.as_deref()),
                record.kind.as_str().to_owned(),
                record.bytes.map_or_else(|| "-".to_owned(), human_bytes),
                record.name.clone(),
                record.outcome_text(),
            ]
        })
        .collect();
    let header = ["TIME", "RUN", "CLIENT", "KIND", "SIZE", "NAME", "OUTCOME"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| match column {
                4 => format!("{cell:>width$}"),
                6 => cell.clone(),
                _ => format!("{cell:<width$}"),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Kind, Requester};

    fn record(time: &str, kind: Kind, name: &str) -> Record {
        let requester = Requester {
            run: Some("4f2a".to_owned()),
            client: Some("Terraform/1.11.4".to_owned()),
        };
        Record {
            time: time.to_owned(),
            ..Record::new(&requester, kind, name)
        }
    }

    #[test]
    fn the_table_has_one_row_a_fetch() {
        let zip = record(
            "2026-11-30T15:50:07.123Z",
            Kind::ProviderPackage,
            "registry.terraform.io/hashicorp/aws 5.1.0 linux_amd64",
        )
        .hashed(24_500_000, "ab".repeat(32))
        .verified("sha256 from SHA256SUMS");
        let git = Record {
            run: None,
            client: None,
            ..record(
                "2026-11-30T15:50:09.001Z",
                Kind::GitFetch,
                "https://github.com/org/infra.git",
            )
        }
        .failed("cannot fetch https://github.com/org/infra.git: connection refused");
        let refused = Record::refused(
            &Requester::default(),
            Kind::ModuleArchive,
            "registry.terraform.io/acme/vpc/aws",
            "[policy] modules in config.toml",
        );
        let refused = Record {
            time: "2026-11-30T15:51:00.000Z".to_owned(),
            ..refused
        };
        insta::assert_snapshot!(table(&[&zip, &git, &refused]));
    }

    /// Rotated files are read first, and `since` drops what is older.
    #[test]
    fn reads_rotated_files_in_order_and_since_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let line = |time: &str, name: &str| {
            let mut line = serde_json::to_string(&record(time, Kind::VersionList, name)).unwrap();
            line.push('\n');
            line
        };
        std::fs::write(
            dir.path().join("audit.jsonl.2"),
            line("2020-01-01T00:00:00.000Z", "oldest"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("audit.jsonl.1"),
            line("2020-01-02T00:00:00.000Z", "older") + "cut sho",
        )
        .unwrap();
        std::fs::write(&path, line("2099-01-01T00:00:00.000Z", "newest")).unwrap();

        let all = read(&path, None).unwrap();
        let names: Vec<&str> = all.entries.iter().map(|(_, r)| r.name.as_str()).collect();
        assert_eq!(names, ["oldest", "older", "newest"]);
        assert_eq!(all.unreadable, 1);

        let since = humantime::parse_rfc3339("2020-01-01T12:00:00Z").unwrap();
        let recent = read(&path, Some(since)).unwrap();
        let names: Vec<&str> = recent
            .entries
            .iter()
            .map(|(_, r)| r.name.as_str())
            .collect();
        assert_eq!(names, ["older", "newest"]);
        assert!(
            recent.entries[1].0.contains("\"name\":\"newest\""),
            "the raw line"
        );
    }
}
