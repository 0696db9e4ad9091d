//! Version constraints in Terraform's syntax, for `deny_providers` and
//! `deny_modules`: `4.*`, `< 5.0`, `>= 4.0, < 4.5`, `~> 4.1`, `!= 4.2.0`.
//!
//! Terraform's operators are `=`, `!=`, `>`, `>=`, `<`, `<=` and `~>`
//! (only the rightmost given part may grow); a version may leave out its
//! minor and patch, which count as zero. The `semver` crate reads neither
//! `~>` nor `!=`, and its own `~` differs from `~>` for a two-part version,
//! so the syntax is read here and only the versions are compared with
//! `semver`. A wildcard form (`4.*`, `4.1.x`) is also read, as the issue's
//! example writes it: every version whose leading parts are those given.
//!
//! Unlike Terraform's selection, which leaves pre-releases out unless a
//! constraint names one, a deny rule covers a pre-release by its place in
//! semver order (`5.0.0-beta1 < 5.0.0`): a rule meant to keep out `4.*`
//! keeps out `4.2.0-rc1` too.

use std::fmt;

use semver::Version;

/// A whole constraint: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    terms: Vec<Term>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Compare(Op, Version),
    /// `~> 4.1` (`parts` = 2): at least the version, below the next
    /// release of the part before the last one given.
    Pessimistic(Version, usize),
    /// `4.*`: the leading parts are exactly these.
    Wildcard(Vec<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// Why a constraint is not one Terraform would read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadConstraint {
    #[error("an empty version constraint")]
    Empty,
    #[error("{0:?} is not a version (expected e.g. \"4.1.0\", \"4.*\" or \"~> 4.1\")")]
    Version(String),
    #[error("{0:?}: a wildcard is only a trailing part without an operator (e.g. \"4.*\")")]
    Wildcard(String),
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint, BadConstraint> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BadConstraint::Empty);
        }
        let terms = text
            .split(',')
            .map(|term| parse_term(term.trim()))
            .collect::<Result<_, _>>()?;
        Ok(Constraint {
            terms,
            text: text.to_owned(),
        })
    }

    /// Whether `version` meets every term. A version that does not read as
    /// semver meets none: it cannot be compared.
    pub fn matches(&self, version: &str) -> bool {
        let Ok(version) = Version::parse(version.trim_start_matches('v')) else {
            return false;
        };
        self.terms.iter().all(|term| term.matches(&version))
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Term {
    fn matches(&self, v: &Version) -> bool {
        match self {
            Term::Compare(op, bound) => match op {
                Op::Eq => v == bound,
                Op::Ne => v != bound,
                Op::Gt => v > bound,
                Op::Ge => v >= bound,
                Op::Lt => v < bound,
                Op::Le => v <= bound,
            },
            Term::Pessimistic(low, parts) => {
                let high = match parts {
                    1 | 2 => Version::new(low.major + 1, 0, 0),
                    _ => Version::new(low.major, low.minor + 1, 0),
                };
                v >= low && *v < high
            }
            Term::Wildcard(prefix) => {
                let parts = [v.major, v.minor, v.patch];
                parts.iter().zip(prefix).all(|(a, b)| a == b)
            }
        }
    }
}

fn parse_term(term: &str) -> Result<Term, BadConstraint> {
    let operators = [
        ("~>", None),
        (">=", Some(Op::Ge)),
        ("<=", Some(Op::Le)),
        ("!=", Some(Op::Ne)),
        (">", Some(Op::Gt)),
        ("<", Some(Op::Lt)),
        ("=", Some(Op::Eq)),
    ];
    let (op, rest) = operators
        .iter()
        .find_map(|(word, op)| term.strip_prefix(word).map(|rest| (Some(*op), rest)))
        .unwrap_or((None, term));
    let rest = rest.trim();
    let numbers = rest.split(['-', '+']).next().unwrap_or_default();
    if numbers.contains(['*', 'x', 'X']) {
        return match op {
            None => wildcard(rest),
            Some(_) => Err(BadConstraint::Wildcard(term.to_owned())),
        };
    }
    let (version, parts) = parse_version(rest)?;
    Ok(match op {
        Some(None) => Term::Pessimistic(version, parts),
        Some(Some(op)) => Term::Compare(op, version),
        None => Term::Compare(Op::Eq, version),
    })
}

/// `4.*`, `4.1.x`: the parts before the wildcard, which must be last.
fn wildcard(text: &str) -> Result<Term, BadConstraint> {
    let bad = || BadConstraint::Wildcard(text.to_owned());
    let parts: Vec<&str> = text.split('.').collect();
    let (last, leading) = parts.split_last().ok_or_else(bad)?;
    if !matches!(*last, "*" | "x" | "X") || parts.len() > 3 {
        return Err(bad());
    }
    let prefix = leading
        .iter()
        .map(|part| part.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    Ok(Term::Wildcard(prefix))
}

/// A version with one to three numeric parts (missing ones are zero) and
/// an optional pre-release; also how many parts were given, which `~>`
/// needs.
fn parse_version(text: &str) -> Result<(Version, usize), BadConstraint> {
    let bad = || BadConstraint::Version(text.to_owned());
    let text = text.strip_prefix('v').unwrap_or(text);
    let (numbers, rest) = match text.find(['-', '+']) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let mut full = parts.clone();
    full.resize(3, "0");
    let version = Version::parse(&format!("{}{rest}", full.join("."))).map_err(|_| bad())?;
    Ok((version, parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_match_as_terraform_reads_them() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "4.*",
                &["4.0.0", "4.67.1", "4.2.0-rc1"],
                &["3.9.9", "5.0.0"],
            ),
            ("4.1.x", &["4.1.0", "4.1.9"], &["4.2.0", "4.0.9"]),
            ("< 5.0", &["4.99.0", "5.0.0-beta1"], &["5.0.0", "6.1.0"]),
            ("<5", &["4.0.0"], &["5.0.0"]),
            (">= 4.0, < 4.5", &["4.0.0", "4.4.9"], &["3.9.0", "4.5.0"]),
            ("~> 4.1", &["4.1.0", "4.9.3"], &["4.0.9", "5.0.0"]),
            ("~> 4.1.2", &["4.1.2", "4.1.9"], &["4.1.1", "4.2.0"]),
            ("~> 4", &["4.0.0", "4.8.0"], &["3.0.0", "5.0.0"]),
            ("!= 4.2.0", &["4.2.1"], &["4.2.0"]),
            ("4.2.0", &["4.2.0"], &["4.2.1"]),
            ("= 4.2", &["4.2.0"], &["4.2.1"]),
            ("> 1.0.0-beta", &["1.0.0", "1.0.0-rc1"], &["1.0.0-alpha"]),
            ("<= v2.1", &["2.1.0", "v2.0.0"], &["2.1.1", "not-a-version"]),
        ];
        for (text, inside, outside) in cases {
            let constraint = Constraint::parse(text).unwrap();
            for version in *inside {
                assert!(constraint.matches(version), "{text} should match {version}");
            }
            for version in *outside {
                assert!(
                    !constraint.matches(version),
                    "{text} should not match {version}"
                );
            }
        }
    }

    #[test]
    fn bad_constraints_say_what_is_wrong() {
        assert_eq!(Constraint::parse("  "), Err(BadConstraint::Empty));
        for bad in ["four", "4..1", "4.1.2.3", ">= ", "4, ", "~> banana"] {
            assert!(
                matches!(Constraint::parse(bad), Err(BadConstraint::Version(_))),
                "{bad}"
            );
        }
        for bad in ["< 4.*", "4.*.1", "*.1", "4.1.2.*"] {
            assert!(
                matches!(Constraint::parse(bad), Err(BadConstraint::Wildcard(_))),
                "{bad}"
            );
        }
    }
}
