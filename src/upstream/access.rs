//! Who may read what was fetched from an upstream with a credential.
//!
//! A registry document fetched with a client's token may be private: it is
//! served again only to a request whose credential either fetched it or was
//! accepted by the same upstream host recently ([`AcceptedCredentials`]).
//! Terraform sends no credential when it downloads the files such a
//! document points at (provider zips and checksums, module archives), so
//! tfmirror's URLs for those files carry a [`Grants`] token instead: proof
//! that whoever holds the URL was given the private document naming it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::server_key::{same, ServerKey};

/// Credentials an upstream host answered with a 2xx, by host and
/// [`super::Credential::sha256`], each with when it last did. Memory only:
/// a restart forgets them, and the next request with one asks again.
#[derive(Clone)]
pub struct AcceptedCredentials {
    window: Duration,
    accepted: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

impl AcceptedCredentials {
    /// An acceptance counts for `window` (the `metadata_ttl`).
    pub fn new(window: Duration) -> AcceptedCredentials {
        AcceptedCredentials {
            window,
            accepted: Arc::default(),
        }
    }

    /// `host` just answered a request carrying this credential.
    pub fn record(&self, host: &str, credential_sha256: &str) {
        let now = Instant::now();
        let mut accepted = self.lock();
        // Forgetting expired entries here bounds the map by the number of
        // credentials seen within one window.
        accepted.retain(|_, at| now.duration_since(*at) < self.window);
        accepted.insert(
            (host.to_ascii_lowercase(), credential_sha256.to_owned()),
            now,
        );
    }

    /// Whether `host` accepted this credential within the window.
    pub fn is_accepted(&self, host: &str, credential_sha256: &str) -> bool {
        let key = (host.to_ascii_lowercase(), credential_sha256.to_owned());
        self.lock()
            .get(&key)
            .is_some_and(|at| at.elapsed() < self.window)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.accepted.lock().expect("accepted credentials poisoned")
    }
}

/// How long a grant in a URL works. Terraform fetches a package's files
/// right after the answer naming them; a URL copied into a log or a
/// ticket stops opening anything soon after.
const GRANT_LIFETIME: Duration = Duration::from_secs(3600);

/// Tokens tfmirror puts in the URLs of files named by a private answer:
/// 8 hex digits of expiry (seconds since the epoch) and 32 of an HMAC of
/// the scope and expiry under the server's key, so no state is kept per
/// token and a restart revokes them all.
#[derive(Clone)]
pub struct Grants {
    key: ServerKey,
}

impl Grants {
    pub fn new(key: ServerKey) -> Grants {
        Grants { key }
    }

    /// A grant for `scope` (a document key), valid for [`GRANT_LIFETIME`].
    pub fn issue(&self, scope: &str) -> String {
        let expires = unix_secs().saturating_add(GRANT_LIFETIME.as_secs());
        let expires = u32::try_from(expires).unwrap_or(u32::MAX);
        format!("{expires:08x}{}", self.mac(scope, expires))
    }

    /// Whether `grant` was issued by this server for `scope` and is still
    /// valid.
    pub fn verify(&self, scope: &str, grant: &str) -> bool {
        if grant.len() != 40 || !grant.is_ascii() {
            return false;
        }
        let (expires, mac) = grant.split_at(8);
        let Ok(expires) = u32::from_str_radix(expires, 16) else {
            return false;
        };
        if u64::from(expires) < unix_secs() {
            return false;
        }
        same(mac.as_bytes(), self.mac(scope, expires).as_bytes())
    }

    fn mac(&self, scope: &str, expires: u32) -> String {
        let expires = expires.to_be_bytes();
        self.key.mac_hex("grant", &[scope.as_bytes(), &expires], 32)
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants::new(ServerKey::generate().unwrap())
    }

    #[test]
    fn a_grant_opens_its_scope_only() {
        let grants = grants();
        let grant = grants.issue("providers/download/a");
        assert!(grants.verify("providers/download/a", &grant));
        assert!(!grants.verify("providers/download/b", &grant));
        assert!(
            !self::grants().verify("providers/download/a", &grant),
            "another server's"
        );
        let mut forged = grant.clone().into_bytes();
        forged[39] = if forged[39] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(!grants.verify("providers/download/a", &forged));
        assert!(!grants.verify("providers/download/a", "short"));
    }

    #[test]
    fn an_expired_grant_opens_nothing() {
        let grants = grants();
        let expired = 1_000u32;
        let grant = format!("{expired:08x}{}", grants.mac("s", expired));
        assert!(!grants.verify("s", &grant));
    }

    #[test]
    fn acceptance_is_per_host_and_expires() {
        let accepted = AcceptedCredentials::new(Duration::from_millis(100));
        accepted.record("Registry.example", "h1");
        assert!(accepted.is_accepted("registry.example", "h1"));
        assert!(!accepted.is_accepted("other.example", "h1"));
        assert!(!accepted.is_accepted("registry.example", "h2"));
        std::thread::sleep(Duration::from_millis(150));
        assert!(!accepted.is_accepted("registry.example", "h1"));
    }
}
