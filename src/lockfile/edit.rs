//! Adds hashes to a lock file's text and changes nothing else.
//!
//! Terraform keeps each provider's hashes as a set sorted by bytes (so `h1:`
//! before `zh:`) and compares sets, not text, before it rewrites the file.
//! A new hash goes where that sort puts it, in the layout of its
//! neighbours; a file Terraform wrote stays exactly as Terraform would
//! write it, and a hand-formatted one keeps its formatting.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{HashesAt, LockFile, LockedProvider, ProviderAddress};

/// Replaces `range` of the original text (an insertion when it is empty).
struct Edit {
    range: Range<usize>,
    text: String,
}

fn insert(at: usize, text: String) -> Edit {
    Edit {
        range: at..at,
        text,
    }
}

impl LockFile {
    /// The file's text with `additions` added to its providers' hashes.
    ///
    /// Hashes already listed are not repeated and none is removed. A
    /// provider the file does not lock is skipped: its block would need a
    /// version, and choosing one is `terraform init`'s job.
    pub fn with_added_hashes(&self, additions: &BTreeMap<ProviderAddress, Vec<String>>) -> String {
        let text = self.text.as_str();
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut edits = Vec::new();
        for provider in &self.providers {
            let Some(wanted) = additions.get(&provider.address) else {
                continue;
            };
            let mut new: Vec<&str> = wanted
                .iter()
                .map(String::as_str)
                .filter(|hash| !provider.hashes.iter().any(|known| known == hash))
                .collect();
            new.sort_unstable();
            new.dedup();
            if new.is_empty() {
                continue;
            }
            match &provider.hashes_at {
                HashesAt::List(items) => {
                    into_list(text, newline, provider, items, &new, &mut edits)
                }
                HashesAt::Missing {
                    open,
                    close,
                    arguments,
                } => new_argument(text, newline, *open..*close, arguments, &new, &mut edits),
            }
        }
        apply(text, edits)
    }
}

/// Each new hash goes before the first listed one that sorts after it, or
/// after the last.
fn into_list(
    text: &str,
    newline: &str,
    provider: &LockedProvider,
    items: &[Range<usize>],
    new: &[&str],
    edits: &mut Vec<Edit>,
) {
    let mut at_end = Vec::new();
    for &hash in new {
        match provider
            .hashes
            .iter()
            .position(|known| known.as_str() > hash)
        {
            Some(index) => edits.push(before(text, newline, items[index].clone(), hash)),
            None => at_end.push(hash),
        }
    }
    if let (Some(last), false) = (items.last(), at_end.is_empty()) {
        after(text, newline, last.clone(), &at_end, edits);
    }
}

/// On a line of its own if `item` has one, else inline.
fn before(text: &str, newline: &str, item: Range<usize>, hash: &str) -> Edit {
    let line_start = line_start(text, item.start);
    let indent = &text[line_start..item.start];
    if is_blank(indent) {
        insert(line_start, format!("{indent}{},{newline}", quoted(hash)))
    } else {
        insert(item.start, format!("{}, ", quoted(hash)))
    }
}

/// On lines of their own if the last item has one (`]` on a later line),
/// else inline; either way keeping or adding the comma after `last`.
fn after(text: &str, newline: &str, last: Range<usize>, hashes: &[&str], edits: &mut Vec<Edit>) {
    let indent = &text[line_start(text, last.start)..last.start];
    let rest = &text[last.end..];
    let comma_at = last.end + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    let has_comma = text[comma_at..].starts_with(',');
    let after_comma = if has_comma { comma_at + 1 } else { last.end };
    let line_end = text[after_comma..].find('\n').map(|i| after_comma + i);
    match line_end {
        Some(line_end) if is_blank(indent) && is_blank_or_comment(&text[after_comma..line_end]) => {
            if !has_comma {
                edits.push(insert(last.end, ",".into()));
            }
            for hash in hashes {
                let line = format!("{indent}{},{newline}", quoted(hash));
                edits.push(insert(line_end + 1, line));
            }
        }
        _ if has_comma => {
            for hash in hashes {
                edits.push(insert(after_comma, format!(" {},", quoted(hash))));
            }
        }
        _ => {
            for hash in hashes {
                edits.push(insert(last.end, format!(", {}", quoted(hash))));
            }
        }
    }
}

/// Adds `hashes = [...]` as the block's last argument, in Terraform's
/// layout. `braces` spans from the block's `{` to its `}`.
fn new_argument(
    text: &str,
    newline: &str,
    braces: Range<usize>,
    arguments: &[Range<usize>],
    hashes: &[&str],
    edits: &mut Vec<Edit>,
) {
    let block_line = &text[line_start(text, braces.start)..];
    let block_indent =
        &block_line[..block_line.len() - block_line.trim_start_matches([' ', '\t']).len()];
    let unit = if block_indent.contains('\t') {
        "\t"
    } else {
        "  "
    };
    let (Some(first), Some(last)) = (arguments.first(), arguments.last()) else {
        return; // a provider block always has a version
    };
    let close_line = line_start(text, braces.end);
    let last_indent = &text[line_start(text, last.start)..last.start];
    if is_blank(&text[close_line..braces.end]) && is_blank(last_indent) {
        let list = hashes_argument(last_indent, unit, hashes, newline);
        edits.push(insert(close_line, list));
    } else {
        // One line, `provider "x" { version = "1" }`, holds one argument
        // only: the block becomes a multi-line one.
        let indent = format!("{block_indent}{unit}");
        edits.push(Edit {
            range: braces.start + 1..first.start,
            text: format!("{newline}{indent}"),
        });
        let list = hashes_argument(&indent, unit, hashes, newline);
        edits.push(Edit {
            range: last.end..braces.end,
            text: format!("{newline}{list}{block_indent}"),
        });
    }
}

