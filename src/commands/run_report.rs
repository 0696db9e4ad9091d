//! What `exec` says when its command is done: the problems the server met
//! while serving this run, then the savings line.
//!
//! The server files each run's problems by run id and hands them back,
//! grouped and deduplicated, when the run ends (`server::run_journal`), so
//! parallel runs never see each other's, and Terraform's retries are said
//! once. An unreachable upstream is one block: the host, why, what the run
//! could not get, and what to do; served stale for everything, it is one
//! line. The server's log keeps its full lines. An older server sends no
//! problems, and then nothing is said.

use super::savings;
use crate::protocol::{Problem, RunCounters};

/// The most missing items a block names; the rest are counted.
const MAX_LISTED: usize = 8;

/// What to do when an upstream cannot be reached and something is missing.
const ADVICE: [&str; 2] = [
    "  to fix: check the network and proxy settings (HTTPS_PROXY) and the [upstream] \
     section of the tfmirror config,",
    "  or bring the artifacts in with `tfmirror cache import` or `tfmirror bundle import`",
];

/// The lines `exec` prints on stderr at the end of a run, in order.
pub fn lines(counters: &RunCounters) -> Vec<String> {
    let mut lines: Vec<String> = counters.problems.iter().flat_map(problem).collect();
    if let Some(line) = savings::line(counters) {
        lines.push(format!("tfmirror: {line}"));
    }
    lines
}

fn problem(problem: &Problem) -> Vec<String> {
    match problem {
        Problem::Unreachable {
            host,
            why,
            missing,
            stale,
        } => unreachable(host, why, missing, *stale),
        Problem::Other { message, .. } => vec![format!("tfmirror server: {message}")],
    }
}

fn unreachable(host: &str, why: &str, missing: &[String], stale: usize) -> Vec<String> {
    if missing.is_empty() {
        return vec![format!(
            "tfmirror: served from cache, upstream {host} unreachable ({why})"
        )];
    }
    let mut block = vec![
        format!("tfmirror: cannot reach {host} ({why})"),
        "  not in the cache, so not served:".to_owned(),
    ];
    block.extend(
        missing
            .iter()
            .take(MAX_LISTED)
            .map(|what| format!("    {what}")),
    );
    if missing.len() > MAX_LISTED {
        block.push(format!("    and {} more", missing.len() - MAX_LISTED));
    }
    if stale > 0 {
        block.push(format!("  served from cache instead: {stale} more"));
    }
    // A certificate or a proxy is the trouble: its own advice, said once.
    match crate::upstream::network_hint(why) {
        Some(hint) => block.push(format!("  to fix: {hint}")),
        None => block.extend(ADVICE.map(str::to_owned)),
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable_host(missing: usize, stale: usize) -> Problem {
        Problem::Unreachable {
            host: "registry.terraform.io".to_owned(),
            why: "dns error: no such host".to_owned(),
            missing: (0..missing)
                .map(|i| format!("the version list of registry.terraform.io/acme/p{i}"))
                .collect(),
            stale,
        }
    }

    #[test]
    fn an_unreachable_registry_is_one_block() {
        let counters = RunCounters {
            problems: vec![
                unreachable_host(2, 0),
                Problem::Other {
                    level: "ERROR".to_owned(),
                    message: "refusing x: checksum mismatch".to_owned(),
                },
            ],
            ..RunCounters::default()
        };
        insta::assert_snapshot!(lines(&counters).join("\n"));
    }

    #[test]
    fn a_long_list_is_cut() {
        let counters = RunCounters {
            problems: vec![unreachable_host(10, 3)],
            ..RunCounters::default()
        };
        insta::assert_snapshot!(lines(&counters).join("\n"));
    }

    #[test]
    fn served_stale_is_one_line_before_the_savings() {
        let counters = RunCounters {
            hits: 4,
            bytes_from_cache: 4_000,
            problems: vec![unreachable_host(0, 5)],
            ..RunCounters::default()
        };
        insta::assert_snapshot!(lines(&counters).join("\n"));
    }

    /// An older server sends no problems: only the savings line.
    #[test]
    fn no_problems_no_lines() {
        let counters = RunCounters {
            hits: 1,
            bytes_from_cache: 10,
            ..RunCounters::default()
        };
        assert_eq!(
            lines(&counters),
            ["tfmirror: 10 B from cache (1 hits), 0 B downloaded (0 misses)"]
        );
    }
}
