//! A run's logged problems, grouped as `exec` reports them: every failure
//! to reach one upstream host becomes one [`Problem::Unreachable`] (the
//! host, a short reason, what the run could not get, how much it was
//! served stale instead); anything else is one short line each.
//!
//! The log lines are the server's own wording, written in many places;
//! this module is the one that reads them back, so the phrases it looks
//! for are listed here, each with a test.

use tracing::Level;

use crate::protocol::Problem;

/// The longest line kept for a problem that is not about reaching an
/// upstream; the log has the whole of it.
const MAX_LINE: usize = 240;

/// Groups `logged` (each message once, in order) into problems, in the
/// order each first appeared.
pub fn group(logged: &[(Level, String)]) -> Vec<Problem> {
    let mut problems: Vec<Problem> = Vec::new();
    for (level, message) in logged {
        let Some((host, why)) = unreachable(message) else {
            let problem = Problem::Other {
                level: level.to_string(),
                message: shorten(message),
            };
            if !problems.contains(&problem) {
                problems.push(problem);
            }
            continue;
        };
        let index = problems
            .iter()
            .position(|p| matches!(p, Problem::Unreachable { host: h, .. } if *h == host))
            .unwrap_or_else(|| {
                problems.push(Problem::Unreachable {
                    host,
                    why: why.to_owned(),
                    missing: Vec::new(),
                    stale: 0,
                });
                problems.len() - 1
            });
        let Problem::Unreachable {
            why: said,
            missing,
            stale,
            ..
        } = &mut problems[index]
        else {
            unreachable!("the index is of an unreachable host");
        };
        *said = more_telling(said, why);
        match subject(message) {
            Some(Subject::Missing(what)) if !missing.contains(&what) => missing.push(what),
            Some(Subject::Stale) => *stale += 1,
            _ => {}
        }
    }
    // Terraform asks in parallel: the order says nothing.
    for problem in &mut problems {
        if let Problem::Unreachable { missing, .. } = problem {
            missing.sort();
        }
    }
    problems
}

/// The host a message says could not be reached, and why, in a few words;
/// `None` for any other problem.
fn unreachable(message: &str) -> Option<(String, &'static str)> {
    let lower = message.to_ascii_lowercase();
    let why = CAUSES
        .iter()
        .find(|(phrases, _)| phrases.iter().any(|phrase| lower.contains(phrase)))
        .map(|(_, why)| *why)?;
    Some((host(message)?, why))
}

/// Of two reasons, the more telling one: the earlier in [`CAUSES`] (the
/// breaker's "connection failed" says less than the "connection refused"
/// of the request that opened it).
fn more_telling(a: &str, b: &'static str) -> String {
    let rank = |why: &str| CAUSES.iter().position(|(_, w)| *w == why);
    match (rank(a), rank(b)) {
        (Some(ra), Some(rb)) if rb < ra => b.to_owned(),
        _ => a.to_owned(),
    }
}

/// Phrases of the errors of reqwest, hyper, the OS, gix and tfmirror's
/// own breaker, with the short reason each stands for, the most telling
/// first.
const CAUSES: &[(&[&str], &str)] = &[
    // Worded so that `upstream::network_hint` finds its advice in them.
    (
        &[
            "invalid peer certificate",
            "unknownissuer",
            "certificate verify",
        ],
        "invalid peer certificate: not signed by a trusted CA",
    ),
    (&["tunnel error"], "proxy tunnel error"),
    (
        &[
            "dns error",
            "failed to lookup address",
            "name or service not known",
            "no such host",
        ],
        "dns error: no such host",
    ),
    (&["connection refused"], "connection refused"),
    (&["network is unreachable"], "network unreachable"),
    (
        &[
            "timed out",
            "no answer within",
            "no answer for",
            "did not list its refs within",
        ],
        "timed out",
    ),
    (
        &[
            "connection failed",
            "tcp connect error",
            "error trying to connect",
        ],
        "connection failed",
    ),
];

/// The first URL's `host[:port]` in `message`, else the host a breaker
/// message names (`upstream HOST is not answering`, `HOST is not answering`),
/// without a default port: the breaker names `registry.terraform.io:443`
/// where a URL has `registry.terraform.io`, and both are one host.
fn host(message: &str) -> Option<String> {
    named_host(message).map(|host| {
        let bare = host
            .strip_suffix(":443")
            .or_else(|| host.strip_suffix(":80"));
        bare.map_or(host.clone(), str::to_owned)
    })
}

fn named_host(message: &str) -> Option<String> {
    if let Some((_, rest)) = message.split_once("://") {
        let authority = rest
            .split(['/', ')', ' ', '?', '#', '"', '\''])
            .next()
            .unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        if !authority.is_empty() {
            return Some(authority.to_owned());
        }
    }
    let (before, _) = message.split_once(" is not answering")?;
    let host = before.rsplit(' ').next()?;
    (!host.is_empty()).then(|| host.to_owned())
}

enum Subject {
    /// What the run needed and did not get.
    Missing(String),
    /// Something served from the cache because the upstream failed.
    Stale,
}

