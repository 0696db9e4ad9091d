//! Who may use the server, decided before any route is looked at.
//!
//! - Every request must name the server by an address it was asked for
//!   (`Host`): a web page that rebinds a DNS name to 127.0.0.1 sends its
//!   own name and gets 421, with no body.
//! - The cache's owner is whoever can read `server.json` (0600): every URL
//!   tfmirror generates for the owner starts with the server's secret
//!   (`http://127.0.0.1:PORT/<secret>/...`), and changing the cache also
//!   needs it as `Authorization: Bearer <secret>`. Another local user who
//!   finds the port gets 404 for everything.
//! - A team server (`--tokens FILE`) also serves clients that present one
//!   of the file's tokens as `Authorization: Bearer`, the way Terraform
//!   sends `TF_TOKEN_<host>` to a `network_mirror` or `host`; they read,
//!   they never change the cache, and the token is not sent upstream.
//!   Terraform downloads packages, checksums and module archives *without*
//!   credentials, so the URLs a member's answers carry start with that
//!   member's capability: a path segment derived from the server's secret
//!   and the token's hash, which no one can make without both, and which
//!   stops working when the token leaves the file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use sha2::{Digest, Sha256};
use url::Url;

use crate::server_key::{same, ServerKey};

/// The owner's secret: 256 bits derived from the server's key, as
/// lowercase hex.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn of(key: &ServerKey) -> Secret {
        Secret(key.mac_hex("owner secret", &[], 64))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compared in constant time, so response timing tells an attacker
    /// nothing about how much of a guess was right.
    pub fn matches(&self, candidate: &str) -> bool {
        same(self.0.as_bytes(), candidate.as_bytes())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The team's client tokens, kept only as sha256 hashes.
pub struct MemberTokens(HashSet<[u8; 32]>);

/// A team member's capability: the path segment their answers' URLs start
/// with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability(String);

impl Capability {
    fn new(key: &ServerKey, token_hash: &[u8; 32]) -> Capability {
        Capability(key.mac_hex("member capability", &[token_hash], 40))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl MemberTokens {
    /// One token per line; blank lines and `#` comments are skipped.
    pub fn read(path: &Path) -> anyhow::Result<MemberTokens> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the tokens file {}: {e}", path.display()))?;
        let tokens = MemberTokens::parse(&text);
        if tokens.0.is_empty() {
            anyhow::bail!(
                "the tokens file {} holds no token (one per line)",
                path.display()
            );
        }
        Ok(tokens)
    }

    fn parse(text: &str) -> MemberTokens {
        let hashes = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|token| Sha256::digest(token.as_bytes()).into())
            .collect();
        MemberTokens(hashes)
    }

    /// The capability of each token, under this server's key.
    fn capabilities(&self, key: &ServerKey) -> Vec<(Capability, [u8; 32])> {
        self.0
            .iter()
            .map(|hash| (Capability::new(key, hash), *hash))
            .collect()
    }
}

/// The members a team server admits, by token hash and by capability.
struct Members(Vec<(Capability, [u8; 32])>);

impl Members {
    fn by_token(&self, token: &str) -> Option<&Capability> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.0
            .iter()
            .find(|(_, known)| same(known, &hash))
            .map(|(capability, _)| capability)
    }

    fn by_capability(&self, segment: &str) -> Option<&Capability> {
        self.0
            .iter()
            .find(|(capability, _)| same(capability.0.as_bytes(), segment.as_bytes()))
            .map(|(capability, _)| capability)
    }
}

/// The addresses a request may name in `Host`, each as `host:port`.
struct AllowedHosts {
    names: HashSet<String>,
    /// The port a `Host` without one means: HTTP clients leave out the
    /// scheme's default (443 for https).
    default_port: u16,
}

