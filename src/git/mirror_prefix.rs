//! `[git] mirror` prefixes: the upstream repositories the server may clone.
//!
//! A client names the repository it wants in the request path, so these
//! prefixes are all that stands between a request and the server cloning
//! any URL it is given, internal hosts included. A prefix is therefore
//! parsed into its parts once, at start-up, and a repository matches only
//! when every part agrees: the scheme and host (both case-insensitive), the
//! user (exactly; none unless the prefix names one), the port (a missing
//! port is the scheme's default), then whole path segments. Raw string
//! prefixes are never compared: `https://github.com/org` would otherwise
//! admit `https://github.com/organisation-evil/x` and
//! `https://github.com.evil.example/x`.
//!
//! Two spellings are accepted, the ones git and go-getter clone from:
//! `scheme://[user@]host[:port][/path/]` and scp-like `user@host:[path/]`
//! (which git reads as ssh). The schemes are those [`RepoId`] can name —
//! `https`, `http`, `ssh` and `git` — since a prefix of any other scheme
//! could never match a request. `file://` in particular is refused: it names
//! no host and would hand the server's own disk to every client.

use std::fmt;
use std::str::FromStr;

use super::repo_id::RepoId;
use crate::store::Segment;

/// What a config error shows as examples of valid prefixes.
const EXAMPLES: &str = r#""https://github.com/" or "git@github.com:""#;

/// One `[git] mirror` entry, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPrefix {
    /// As written in the config, with a `/` added after a path that lacks
    /// one: the `insteadOf` value, which git compares byte for byte, so it
    /// too must end at a segment boundary.
    text: String,
    scheme: Scheme,
    authority: Authority,
    path: Vec<Segment>,
}

/// The schemes a mirror can be cloned over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
}

impl Scheme {
    fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "https" => Some(Scheme::Https),
            "http" => Some(Scheme::Http),
            "ssh" => Some(Scheme::Ssh),
            "git" => Some(Scheme::Git),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
            Scheme::Ssh => "ssh",
            Scheme::Git => "git",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http => 80,
            Scheme::Ssh => 22,
            Scheme::Git => 9418,
        }
    }
}

/// `[user@]host[:port]`, as a prefix or a requested repository names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    user: Option<String>,
    /// Lowercase: host names are case-insensitive.
    host: String,
    port: Option<u16>,
}