fn hashes_argument(indent: &str, unit: &str, hashes: &[&str], newline: &str) -> String {
    let mut list = format!("{indent}hashes = [{newline}");
    for hash in hashes {
        list.push_str(&format!("{indent}{unit}{},{newline}", quoted(hash)));
    }
    list.push_str(&format!("{indent}]{newline}"));
    list
}

fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    // Stable: insertions at one offset stay in the order they were made.
    edits.sort_by_key(|edit| edit.range.start);
    let mut out =
        String::with_capacity(text.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut copied = 0;
    for edit in edits {
        out.push_str(&text[copied..edit.range.start]);
        out.push_str(&edit.text);
        copied = edit.range.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// An HCL string literal; hashes never need escapes, but a caller's bad
/// input must not break the file.
fn quoted(value: &str) -> String {
    let mut out = String::from('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c == ' ' || c == '\t')
}

fn is_blank_or_comment(s: &str) -> bool {
    let s = s.trim_matches([' ', '\t', '\r']);
    s.is_empty() || s.starts_with('#') || s.starts_with("//")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn address(kind: &str) -> ProviderAddress {
        ProviderAddress::parse(&format!("registry.terraform.io/hashicorp/{kind}")).unwrap()
    }

    fn additions(list: &[(&str, &[&str])]) -> BTreeMap<ProviderAddress, Vec<String>> {
        list.iter()
            .map(|(kind, hashes)| {
                (
                    address(kind),
                    hashes.iter().map(|h| h.to_string()).collect(),
                )
            })
            .collect()
    }

    fn edited(text: &str, list: &[(&str, &[&str])]) -> String {
        let lock = LockFile::parse(Path::new("test.hcl"), text).unwrap();
        let out = lock.with_added_hashes(&additions(list));
        // The result reads back with every hash, sorted where it was, and
        // adding the same hashes again changes nothing.
        let again = LockFile::parse(Path::new("test.hcl"), &out).unwrap();
        for (kind, hashes) in list {
            if let Some(provider) = again.provider(&address(kind)) {
                assert!(hashes
                    .iter()
                    .all(|h| provider.hashes.iter().any(|p| p == h)));
            }
        }
        assert_eq!(again.with_added_hashes(&additions(list)), out);
        out
    }

    const HAND_EDITED: &str = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

# Pinned for the 2024 migration.
provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.89.0"
  constraints = ">= 5.0.0, < 6.0.0"
  hashes = [
    "h1:bbbb=", # from the linux runner
    "zh:1111",
    "zh:3333"
  ]
}

provider "registry.terraform.io/hashicorp/null" {
    version = "3.2.3"
    hashes = ["h1:nnnn=", "zh:aaaa"]
}

provider    "registry.terraform.io/hashicorp/random"   {
  version = "3.6.3"

  # no hashes yet
}

provider "registry.terraform.io/hashicorp/tls" {
  version = "4.0.6"
  hashes = [
    "h1:tttt=",
    "zh:ffff",
  ]
}
"#;

    #[test]
    fn inserts_hashes_in_place() {
        let out = edited(
            HAND_EDITED,
            &[
                (
                    "aws",
                    &[
                        "zh:2222", "h1:aaaa=", "zh:4444", "zh:1111", "h1:cccc=", "zh:4444",
                    ],
                ),
                ("null", &["zh:bbbb", "h1:mmmm="]),
                ("random", &["zh:r1", "h1:r0="]),
                ("tls", &["zh:ffff", "h1:tttt="]),
                ("unlocked", &["h1:xxxx="]),
            ],
        );
        insta::assert_snapshot!("edited_lock_file", out);
    }

    #[test]
    fn leaves_complete_files_alone() {
        let out = edited(
            HAND_EDITED,
            &[("tls", &["h1:tttt="]), ("unlocked", &["h1:x="])],
        );
        assert_eq!(out, HAND_EDITED);
    }

    #[test]
    fn opens_one_line_blocks() {
        let out = edited(
            "provider \"registry.terraform.io/hashicorp/aws\" { version = \"1.0.0\" }\n",
            &[("aws", &["zh:b", "h1:a"])],
        );
        assert_eq!(
            out,
            "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
             hashes = [\n    \"h1:a\",\n    \"zh:b\",\n  ]\n}\n"
        );
    }

    #[test]
    fn keeps_crlf_and_tabs() {
        let text =
            "provider \"registry.terraform.io/hashicorp/aws\" {\r\n\tversion = \"1.0.0\"\r\n\t\
                    hashes = [\r\n\t\t\"h1:b\" // last\r\n\t]\r\n}\r\n";
        let out = edited(text, &[("aws", &["h1:a", "h1:c"])]);
        assert_eq!(
            out,
            "provider \"registry.terraform.io/hashicorp/aws\" {\r\n\tversion = \"1.0.0\"\r\n\t\
             hashes = [\r\n\t\t\"h1:a\",\r\n\t\t\"h1:b\", // last\r\n\t\t\"h1:c\",\r\n\t]\r\n}\r\n"
        );
    }

    #[test]
    fn follows_inline_lists() {
        let text = "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
                    hashes = [\"h1:b\",\n    \"zh:b\",]\n}\n";
        let out = edited(text, &[("aws", &["h1:a", "zh:c"])]);
        assert_eq!(
            out,
            "provider \"registry.terraform.io/hashicorp/aws\" {\n  version = \"1.0.0\"\n  \
             hashes = [\"h1:a\", \"h1:b\",\n    \"zh:b\", \"zh:c\",]\n}\n"
        );
    }
}