impl AllowedHosts {
    /// The loopback names with the server's port, the address it listens
    /// on when that is one address, and the public URL's authority.
    fn new(listen: SocketAddr, public_url: Option<&Url>, tls: bool) -> AllowedHosts {
        let port = listen.port();
        let mut hosts: HashSet<String> = ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .map(|host| format!("{host}:{port}"))
            .collect();
        if !listen.ip().is_unspecified() {
            hosts.insert(listen.to_string());
        }
        if let Some(url) = public_url {
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            let port = url.port_or_known_default().unwrap_or(443);
            hosts.insert(format!("{host}:{port}"));
        }
        AllowedHosts {
            names: hosts,
            default_port: if tls { 443 } else { 80 },
        }
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        // A port follows the last `:`, unless that is inside `[::1]`.
        let has_port = host
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.ends_with(']'));
        if has_port {
            self.names.contains(&host)
        } else {
            self.names
                .contains(&format!("{host}:{}", self.default_port))
        }
    }
}

/// Who a request comes from, once it has been let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Came by a URL carrying the secret; `bearer` when it also showed the
    /// secret as `Authorization: Bearer`, which changing the cache needs.
    Owner { bearer: bool },
    /// A team client, by a valid token or by a URL carrying its capability
    /// (`in_path`: the first path segment, to be dropped).
    Member {
        capability: Capability,
        in_path: bool,
    },
}

impl Caller {
    /// Whether the first path segment is the caller's credential.
    pub fn credential_in_path(&self) -> bool {
        match self {
            Caller::Owner { .. } => true,
            Caller::Member { in_path, .. } => *in_path,
        }
    }
}

/// Why a request is not let in; each has its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 421: the request names another host (DNS rebinding).
    ForeignHost,
    /// 404: no secret and no team: nothing here for this caller.
    Hidden,
    /// 401: a team server asked without a valid token.
    NoToken,
}

pub struct AccessPolicy {
    secret: Secret,
    hosts: AllowedHosts,
    members: Option<Members>,
}

/// What a request shows the policy.
pub struct Presented<'a> {
    pub host: Option<&'a str>,
    pub first_segment: Option<&'a str>,
    pub bearer: Option<&'a str>,
}