impl Authority {
    /// Accepts the alphabet [`RepoId`] accepts for an authority; a password
    /// (`user:secret@`) is refused, since it would end up in `insteadOf`
    /// values and request paths.
    fn parse(text: &str) -> Result<Authority, Reason> {
        let (user, host_port) = match text.split_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, text),
        };
        if let Some(user) = user {
            if user.contains(':') {
                return Err(Reason::Password);
            }
            if user.is_empty() || !user.chars().all(is_name_char) {
                return Err(Reason::User(user.to_owned()));
            }
        }
        let (host, port) = match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if host.is_empty() {
            return Err(Reason::NoHost);
        }
        let host_ok =
            host.len() <= 253 && host.chars().all(is_name_char) && !host.starts_with(['.', '-']);
        if !host_ok {
            return Err(Reason::Host(host.to_owned()));
        }
        let port = match port {
            None => None,
            Some(port) => {
                let parsed = port
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
                    .filter(|&p| p != 0);
                Some(parsed.ok_or_else(|| Reason::Port(port.to_owned()))?)
            }
        };
        Ok(Authority {
            user: user.map(str::to_owned),
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Why a `[git] mirror` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a git URL prefix: {reason} (expected e.g. {EXAMPLES})")]
pub struct InvalidMirrorPrefix {
    text: String,
    reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Reason {
    #[error("it is empty")]
    Empty,
    #[error("it is neither scheme://host/ nor user@host:")]
    NotAUrl,
    #[error("scheme {0:?} is not one tfmirror mirrors from (https, http, ssh or git)")]
    Scheme(String),
    #[error("it names no host")]
    NoHost,
    #[error("{0:?} is not a host name")]
    Host(String),
    #[error("{0:?} is not a port number")]
    Port(String),
    #[error("{0:?} is not a user name")]
    User(String),
    #[error("a password does not belong in a prefix (git's credential helpers supply it)")]
    Password,
    #[error("a query or fragment does not belong in a prefix")]
    Query,
    #[error("path segment {0:?} is not allowed (letters, digits and . _ - + only; no empty, . or .. segments)")]
    Path(String),
}

impl FromStr for MirrorPrefix {
    type Err = InvalidMirrorPrefix;

    fn from_str(text: &str) -> Result<MirrorPrefix, InvalidMirrorPrefix> {
        parse(text).map_err(|reason| InvalidMirrorPrefix {
            text: text.to_owned(),
            reason,
        })
    }
}

fn parse(text: &str) -> Result<MirrorPrefix, Reason> {
    if text.is_empty() {
        return Err(Reason::Empty);
    }
    if text.contains(['?', '#']) {
        return Err(Reason::Query);
    }
    let (scheme, authority, path) = match text.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = Scheme::parse(scheme).ok_or_else(|| Reason::Scheme(scheme.to_owned()))?;
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            (scheme, authority, path)
        }
        // scp-like, as git reads it: a `:` before any `/`. The user is
        // required, as it is for the repository URLs `RepoId` accepts.
        None => match text.split_once(':') {
            Some((authority, path)) if authority.contains('@') && !authority.contains('/') => {
                (Scheme::Ssh, authority, path)
            }
            _ => return Err(Reason::NotAUrl),
        },
    };
    let authority = Authority::parse(authority)?;
    let mut segments: Vec<&str> = path.split('/').collect();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    let path = segments
        .into_iter()
        .map(|s| Segment::new(s).map_err(|_| Reason::Path(s.to_owned())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut text = text.to_owned();
    let scp_without_path = !text.contains("://") && path.is_empty();
    if !text.ends_with('/') && !scp_without_path {
        text.push('/');
    }
    Ok(MirrorPrefix {
        text,
        scheme,
        authority,
        path,
    })
}

impl MirrorPrefix {
    /// The prefix as git's `url.<base>.insteadOf` should name it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `repo` lies under this prefix: same scheme, host, user and
    /// port, and at least one path segment below the prefix's own.
    pub fn matches(&self, repo: &RepoId) -> bool {
        let Ok(authority) = Authority::parse(repo.authority()) else {
            return false;
        };
        let default_port = self.scheme.default_port();
        repo.scheme() == self.scheme.as_str()
            && authority.host == self.authority.host
            && authority.user == self.authority.user
            && authority.port.unwrap_or(default_port) == self.authority.port.unwrap_or(default_port)
            && repo.path().len() > self.path.len()
            && repo.path().starts_with(&self.path)
    }

    /// tfmirror's URL prefix that stands for this prefix in git's
    /// `url.<base>.insteadOf` rewriting: `https://github.com/` becomes
    /// `<base>/git/https/github.com/`, and scp-like `git@github.com:` becomes
    /// `<base>/git/ssh/git@github.com/`.
    pub fn proxy_prefix(&self, base_url: &str) -> String {
        let rewritten = match self.text.split_once("://") {
            Some((scheme, rest)) => format!("{}/{rest}", scheme.to_ascii_lowercase()),
            None => {
                let (authority, rest) = self
                    .text
                    .split_once(':')
                    .expect("an scp-like prefix has a ':'");
                format!("ssh/{authority}/{rest}")
            }
        };
        format!("{base_url}/git/{rewritten}")
    }
}

impl fmt::Display for MirrorPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(text: &str) -> MirrorPrefix {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn refusal(text: &str) -> String {
        match text.parse::<MirrorPrefix>() {
            Ok(p) => panic!("{text:?} should be refused, parsed as {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn repo(url: &str) -> RepoId {
        RepoId::from_url(url).unwrap_or_else(|| panic!("{url} is a repository URL"))
    }

    #[test]
    fn accepts_urls_and_scp_like_prefixes() {
        for (text, normalised) in [
            ("https://github.com/", "https://github.com/"),
            ("https://github.com", "https://github.com/"),
            ("https://github.com/org", "https://github.com/org/"),
            ("HTTPS://GitHub.com/Org/", "HTTPS://GitHub.com/Org/"),
            ("http://127.0.0.1:8080/git/", "http://127.0.0.1:8080/git/"),
            ("ssh://git@github.com/", "ssh://git@github.com/"),
            ("git://git.example.org/pub", "git://git.example.org/pub/"),
            ("git@github.com:", "git@github.com:"),
            ("git@github.com:org", "git@github.com:org/"),
        ] {
            assert_eq!(prefix(text).as_str(), normalised, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_url_prefix() {
        for (text, reason) in [
            ("", "it is empty"),
            ("github.com", "neither scheme://host/ nor user@host:"),
            ("github.com/org/", "neither"),
            ("/srv/git/", "neither"),
            ("./repos", "neither"),
            ("github.com:org/", "neither"),
            ("https://", "names no host"),
            ("https:///x", "names no host"),
            ("https://:443/", "names no host"),
            ("git@:org/", "names no host"),
            ("file:///srv/git/", "scheme \"file\""),
            ("ftp://example.org/", "scheme \"ftp\""),
            ("https://user:secret@github.com/", "password"),
            ("https://@github.com/", "not a user name"),
            ("https://a@b@github.com/", "not a host name"),
            ("https://github.com:/", "not a port"),
            ("https://github.com:99999/", "not a port"),
            ("https://github.com:0/", "not a port"),
            ("https://github.com:+1/", "not a port"),
            ("https://-github.com/", "not a host name"),
            ("https://github.com/../internal/", "\"..\""),
            ("https://github.com/org/./", "\".\""),
            ("https://github.com//org/", "\"\""),
            ("https://github.com/a%2Fb/", "\"a%2Fb\""),
            ("git@github.com:/org/", "\"\""),
            ("https://github.com/?x=1", "query"),
        ] {
            let message = refusal(text);
            assert!(message.contains(reason), "{text:?}: {message}");
            assert!(
                message.contains("(expected e.g. \"https://github.com/\""),
                "{message}"
            );
        }
        assert_eq!(
            refusal(""),
            r#""" is not a git URL prefix: it is empty (expected e.g. "https://github.com/" or "git@github.com:")"#
        );
    }

    #[test]
    fn matches_whole_path_segments_only() {
        let org = prefix("https://github.com/org");
        assert!(org.matches(&repo("https://github.com/org/infra.git")));
        assert!(org.matches(&repo("https://github.com/org/group/infra")));
        assert!(!org.matches(&repo("https://github.com/organisation-evil/infra.git")));
        assert!(!org.matches(&repo("https://github.com/org.git")));
        assert!(!org.matches(&repo("https://github.com/other/org/infra.git")));
        let host = prefix("https://github.com");
        assert!(host.matches(&repo("https://github.com/org/infra.git")));
        assert!(!host.matches(&repo("https://github.com.evil.example/org/infra.git")));
        assert!(!host.matches(&repo("https://evil.example/github.com/infra.git")));
    }

    #[test]
    fn compares_scheme_and_host_without_case_and_paths_with_it() {
        let prefix = prefix("HTTPS://GitHub.COM/org/");
        assert!(prefix.matches(&repo("https://github.com/org/infra.git")));
        assert!(prefix.matches(&repo("HTTPS://GITHUB.COM/org/infra.git")));
        assert!(!prefix.matches(&repo("https://github.com/ORG/infra.git")));
        assert!(!prefix.matches(&repo("http://github.com/org/infra.git")));
        assert!(!prefix.matches(&repo("ssh://github.com/org/infra.git")));
    }

    #[test]
    fn a_port_matches_only_where_the_prefix_allows_it() {
        let default = prefix("https://github.com/");
        assert!(default.matches(&repo("https://github.com:443/org/infra.git")));
        assert!(!default.matches(&repo("https://github.com:8443/org/infra.git")));
        let local = prefix("http://127.0.0.1:8080/git/");
        assert!(local.matches(&repo("http://127.0.0.1:8080/git/org/infra.git")));
        assert!(!local.matches(&repo("http://127.0.0.1:8081/git/org/infra.git")));
        assert!(!local.matches(&repo("http://127.0.0.1/git/org/infra.git")));
        assert!(!local.matches(&repo("http://127.0.0.1:80/git/org/infra.git")));
    }

    #[test]
    fn userinfo_matches_only_where_the_prefix_names_it() {
        let https = prefix("https://github.com/");
        assert!(!https.matches(&repo("https://user@github.com/org/infra.git")));
        assert!(!https.matches(&repo("https://github.com@evil.example/org/infra.git")));
        let scp = prefix("git@github.com:");
        assert!(scp.matches(&repo("git@github.com:org/infra.git")));
        assert!(scp.matches(&repo("ssh://git@github.com/org/infra.git")));
        assert!(!scp.matches(&repo("root@github.com:org/infra.git")));
        assert!(!scp.matches(&repo("ssh://github.com/org/infra.git")));
        assert!(!scp.matches(&repo("https://git@github.com/org/infra.git")));
    }

    #[test]
    fn path_tricks_never_match() {
        let org = prefix("https://github.com/org/");
        for url in [
            "https://github.com/org/../internal/x.git",
            "https://github.com/org/%2e%2e/internal/x.git",
            "https://github.com/org%2Fevil/x.git",
            "https://github.com/org/..%2Fx.git",
        ] {
            let matched = RepoId::from_url(url).is_some_and(|r| org.matches(&r));
            assert!(!matched, "{url}");
        }
        // Segments as the server decodes them from a request path.
        for segments in [
            &["https", "github.com", "org", "..", "x.git"][..],
            &["https", "github.com", "org", "a/b", "x.git"],
            &["https", "github.com:443@evil.example", "org", "x.git"],
        ] {
            let owned: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
            let matched = RepoId::from_proxy_segments(&owned).is_some_and(|r| org.matches(&r));
            assert!(!matched, "{segments:?}");
        }
    }

    #[test]
    fn maps_to_the_proxy() {
        let base = "http://127.0.0.1:7878";
        for (text, proxy) in [
            (
                "https://github.com/",
                "http://127.0.0.1:7878/git/https/github.com/",
            ),
            (
                "HTTPS://github.com/org",
                "http://127.0.0.1:7878/git/https/github.com/org/",
            ),
            (
                "git@github.com:",
                "http://127.0.0.1:7878/git/ssh/git@github.com/",
            ),
            (
                "git@github.com:org/",
                "http://127.0.0.1:7878/git/ssh/git@github.com/org/",
            ),
        ] {
            assert_eq!(prefix(text).proxy_prefix(base), proxy, "{text}");
        }
    }
}
