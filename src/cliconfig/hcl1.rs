//! Reads the HCL 1 native syntax of Terraform CLI config files just far
//! enough to split a file into its top-level items.
//!
//! Terraform still parses its CLI config with HCL 1 (hashicorp/hcl v1), not
//! HCL 2, and the two grammars differ where it matters: HCL 1 accepts quoted
//! keys inside blocks, which the documented
//! `dev_overrides { "hashicorp/null" = "/dir" }` relies on and which HCL 2
//! parsers such as hcl-rs reject. A parse-and-reprint would also lose the
//! user's comments and layout. So this module checks a file against HCL 1's
//! grammar, reporting errors with a line and column, and says where each
//! top-level item starts and ends; the renderer copies the text of the items
//! it keeps byte for byte.

use std::fmt;
use std::ops::Range;

/// One top-level item: `key = value`, or a block `key "label" ... { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Item {
    /// The keys before `=` or `{`, unquoted: `["host", "registry.terraform.io"]`.
    pub keys: Vec<String>,
    pub value: ValueKind,
    /// From the first key to the end of the value, including a comma that
    /// follows the item (HCL 1 allows one).
    pub span: Range<usize>,
    /// The value alone: `{ ... }` of a block or object, `[ ... ]`, or the
    /// scalar's token.
    pub value_span: Range<usize>,
}

/// What follows an item's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ValueKind {
    /// `keys { ... }`
    Block,
    /// `key = { ... }`
    Object,
    /// `key = [ ... ]`
    List,
    /// `key = ` a string, heredoc, number or bool.
    Scalar,
}

/// A file split into top-level items.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub items: Vec<Item>,
    /// Every comment outside strings and heredocs, at any depth.
    pub comments: Vec<Range<usize>>,
}

/// Where and why a file is not HCL 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Checks `src` against HCL 1's grammar and lists its top-level items.
pub(super) fn parse(src: &str) -> Result<Parsed, SyntaxError> {
    let mut parser = Parser {
        lexer: Lexer::new(src),
    };
    let items = parser.top_level()?;
    Ok(Parsed {
        items,
        comments: parser.lexer.comments,
    })
}

/// The items inside a block or object item of `src` (as [`parse`] split
/// it), with spans into the returned text, the part between the braces.
/// `None` for any other item.
pub(super) fn nested<'a>(src: &'a str, item: &Item) -> Option<(&'a str, Vec<Item>)> {
    if !matches!(item.value, ValueKind::Block | ValueKind::Object) {
        return None;
    }
    let inner = &src[item.value_span.start + 1..item.value_span.end - 1];
    parse(inner).ok().map(|parsed| (inner, parsed.items))
}

/// The value of a `key = "string"` item of `src`; `None` for any other
/// value (a heredoc, a number, a block).
pub(super) fn string_value(src: &str, item: &Item) -> Option<String> {
    let text = &src[item.value_span.clone()];
    (item.value == ValueKind::Scalar && text.starts_with('"')).then(|| unquote(text))
}

/// A string [`quote`] cannot write with the same value. The value is left
/// out of the message: it may be a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a string containing `${{` cannot be written in HCL 1 syntax with the same value")]
pub(super) struct Unquotable;

/// Writes `s` as an HCL 1 quoted string that reads back as exactly `s`.
///
/// HCL 1 copies a `${...}` sequence verbatim, without processing escapes in
/// it, and its scanner tracks the braces in it; so a string containing `${`
/// can only be written as it is, and only if nothing in it needs escaping.
/// Such a string is refused rather than written with another meaning.
pub(super) fn quote(s: &str) -> Result<String, Unquotable> {
    if s.contains("${") {
        let plain = !s.chars().any(|c| c == '"' || c == '\\' || c.is_control());
        if plain && interpolation_braces_close(s) {
            return Ok(format!("\"{s}\""));
        }
        return Err(Unquotable);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Whether HCL 1's scanner, counting braces after each `${`, is back at
/// depth zero by the end of `s`, so the closing quote ends the string.
fn interpolation_braces_close(s: &str) -> bool {
    let mut depth = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if depth == 0 && c == '$' && chars.peek() == Some(&'{') {
            chars.next();
            depth = 1;
        } else if depth > 0 && c == '{' {
            depth += 1;
        } else if depth > 0 && c == '}' {
            depth -= 1;
        }
    }
    depth == 0
}

/// Whether HCL 1 reads `s` as a bare identifier key. Kept to the plain
/// ASCII form (HCL 1 also allows `.`, which HCL 2 would read differently).
pub(super) fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    starts_well
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && s != "true"
        && s != "false"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    Bool,
    Number,
    Str,
    Heredoc,
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Eof,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Ident => "a name",
            Kind::Bool => "a bool",
            Kind::Number => "a number",
            Kind::Str => "a string",
            Kind::Heredoc => "a heredoc",
            Kind::LBrace => "`{`",
            Kind::RBrace => "`}`",
            Kind::LBrack => "`[`",
            Kind::RBrack => "`]`",
            Kind::Comma => "`,`",
            Kind::Assign => "`=`",
            Kind::Eof => "the end of the file",
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    span: Range<usize>,
}