impl AccessPolicy {
    pub fn new(
        key: &ServerKey,
        listen: SocketAddr,
        tls: bool,
        public_url: Option<&Url>,
        members: Option<MemberTokens>,
    ) -> AccessPolicy {
        let members = members.map(|tokens| Members(tokens.capabilities(key)));
        AccessPolicy {
            secret: Secret::of(key),
            hosts: AllowedHosts::new(listen, public_url, tls),
            members,
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Lets a request in or says why not. An owner's request has the
    /// secret as its first path segment, a member's may have its
    /// capability there; the caller then drops it.
    pub fn check(&self, presented: &Presented<'_>) -> Result<Caller, Refusal> {
        if !presented.host.is_some_and(|host| self.hosts.allows(host)) {
            return Err(Refusal::ForeignHost);
        }
        if presented
            .first_segment
            .is_some_and(|segment| self.secret.matches(segment))
        {
            let bearer = presented
                .bearer
                .is_some_and(|token| self.secret.matches(token));
            return Ok(Caller::Owner { bearer });
        }
        let Some(members) = &self.members else {
            return Err(Refusal::Hidden);
        };
        if let Some(capability) = presented
            .first_segment
            .and_then(|segment| members.by_capability(segment))
        {
            return Ok(Caller::Member {
                capability: capability.clone(),
                in_path: true,
            });
        }
        match presented.bearer.and_then(|token| members.by_token(token)) {
            Some(capability) => Ok(Caller::Member {
                capability: capability.clone(),
                in_path: false,
            }),
            None => Err(Refusal::NoToken),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A team server's policy and its owner's secret.
    fn policy(members: Option<&str>) -> (AccessPolicy, String) {
        let listen: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let public = Url::parse("https://mirror.example.com/").unwrap();
        let policy = AccessPolicy::new(
            &ServerKey::generate().unwrap(),
            listen,
            true,
            Some(&public),
            members.map(MemberTokens::parse),
        );
        let secret = policy.secret().as_str().to_owned();
        (policy, secret)
    }

    fn presented<'a>(host: &'a str, first: &'a str, bearer: Option<&'a str>) -> Presented<'a> {
        Presented {
            host: Some(host),
            first_segment: Some(first),
            bearer,
        }
    }

    #[test]
    fn a_foreign_host_is_refused_before_anything_else() {
        let (policy, secret) = policy(None);
        let secret = secret.as_str();
        for host in [
            "evil.example:8443",
            "127.0.0.1:9999",
            "mirror.example.com:8443",
        ] {
            assert_eq!(
                policy.check(&presented(host, secret, Some(secret))),
                Err(Refusal::ForeignHost),
                "{host}"
            );
        }
        let missing = Presented {
            host: None,
            first_segment: Some(secret),
            bearer: None,
        };
        assert_eq!(policy.check(&missing), Err(Refusal::ForeignHost));
        for host in [
            "127.0.0.1:8443",
            "LOCALHOST:8443",
            "[::1]:8443",
            "mirror.example.com",
            "mirror.example.com:443",
        ] {
            assert!(
                policy.check(&presented(host, secret, None)).is_ok(),
                "{host}"
            );
        }
    }

    #[test]
    fn the_secret_makes_the_owner_and_its_bearer_may_change_things() {
        let (policy, secret) = policy(None);
        let secret = secret.as_str();
        let host = "127.0.0.1:8443";
        assert_eq!(
            policy.check(&presented(host, secret, None)),
            Ok(Caller::Owner { bearer: false })
        );
        assert_eq!(
            policy.check(&presented(host, secret, Some(secret))),
            Ok(Caller::Owner { bearer: true })
        );
        assert_eq!(
            policy.check(&presented(host, &secret[1..], Some(secret))),
            Err(Refusal::Hidden)
        );
        assert_eq!(
            policy.check(&presented(host, "v1", None)),
            Err(Refusal::Hidden)
        );
    }

    #[test]
    fn team_members_need_a_listed_token_or_its_capability() {
        let (policy, _) = policy(Some("# the team\n\nalpha-token\n  beta-token  \n"));
        let host = "mirror.example.com";
        let Ok(Caller::Member {
            capability,
            in_path: false,
        }) = policy.check(&presented(host, "v1", Some("beta-token")))
        else {
            panic!("a listed token is a member");
        };
        assert_eq!(
            policy.check(&presented(host, capability.as_str(), None)),
            Ok(Caller::Member {
                capability: capability.clone(),
                in_path: true
            }),
            "a URL carrying the capability needs no token: Terraform sends none for downloads"
        );
        let Ok(Caller::Member {
            capability: other, ..
        }) = policy.check(&presented(host, "v1", Some("alpha-token")))
        else {
            panic!("a listed token is a member");
        };
        assert_ne!(other, capability, "each token has its own");
        let (elsewhere, _) = self::policy(Some("beta-token"));
        assert_eq!(
            elsewhere.check(&presented(host, capability.as_str(), None)),
            Err(Refusal::NoToken),
            "a capability holds only under the key it was made with"
        );
        assert_eq!(
            policy.check(&presented(host, "v1", Some("# the team"))),
            Err(Refusal::NoToken)
        );
        assert_eq!(
            policy.check(&presented(host, "v1", None)),
            Err(Refusal::NoToken)
        );
    }

    #[test]
    fn reads_bearer_headers() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn secrets_are_long_hidden_and_new_each_time() {
        let a = Secret::of(&ServerKey::generate().unwrap());
        let b = Secret::of(&ServerKey::generate().unwrap());
        assert_eq!(a.as_str().len(), 64);
        assert!(!a.matches(b.as_str()));
        assert!(a.matches(a.as_str()));
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }
}
