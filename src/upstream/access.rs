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
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

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
/// the scope and expiry under a key drawn when the server starts, so no
/// state is kept per token and a restart revokes them all.
#[derive(Clone)]
pub struct Grants {
    key: Arc<[u8; 32]>,
}

impl Grants {
    /// Draws a new key from the operating system.
    ///
    /// Reads 32 bytes of `/dev/urandom` once, when the server is built:
    /// a read that never blocks once the system has booted.
    pub fn new() -> Grants {
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut key))
            .expect("tfmirror needs /dev/urandom to make its URL grants");
        Grants { key: Arc::new(key) }
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
        constant_time_eq(mac.as_bytes(), self.mac(scope, expires).as_bytes())
    }

    fn mac(&self, scope: &str, expires: u32) -> String {
        let message = format!("{scope}\0{expires}");
        hex::encode(&hmac_sha256(&self.key[..], message.as_bytes())[..16])
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HMAC-SHA256 (RFC 2104) for a key of at most one block (64 bytes).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let padded = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(padded(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(padded(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guessed grant was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_grant_opens_its_scope_only() {
        let grants = Grants::new();
        let grant = grants.issue("providers/download/a");
        assert!(grants.verify("providers/download/a", &grant));
        assert!(!grants.verify("providers/download/b", &grant));
        assert!(
            !Grants::new().verify("providers/download/a", &grant),
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
        let grants = Grants::new();
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