/// HCL 1's scanner: whitespace and comments separate tokens, newlines are
/// not significant.
struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<Token>,
    comments: Vec<Range<usize>>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            peeked: None,
            comments: Vec::new(),
        }
    }

    fn peek(&mut self) -> Result<Token, SyntaxError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.scan()?);
        }
        Ok(self.peeked.clone().expect("just filled"))
    }

    fn next(&mut self) -> Result<Token, SyntaxError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.scan(),
        }
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        let before = &self.src[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        SyntaxError {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }

    fn current(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn following(&self) -> Option<char> {
        let mut chars = self.src[self.pos..].chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.current()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn scan(&mut self) -> Result<Token, SyntaxError> {
        self.skip_space_and_comments()?;
        let start = self.pos;
        let Some(c) = self.current() else {
            return Ok(self.token(Kind::Eof, start));
        };
        let kind = match c {
            c if is_letter(c) => self.identifier(),
            '0'..='9' => self.number(),
            '-' | '.' if self.following().is_some_and(|d| d.is_ascii_digit()) => self.number(),
            '"' => self.string()?,
            '<' => self.heredoc()?,
            '{' | '}' | '[' | ']' | ',' | '=' => {
                self.bump();
                match c {
                    '{' => Kind::LBrace,
                    '}' => Kind::RBrace,
                    '[' => Kind::LBrack,
                    ']' => Kind::RBrack,
                    ',' => Kind::Comma,
                    _ => Kind::Assign,
                }
            }
            '\0' => return Err(self.error_at(start, "unexpected NUL character")),
            other => return Err(self.error_at(start, format!("unexpected character {other:?}"))),
        };
        Ok(self.token(kind, start))
    }

    fn token(&self, kind: Kind, start: usize) -> Token {
        Token {
            kind,
            span: start..self.pos,
        }
    }

    fn skip_space_and_comments(&mut self) -> Result<(), SyntaxError> {
        loop {
            let rest = &self.src[self.pos..];
            let start = self.pos;
            if rest.starts_with([' ', '\t', '\n', '\r']) {
                self.pos += 1;
            } else if rest.starts_with('#') || rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
                self.comments.push(start..self.pos);
            } else if let Some(body) = rest.strip_prefix("/*") {
                let Some(len) = body.find("*/") else {
                    return Err(self.error_at(start, "comment not terminated"));
                };
                self.pos += 2 + len + 2;
                self.comments.push(start..self.pos);
            } else if rest.starts_with('/') {
                return Err(self.error_at(start, "expected `//` or `/*` to start a comment"));
            } else {
                return Ok(());
            }
        }
    }

    fn identifier(&mut self) -> Kind {
        let start = self.pos;
        while self
            .current()
            .is_some_and(|c| is_letter(c) || is_digit(c) || c == '-' || c == '.')
        {
            self.bump();
        }
        match &self.src[start..self.pos] {
            "true" | "false" => Kind::Bool,
            _ => Kind::Ident,
        }
    }

    /// Numbers are only checked loosely: nothing in a CLI config reads them.
    fn number(&mut self) -> Kind {
        self.bump();
        let mut previous = ' ';
        while let Some(c) = self.current() {
            let exponent_sign = matches!(c, '+' | '-') && matches!(previous, 'e' | 'E');
            if !(c.is_ascii_alphanumeric() || c == '.' || exponent_sign) {
                break;
            }
            previous = c;
            self.bump();
        }
        Kind::Number
    }

    /// A quoted string. As in HCL 1, a `${` opens a brace-counted section in
    /// which quotes and newlines do not end the string.
    fn string(&mut self) -> Result<Kind, SyntaxError> {
        let start = self.pos;
        self.bump();
        let mut braces = 0usize;
        loop {
            let c = match self.bump() {
                Some('\n') if braces == 0 => None,
                other => other,
            };
            let Some(c) = c else {
                return Err(self.error_at(start, "string not terminated"));
            };
            if c == '"' && braces == 0 {
                return Ok(Kind::Str);
            }
            if braces == 0 && c == '$' && self.current() == Some('{') {
                self.bump();
                braces = 1;
            } else if braces > 0 && c == '{' {
                braces += 1;
            } else if braces > 0 && c == '}' {
                braces -= 1;
            }
            if c == '\\' {
                self.escape()?;
            }
        }
    }

    /// The escapes HCL 1 accepts after a backslash.
    fn escape(&mut self) -> Result<(), SyntaxError> {
        let start = self.pos - 1;
        let digits = |base: u32, count: usize, lexer: &mut Self| {
            for _ in 0..count {
                match lexer.current() {
                    Some(d) if d.is_digit(base) => {
                        lexer.bump();
                    }
                    _ => return Err(lexer.error_at(start, "invalid escape sequence")),
                }
            }
            Ok(())
        };
        match self.bump() {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"') => Ok(()),
            Some('0'..='7') => digits(8, 2, self),
            Some('x') => digits(16, 2, self),
            Some('u') => digits(16, 4, self),
            Some('U') => digits(16, 8, self),
            _ => Err(self.error_at(start, "invalid escape sequence")),
        }
    }

    /// `<<ANCHOR` or `<<-ANCHOR`, then lines up to one holding only the
    /// anchor (leading whitespace allowed, as in HCL 1). The token ends with
    /// the anchor, before its newline.
    fn heredoc(&mut self) -> Result<Kind, SyntaxError> {
        let start = self.pos;
        if !self.src[start..].starts_with("<<") {
            return Err(self.error_at(start, "expected `<<` to start a heredoc"));
        }
        self.pos += 2;
        if self.current() == Some('-') {
            self.bump();
        }
        let anchor_start = self.pos;
        while self.current().is_some_and(|c| is_letter(c) || is_digit(c)) {
            self.bump();
        }
        let anchor = &self.src[anchor_start..self.pos];
        if self.src[self.pos..].starts_with("\r\n") {
            self.bump();
        }
        match self.bump() {
            Some('\n') if !anchor.is_empty() => {}
            Some('\n') => return Err(self.error_at(start, "zero-length heredoc anchor")),
            None => return Err(self.error_at(start, "heredoc not terminated")),
            Some(_) => return Err(self.error_at(start, "invalid characters in heredoc anchor")),
        }
        loop {
            let rest = &self.src[self.pos..];
            let Some(line_len) = rest.find('\n') else {
                return Err(self.error_at(start, "heredoc not terminated"));
            };
            let line = &rest[..line_len];
            let content = line.trim_start().trim_end_matches('\r');
            if content == anchor {
                self.pos += line.trim_end_matches('\r').len();
                return Ok(Kind::Heredoc);
            }
            self.pos += line_len + 1;
        }
    }
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// HCL 1's parser, keeping only what the renderer needs.
struct Parser<'a> {
    lexer: Lexer<'a>,
}

impl Parser<'_> {
    fn top_level(&mut self) -> Result<Vec<Item>, SyntaxError> {
        let mut items = Vec::new();
        while self.lexer.peek()?.kind != Kind::Eof {
            items.push(self.item()?);
        }
        Ok(items)
    }

    /// `keys = value` or `keys { ... }`, and an optional comma after it.
    fn item(&mut self) -> Result<Item, SyntaxError> {
        let start = self.lexer.peek()?.span.start;
        let mut keys = Vec::new();
        let (value, value_start, mut end) = loop {
            let token = self.lexer.next()?;
            match token.kind {
                Kind::Ident => keys.push(self.text(&token).to_owned()),
                Kind::Str => keys.push(unquote(self.text(&token))),
                Kind::Assign if keys.len() == 1 => {
                    let start = self.lexer.peek()?.span.start;
                    let (kind, end) = self.value()?;
                    break (kind, start, end);
                }
                Kind::Assign if keys.is_empty() => {
                    return Err(self.error(&token, "expected a name before `=`"));
                }
                Kind::Assign => {
                    let message = format!(
                        "`{}` has labels, so it must be a block: expected `{{`, found `=`",
                        keys.join(" ")
                    );
                    return Err(self.error(&token, message));
                }
                Kind::LBrace if !keys.is_empty() => {
                    break (
                        ValueKind::Block,
                        token.span.start,
                        self.object_body(&token)?,
                    );
                }
                _ if keys.is_empty() => {
                    let message = format!("expected a name, found {}", token.kind.describe());
                    return Err(self.error(&token, message));
                }
                _ => {
                    let message = format!(
                        "expected `=` or `{{` after `{}`, found {}",
                        keys.join(" "),
                        token.kind.describe()
                    );
                    return Err(self.error(&token, message));
                }
            }
        };
        let value_span = value_start..end;
        if self.lexer.peek()?.kind == Kind::Comma {
            end = self.lexer.next()?.span.end;
        }
        Ok(Item {
            keys,
            value,
            span: start..end,
            value_span,
        })
    }

    /// The value after `=`; returns its kind and where it ends.
    fn value(&mut self) -> Result<(ValueKind, usize), SyntaxError> {
        let token = self.lexer.next()?;
        match token.kind {
            Kind::Str | Kind::Heredoc | Kind::Number | Kind::Bool => {
                Ok((ValueKind::Scalar, token.span.end))
            }
            Kind::LBrace => Ok((ValueKind::Object, self.object_body(&token)?)),
            Kind::LBrack => Ok((ValueKind::List, self.list(&token)?)),
            other => {
                let message = format!("expected a value after `=`, found {}", other.describe());
                Err(self.error(&token, message))
            }
        }
    }

    /// Items up to the `}` that closes `open`; returns where it ends.
    fn object_body(&mut self, open: &Token) -> Result<usize, SyntaxError> {
        loop {
            let token = self.lexer.peek()?;
            match token.kind {
                Kind::RBrace => return Ok(self.lexer.next()?.span.end),
                Kind::Eof => return Err(self.unclosed(open, &token)),
                _ => {
                    self.item()?;
                }
            }
        }
    }

    /// Comma-separated values up to the `]` that closes `open`.
    fn list(&mut self, open: &Token) -> Result<usize, SyntaxError> {
        let mut need_comma = false;
        loop {
            let token = self.lexer.next()?;
            if need_comma && !matches!(token.kind, Kind::Comma | Kind::RBrack) {
                let message = format!(
                    "expected `,` or `]` in a list, found {}",
                    token.kind.describe()
                );
                return Err(self.error(&token, message));
            }
            match token.kind {
                Kind::Str | Kind::Heredoc | Kind::Number | Kind::Bool => need_comma = true,
                Kind::LBrace => {
                    self.object_body(&token)?;
                    need_comma = true;
                }
                Kind::LBrack => {
                    self.list(&token)?;
                    need_comma = true;
                }
                Kind::Comma => need_comma = false,
                Kind::RBrack => return Ok(token.span.end),
                Kind::Eof => return Err(self.unclosed(open, &token)),
                other => {
                    let message = format!("expected a value in a list, found {}", other.describe());
                    return Err(self.error(&token, message));
                }
            }
        }
    }

    fn unclosed(&self, open: &Token, eof: &Token) -> SyntaxError {
        let at = self.lexer.error_at(open.span.start, "");
        let message = format!(
            "unexpected end of file: the `{}` at line {}, column {} is never closed",
            self.text(open),
            at.line,
            at.column
        );
        self.error(eof, message)
    }

    fn text(&self, token: &Token) -> &str {
        &self.lexer.src[token.span.clone()]
    }

    fn error(&self, token: &Token, message: impl Into<String>) -> SyntaxError {
        self.lexer.error_at(token.span.start, message)
    }
}