/// What a message is about, from the phrases tfmirror logs it with.
fn subject(message: &str) -> Option<Subject> {
    let before_colon = |rest: &str| rest.split(": ").next().unwrap_or(rest).to_owned();
    if message.starts_with("serving a cached copy for ")
        || message.starts_with("cannot bring the mirror of ")
        || message.starts_with("cannot refresh the mirror of ")
    {
        return Some(Subject::Stale);
    }
    if let Some(rest) = message.strip_prefix("registry unavailable for ") {
        let what = rest.split(" and nothing cached").next().unwrap_or(rest);
        return Some(Subject::Missing(what.to_owned()));
    }
    if let Some(rest) = message.strip_prefix("cannot mirror ") {
        return Some(Subject::Missing(before_colon(rest)));
    }
    if let Some(rest) = message.strip_prefix("refusing ") {
        return Some(Subject::Missing(before_colon(rest)));
    }
    None
}

/// `message` cut to [`MAX_LINE`] characters.
fn shorten(message: &str) -> String {
    match message.char_indices().nth(MAX_LINE) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warn(message: &str) -> (Level, String) {
        (Level::WARN, message.to_owned())
    }

    fn error(message: &str) -> (Level, String) {
        (Level::ERROR, message.to_owned())
    }

    /// Terraform retries: eight lines about one host become one problem,
    /// naming each thing the run could not get once.
    #[test]
    fn an_unreachable_host_is_one_problem() {
        let dns = "error sending request for url (https://registry.terraform.io/v1/providers/hashicorp/aws/versions): client error (Connect): dns error: failed to lookup address information: Name or service not known";
        let logged = [
            error(&format!("registry unavailable for the version list of registry.terraform.io/hashicorp/aws and nothing cached: https://registry.terraform.io/v1/providers/hashicorp/aws/versions: {dns}")),
            error(&format!("registry unavailable for the version list of registry.terraform.io/hashicorp/aws and nothing cached: {dns}")),
            warn("upstream registry.terraform.io is not answering (connection failed); serving cached copies for 30s before trying it again"),
            error("registry unavailable for the version list of registry.terraform.io/acme/net/aws and nothing cached: registry.terraform.io is not answering: connection failed 0s ago; tfmirror tries it again in 30s"),
            error("refusing checksums of acme/beta 2.0.0: the signature does not verify"),
            error("refusing checksums of acme/beta 2.0.0: the signature does not verify"),
        ];
        assert_eq!(
            group(&logged),
            [
                Problem::Unreachable {
                    host: "registry.terraform.io".to_owned(),
                    why: "dns error: no such host".to_owned(),
                    missing: vec![
                        "the version list of registry.terraform.io/acme/net/aws".to_owned(),
                        "the version list of registry.terraform.io/hashicorp/aws".to_owned(),
                    ],
                    stale: 0,
                },
                Problem::Other {
                    level: "ERROR".to_owned(),
                    message: "refusing checksums of acme/beta 2.0.0: the signature does not verify"
                        .to_owned(),
                },
            ]
        );
    }

    /// Served stale for every document: counted, not listed.
    #[test]
    fn stale_copies_are_counted() {
        let logged = [
            warn("upstream 127.0.0.1:4 is not answering (connection failed); serving cached copies for 30s before trying it again"),
            warn("serving a cached copy for the version list of a/b: http://127.0.0.1:4/v1/x: error sending request for url (http://127.0.0.1:4/v1/x): client error (Connect): tcp connect error: Connection refused (os error 111)"),
            warn("serving a cached copy for the version list of a/c: 127.0.0.1:4 is not answering: connection failed 0s ago; tfmirror tries it again in 30s"),
            warn("cannot bring the mirror of http://127.0.0.1:4/git/o/r.git up to date, using it as it is: http://127.0.0.1:4/git/o/r.git did not list its refs within 2s"),
        ];
        assert_eq!(
            group(&logged),
            [Problem::Unreachable {
                host: "127.0.0.1:4".to_owned(),
                why: "connection refused".to_owned(),
                missing: Vec::new(),
                stale: 3,
            }]
        );
    }

    #[test]
    fn each_cause_has_its_short_reason() {
        for (message, why) in [
            ("x: operation timed out, https://h/", "timed out"),
            ("no answer within 30s: https://h/", "timed out"),
            (
                "tcp connect error: Network is unreachable (os error 101) https://h/",
                "network unreachable",
            ),
            ("https://h/: connection refused", "connection refused"),
            (
                "https://h/: invalid peer certificate: UnknownIssuer",
                "invalid peer certificate: not signed by a trusted CA",
            ),
            (
                "https://h/: client error (Connect): tunnel error: unsuccessful",
                "proxy tunnel error",
            ),
        ] {
            assert!(
                !why.contains("certificate") || crate::upstream::network_hint(why).is_some(),
                "{why}: the advice for it is found"
            );
            assert_eq!(
                unreachable(message),
                Some(("h".to_owned(), why)),
                "{message}"
            );
        }
        assert_eq!(
            unreachable("refusing x: checksum mismatch at https://h/"),
            None
        );
        assert_eq!(host("https://user@h:8443/a"), Some("h:8443".to_owned()));
        assert_eq!(
            host("upstream registry.terraform.io:443 is not answering (connection failed)"),
            host("https://registry.terraform.io/v1/providers/a/b/versions: dns error"),
            "the breaker's host:443 and a URL's host are one host"
        );
    }

    #[test]
    fn other_lines_are_cut_short() {
        let long = "x".repeat(1000);
        let [Problem::Other { message, .. }] = &group(&[warn(&long)])[..] else {
            panic!("one problem");
        };
        assert_eq!(message.chars().count(), MAX_LINE + 1);
    }
}
