//! The one random key each server draws, and everything derived from it:
//! the owner's secret in URLs, team members' capabilities, and the grants
//! in the URLs of private files.
//!
//! One key, so a restart revokes all of them at once; derivations are
//! HMAC-SHA256 (the `hmac` crate) under a label per use, so no derived
//! value can stand in for another; comparisons take constant time
//! (`subtle`), so timing tells a guesser nothing.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// 256 bits from the operating system's generator.
#[derive(Clone)]
pub struct ServerKey(Arc<[u8; 32]>);

impl ServerKey {
    pub fn generate() -> std::io::Result<ServerKey> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(std::io::Error::other)?;
        Ok(ServerKey(Arc::new(key)))
    }

    /// The HMAC of `parts` for the use `label`. Each part is preceded by
    /// its length, so no two lists of parts share an input.
    pub fn mac(&self, label: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0[..])
            .expect("HMAC takes a key of any length");
        for part in std::iter::once(label.as_bytes()).chain(parts.iter().copied()) {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// [`ServerKey::mac`] as the first `chars` hex digits.
    pub fn mac_hex(&self, label: &str, parts: &[&[u8]], chars: usize) -> String {
        let mut hex = hex::encode(self.mac(label, parts));
        hex.truncate(chars);
        hex
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

/// Whether `a` and `b` are equal, in time that depends on their length
/// only.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_differ_by_key_label_and_parts() {
        let (a, b) = (
            ServerKey::generate().unwrap(),
            ServerKey::generate().unwrap(),
        );
        assert_ne!(a.mac("x", &[b"1"]), b.mac("x", &[b"1"]));
        assert_ne!(a.mac("x", &[b"1"]), a.mac("y", &[b"1"]));
        assert_ne!(a.mac("x", &[b"12"]), a.mac("x", &[b"1", b"2"]));
        assert_eq!(a.mac("x", &[b"1"]), a.clone().mac("x", &[b"1"]));
        assert_eq!(a.mac_hex("x", &[], 40).len(), 40);
        assert_eq!(format!("{a:?}"), "ServerKey(..)");
    }

    #[test]
    fn compares_whole_values() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