/// The value of a quoted key. Keys are only compared and shown, never
/// written back, so the common escapes are enough.
fn unquote(quoted: &str) -> String {
    let inner = &quoted[1..quoted.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(src: &str) -> Vec<Vec<String>> {
        parse(src)
            .unwrap()
            .items
            .into_iter()
            .map(|item| item.keys)
            .collect()
    }

    fn error(src: &str) -> String {
        parse(src).unwrap_err().to_string()
    }

    #[test]
    fn reads_nested_items_and_string_values() {
        let src =
            "host \"h\" {\n  services = { \"a.v1\" = \"/x/\", b = 1 }\n}\nk = <<EOF\nv\nEOF\n";
        let parsed = parse(src).unwrap();
        let (body, items) = nested(src, &parsed.items[0]).unwrap();
        assert_eq!(items[0].keys, ["services"]);
        let (map, entries) = nested(body, &items[0]).unwrap();
        assert_eq!(entries[0].keys, ["a.v1"]);
        assert_eq!(string_value(map, &entries[0]).as_deref(), Some("/x/"));
        assert_eq!(string_value(map, &entries[1]), None, "a number");
        assert_eq!(string_value(src, &parsed.items[1]), None, "a heredoc");
        assert!(nested(src, &parsed.items[1]).is_none());
    }

    #[test]
    fn splits_top_level_items_with_their_spans() {
        let src = "a = 1\nhost \"x.io\" {\n  services = { \"providers.v1\" = \"u\" }\n}, b = [\"p\", true,]\n";
        let parsed = parse(src).unwrap();
        let spans: Vec<&str> = parsed.items.iter().map(|i| &src[i.span.clone()]).collect();
        assert_eq!(
            spans,
            [
                "a = 1",
                "host \"x.io\" {\n  services = { \"providers.v1\" = \"u\" }\n},",
                "b = [\"p\", true,]"
            ]
        );
        let kinds: Vec<ValueKind> = parsed.items.iter().map(|i| i.value).collect();
        assert_eq!(
            kinds,
            [ValueKind::Scalar, ValueKind::Block, ValueKind::List]
        );
        assert_eq!(parsed.items[1].keys, ["host", "x.io"]);
    }

    #[test]
    fn accepts_hcl1_only_syntax() {
        let src = r#"
provider_installation {
  dev_overrides {
    "hashicorp/null" = "/home/dev/null" // quoted key: HCL 1 only
  }
  direct {}
}
"#;
        assert_eq!(keys(src), [["provider_installation"]]);
    }

    #[test]
    fn reads_comments_heredocs_and_interpolations() {
        let src = "# one\n/* two\n */ a = <<EOF\n} not code \"\nEOF\nb = \"${lookup(\"x\")}/y\" // three\nc = <<-X\n  text\n  X\n";
        let parsed = parse(src).unwrap();
        assert_eq!(
            parsed
                .items
                .iter()
                .map(|i| i.keys[0].as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(
            &src[parsed.items[0].span.clone()],
            "a = <<EOF\n} not code \"\nEOF"
        );
        let comments: Vec<&str> = parsed.comments.iter().map(|c| &src[c.clone()]).collect();
        assert_eq!(comments, ["# one", "/* two\n */", "// three"]);
    }

    #[test]
    fn reports_errors_with_position() {
        assert_eq!(
            error("a = \"open\n"),
            "line 1, column 5: string not terminated"
        );
        assert_eq!(
            error("host \"x\" {\n  services = {}\n"),
            "line 3, column 1: unexpected end of file: the `{` at line 1, column 10 is never closed"
        );
        assert_eq!(
            error("credentials \"x\" = {}"),
            "line 1, column 17: `credentials x` has labels, so it must be a block: expected `{`, found `=`"
        );
        assert_eq!(
            error("a = b"),
            "line 1, column 5: expected a value after `=`, found a name"
        );
        assert_eq!(
            error("plugin_cache_dir\n"),
            "line 2, column 1: expected `=` or `{` after `plugin_cache_dir`, found the end of the file"
        );
        assert_eq!(
            error("a = [\"x\" \"y\"]"),
            "line 1, column 10: expected `,` or `]` in a list, found a string"
        );
        assert_eq!(
            error("a = \"\\q\""),
            "line 1, column 6: invalid escape sequence"
        );
        assert_eq!(error("}"), "line 1, column 1: expected a name, found `}`");
        assert_eq!(
            error("a = <<EOF\nx\n"),
            "line 1, column 5: heredoc not terminated"
        );
    }

    #[test]
    fn quotes_strings_so_they_read_back_unchanged() {
        assert_eq!(quote("a\"b\\c\nd").unwrap(), r#""a\"b\\c\nd""#);
        assert_eq!(quote("${HOME}/x").unwrap(), "\"${HOME}/x\"");
        assert!(quote("${HOME}\"").is_err());
        assert!(quote("${unclosed").is_err());
        let quoted = quote("tab\there é").unwrap();
        parse(&format!("a = {quoted}")).unwrap();
    }
}
