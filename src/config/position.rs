//! Where in a config file a refusal points: `config.toml:12:5`.
//!
//! The parser's own errors carry a byte span. A value refused after
//! parsing is found again by its key in the same text, read a second time
//! with `toml_edit`, which keeps the span of every key and value: the
//! position is that of the refused value (an element of a list, say), else
//! of its key, else of its section's header.

use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike};

use super::InvalidConfig;

/// A 1-based line and column (in characters) of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Position {
    /// Where `refusal` points in `text`, the file it was read from.
    pub fn of(refusal: &InvalidConfig, text: &str) -> Option<Position> {
        let span = match refusal {
            InvalidConfig::Toml(e) => e.span(),
            other => span_of(other, text),
        }?;
        Some(Position::at(text, span.start))
    }

    fn at(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// The span of what a refusal found after parsing is about.
fn span_of(refusal: &InvalidConfig, text: &str) -> Option<Range<usize>> {
    let document = ImDocument::parse(text).ok()?;
    let root: &dyn TableLike = document.as_table();
    match refusal {
        InvalidConfig::Toml(_) => None,
        InvalidConfig::BadValue { key, .. } | InvalidConfig::NoneAllowed { key } => {
            let (section, key) = split_section(key);
            let table = match section {
                Some(section) => root.get(section)?.as_table_like()?,
                None => root,
            };
            value_or_key(table, key)
        }
        InvalidConfig::NotAHostname(host) => {
            let listed = root
                .get("registries")
                .and_then(Item::as_array)
                .and_then(|list| {
                    list.iter()
                        .find(|value| value.as_str() == Some(host.as_str()))
                        .and_then(|value| value.span())
                });
            listed.or_else(|| {
                let upstream = root.get("upstream")?.as_table_like()?;
                upstream.key(host)?.span()
            })
        }
        InvalidConfig::UpstreamNotAUrl { host, .. }
        | InvalidConfig::UpstreamNotHttp { host, .. } => {
            let upstream = root.get("upstream")?.as_table_like()?;
            let (name, _) = upstream
                .iter()
                .find(|(name, _)| name.trim().eq_ignore_ascii_case(host))?;
            value_or_key(upstream, name)
        }
        InvalidConfig::BadMirrorPrefix(_) => {
            value_or_key(root.get("git")?.as_table_like()?, "mirror")
        }
        InvalidConfig::Policy(bad) => value_or_key(root.get("policy")?.as_table_like()?, bad.key),
        InvalidConfig::SharedUrlMissing => root
            .get("shared")?
            .span()
            .or_else(|| root.key("shared")?.span()),
    }
}

/// `"[shared] url"` → the section and the key; `"listen"` → the key alone.
fn split_section(key: &str) -> (Option<&str>, &str) {
    match key.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((section, key)) => (Some(section), key),
        None => (None, key),
    }
}

fn value_or_key(table: &dyn TableLike, key: &str) -> Option<Range<usize>> {
    table
        .get(key)
        .and_then(Item::span)
        .or_else(|| table.key(key)?.span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn position(text: &str) -> String {
        let refusal = Config::parse(text).unwrap_err();
        Position::of(&refusal, text).map_or("none".to_owned(), |p| p.to_string())
    }

    #[test]
    fn each_kind_of_refusal_points_at_its_value_or_key() {
        let cases = [
            ("metadata_ttl = \"1h\"\nlisten = \"localhost\"\n", "2:10"),
            ("metdata_ttl = \"1h\"", "1:1"),
            ("listen = ", "1:10"),
            ("update_lock = true\n\n  git_max_processes = 0", "3:23"),
            ("registries = [\"a.b\", \"../etc\"]", "1:22"),
            ("[upstream]\n\"A.b\" = \"nope\"", "2:9"),
            ("[upstream]\n\"-bad\" = \"http://x/\"", "2:1"),
            ("[git]\nmirror = [\"\"]", "2:10"),
            ("[shared]\nregion = \"x\"\n", "1:1"),
            ("[shared]\nurl = \"s3://b\"\ntimeout = \"0s\"", "3:11"),
            ("max_module_archive_entries = 0", "1:30"),
            ("offline = \"yes\"", "1:11"),
            ("shared = { url = \"ftp://x\" }", "1:18"),
            ("# é\nlisten = \"é\"", "2:10"),
        ];
        for (text, expected) in cases {
            assert_eq!(position(text), expected, "{text}");
        }
    }
}
