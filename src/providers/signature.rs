//! Checks the detached OpenPGP signature a registry publishes over a provider's SHA256SUMS file.
//!
//! Terraform checks it again itself, but the proxy checks first so that nothing unverified ever
//! lands in the cache (DESIGN.md, "Security rules"). The rules follow Terraform's own check
//! (go-crypto `CheckDetachedSignature` against each `gpg_public_keys` entry):
//!
//! - the signer may be the primary key or any subkey of any of the listed keys;
//! - a subkey counts only if it is validly bound to its primary key, is not revoked, and is not
//!   marked as unable to sign (a binding without key flags is accepted, as go-crypto does);
//! - a key that cannot be read is an error, not something to skip, as in Terraform.

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{PublicKey, SignatureType};
use pgp::types::{KeyDetails, VerifyingKey};

/// Why a SHA256SUMS signature was not accepted. Messages are written for the person running
/// `terraform init`, who sees them through the proxy's error answer or log.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the registry listed no signing keys, so the SHA256SUMS signature cannot be checked")]
    NoKeys,
    #[error("one of the registry's signing keys could not be read: {0}")]
    UnreadableKey(String),
    #[error("the SHA256SUMS signature could not be read: {0}")]
    UnreadableSignature(String),
    /// The signature names an issuer that is none of the registry's keys: signed by someone else.
    #[error(
        "the SHA256SUMS signature was made by key {signer}, which is not one of the registry's \
         signing keys"
    )]
    UnknownSigner { signer: String },
    /// The issuer is one of the registry's keys (or the signature names none), but the signature
    /// does not check out: the file or the signature was altered.
    #[error("the SHA256SUMS signature does not verify against any of the registry's signing keys")]
    NoMatchingKey,
}

/// Verifies a detached OpenPGP signature (binary, as HashiCorp publishes `.sig` files, or
/// ASCII-armored) over `message` against any of the registry's ASCII-armored public keys,
/// primary key or any subkey.
/// Returns the id of the key that made the signature (upper-case hex, as
/// gpg prints it), for the record of how a SHA256SUMS was verified.
pub fn verify_detached(
    message: &[u8],
    signature: &[u8],
    armored_public_keys: &[&str],
) -> Result<String, SignatureError> {
    if armored_public_keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let keys = read_keys(armored_public_keys)?;
    let signatures = read_signatures(signature)?;
    verify_with_keys(message, &signatures, &keys)
}

fn verify_with_keys(
    message: &[u8],
    signatures: &[DetachedSignature],
    keys: &[SignedPublicKey],
) -> Result<String, SignatureError> {
    let mut issuer_known = false;
    for sig in signatures {
        for key in keys {
            if verifies(sig, &key.primary_key, message) {
                return Ok(key_id(&key.primary_key));
            }
            issuer_known |= names_issuer(sig, &key.primary_key);
            for sub in key.public_subkeys.iter() {
                if names_issuer(sig, &sub.key) {
                    issuer_known = true;
                }
                if usable_for_signing(&key.primary_key, sub) && verifies(sig, &sub.key, message) {
                    return Ok(key_id(&sub.key));
                }
            }
        }
    }

    let issuers: Vec<String> = signatures.iter().flat_map(issuer_names).collect();
    if issuer_known || issuers.is_empty() {
        Err(SignatureError::NoMatchingKey)
    } else {
        Err(SignatureError::UnknownSigner {
            signer: issuers.join(", "),
        })
    }
}

/// Each armored text may hold several keys (a key ring); all of them are candidates.
fn read_keys(armored: &[&str]) -> Result<Vec<SignedPublicKey>, SignatureError> {
    let mut keys = Vec::new();
    for text in armored {
        let (parsed, _headers) = SignedPublicKey::from_string_many(text)
            .map_err(|e| SignatureError::UnreadableKey(e.to_string()))?;
        let before = keys.len();
        for key in parsed {
            keys.push(key.map_err(|e| SignatureError::UnreadableKey(e.to_string()))?);
        }
        if keys.len() == before {
            return Err(SignatureError::UnreadableKey(
                "the armored text holds no public key".into(),
            ));
        }
    }
    Ok(keys)
}

/// `from_reader_many` tells binary from armored data by the first byte's high bit.
fn read_signatures(signature: &[u8]) -> Result<Vec<DetachedSignature>, SignatureError> {
    let unreadable = |e: pgp::errors::Error| SignatureError::UnreadableSignature(e.to_string());
    if signature.is_empty() {
        return Err(SignatureError::UnreadableSignature("it is empty".into()));
    }
    let (parsed, _headers) = DetachedSignature::from_reader_many(signature).map_err(unreadable)?;
    let signatures = parsed.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
    if signatures.is_empty() {
        return Err(SignatureError::UnreadableSignature(
            "it holds no signature packet".into(),
        ));
    }
    Ok(signatures)
}

/// pgp's `verify` itself refuses a key whose id or fingerprint differs from the issuer the
/// signature names, so trying every key is both safe and cheap.
fn verifies(sig: &DetachedSignature, key: &impl VerifyingKey, message: &[u8]) -> bool {
    matches!(
        sig.signature.typ(),
        Some(SignatureType::Binary | SignatureType::Text)
    ) && sig.verify(key, message).is_ok()
}

fn names_issuer(sig: &DetachedSignature, key: &impl KeyDetails) -> bool {
    let s = &sig.signature;
    s.issuer_key_id().contains(&&key.legacy_key_id())
        || s.issuer_fingerprint().contains(&&key.fingerprint())
}

/// A key's 64-bit id in upper-case hex, like the registry's `key_id`.
fn key_id(key: &impl KeyDetails) -> String {
    hex::encode_upper(key.legacy_key_id().as_ref())
}

/// Upper-case hex, like the `key_id` field of the registry protocol and gpg's output.
fn issuer_names(sig: &DetachedSignature) -> Vec<String> {
    let s = &sig.signature;
    let fingerprints = s.issuer_fingerprint().into_iter().map(|f| format!("{f:X}"));
    let ids = s
        .issuer_key_id()
        .into_iter()
        .map(|id| hex::encode_upper(id.as_ref()));
    fingerprints.chain(ids).take(1).collect()
}

/// A subkey signs for its primary only if a binding signature from the primary says so, the
/// subkey signed back (the embedded primary-key binding that stops someone attaching another
/// person's signing key to their own certificate), and no revocation by the primary exists.
fn usable_for_signing(primary: &PublicKey, sub: &SignedPublicSubKey) -> bool {
    let bound = sub.signatures.iter().any(|binding| {
        let flags = binding.key_flags();
        binding.typ() == Some(SignatureType::SubkeyBinding)
            && (flags == Default::default() || flags.sign())
            && binding.verify_subkey_binding(primary, &sub.key).is_ok()
            && binding
                .embedded_signature()
                .is_some_and(|back| back.verify_primary_key_binding(&sub.key, primary).is_ok())
    });
    let revoked = sub.signatures.iter().any(|revocation| {
        revocation.typ() == Some(SignatureType::SubkeyRevocation)
            && revocation.verify_subkey_binding(primary, &sub.key).is_ok()
    });
    bound && !revoked
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pgp::composed::{ArmorOptions, SignedSecretKey};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::ser::Serialize;
    use pgp::types::Password;
    use rand::SeedableRng;

    pub(crate) const SIGNING: &str = include_str!("../../tests/fixtures/keys/signing.asc");
    pub(crate) const SIGNING_PUB: &str = include_str!("../../tests/fixtures/keys/signing.pub.asc");
    const OTHER: &str = include_str!("../../tests/fixtures/keys/other.asc");
    const OTHER_PUB: &str = include_str!("../../tests/fixtures/keys/other.pub.asc");
    const SUBKEY: &str = include_str!("../../tests/fixtures/keys/subkey.asc");
    const SUBKEY_PUB: &str = include_str!("../../tests/fixtures/keys/subkey.pub.asc");
    const GPG_SAMPLE: &[u8] = include_bytes!("../../tests/fixtures/keys/gpg-sample.txt");
    const GPG_SIG: &[u8] = include_bytes!("../../tests/fixtures/keys/gpg-sample.txt.sig");
    const GPG_SUBKEY_SIG: &[u8] =
        include_bytes!("../../tests/fixtures/keys/gpg-sample.txt.subkey.sig");

    const SUMS: &[u8] = b"aaaa  terraform-provider-demo_1.0.0_linux_amd64.zip\n";

    fn secret(armored: &str) -> SignedSecretKey {
        SignedSecretKey::from_string(armored).expect("test key").0
    }

    fn sign_with(key: &impl pgp::types::SigningKey, message: &[u8]) -> DetachedSignature {
        // RSA v4 signatures draw no randomness; the rng only satisfies the signature.
        let rng = rand::rngs::StdRng::seed_from_u64(7);
        DetachedSignature::sign_binary_data(
            rng,
            key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            message,
        )
        .expect("sign")
    }

    /// Binary detached signature by the primary key, the form HashiCorp publishes.
    pub(crate) fn sign(armored_secret: &str, message: &[u8]) -> Vec<u8> {
        sign_with(&secret(armored_secret).primary_key, message)
            .to_bytes()
            .expect("serialize")
    }

    #[test]
    fn good_signature_verifies() {
        let sig = sign(SIGNING, SUMS);
        verify_detached(SUMS, &sig, &[SIGNING_PUB]).expect("verifies");
    }

    #[test]
    fn any_of_several_keys_may_sign() {
        let sig = sign(SIGNING, SUMS);
        verify_detached(SUMS, &sig, &[OTHER_PUB, SUBKEY_PUB, SIGNING_PUB]).expect("verifies");
    }

    #[test]
    fn wrong_key_fails() {
        let sig = sign(OTHER, SUMS);
        let err = verify_detached(SUMS, &sig, &[SIGNING_PUB]).unwrap_err();
        assert!(
            matches!(&err, SignatureError::UnknownSigner { signer } if signer.ends_with("769DC489")),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains("not one of the registry's signing keys"));
    }

    #[test]
    fn tampered_message_fails() {
        let sig = sign(SIGNING, SUMS);
        let mut tampered = SUMS.to_vec();
        tampered[0] = b'b';
        let err = verify_detached(&tampered, &sig, &[SIGNING_PUB]).unwrap_err();
        assert!(matches!(err, SignatureError::NoMatchingKey), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the SHA256SUMS signature does not verify against any of the registry's signing keys"
        );
    }

    #[test]
    fn subkey_signature_verifies() {
        let key = secret(SUBKEY);
        let sig = sign_with(&key.secret_subkeys[0].key, SUMS);
        let sig = sig.to_bytes().unwrap();
        verify_detached(SUMS, &sig, &[SIGNING_PUB, SUBKEY_PUB]).expect("verifies");
    }

    #[test]
    fn subkey_without_its_binding_is_refused() {
        // pgp's parser already drops a subkey with no signature at all, so strip the binding in
        // memory to reach our own check: the signer is named, but is not a usable subkey.
        let sig = sign_with(&secret(SUBKEY).secret_subkeys[0].key, SUMS);
        let mut public = SignedPublicKey::from_string(SUBKEY_PUB).unwrap().0;
        verify_with_keys(
            SUMS,
            std::slice::from_ref(&sig),
            std::slice::from_ref(&public),
        )
        .expect("verifies while bound");
        public.public_subkeys[0].signatures.clear();
        let err = verify_with_keys(SUMS, &[sig], &[public]).unwrap_err();
        assert!(matches!(err, SignatureError::NoMatchingKey), "{err:?}");
    }

    #[test]
    fn armored_signature_accepted() {
        let sig = sign_with(&secret(SIGNING).primary_key, SUMS);
        let armored = sig.to_armored_bytes(ArmorOptions::default()).unwrap();
        assert!(armored.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
        verify_detached(SUMS, &armored, &[SIGNING_PUB]).expect("verifies");
    }

    #[test]
    fn signatures_made_by_gpg_verify() {
        let primary = verify_detached(GPG_SAMPLE, GPG_SIG, &[SIGNING_PUB]).expect("primary key");
        let subkey = verify_detached(GPG_SAMPLE, GPG_SUBKEY_SIG, &[SUBKEY_PUB]).expect("subkey");
        // The signer is named by its own 64-bit id, as gpg names it.
        for id in [&primary, &subkey] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        }
        assert_ne!(primary, subkey, "the subkey, not its primary, signed");
        let err = verify_detached(GPG_SAMPLE, GPG_SUBKEY_SIG, &[SIGNING_PUB]).unwrap_err();
        assert!(
            matches!(err, SignatureError::UnknownSigner { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_key_is_unreadable() {
        let sig = sign(SIGNING, SUMS);
        for key in ["not a key", "", SIGNING] {
            let err = verify_detached(SUMS, &sig, &[SIGNING_PUB, key]).unwrap_err();
            assert!(
                matches!(err, SignatureError::UnreadableKey(_)),
                "{key:.20}: {err:?}"
            );
        }
    }

    #[test]
    fn garbage_signature_is_unreadable() {
        for sig in [
            &b""[..],
            b"garbage",
            &[0x89, 0x01, 0xff, 0x00],
            b"-----BEGIN PGP SIGNATURE-----\n",
        ] {
            let err = verify_detached(SUMS, sig, &[SIGNING_PUB]).unwrap_err();
            assert!(
                matches!(err, SignatureError::UnreadableSignature(_)),
                "{sig:?}: {err:?}"
            );
        }
    }

    #[test]
    fn no_keys() {
        let sig = sign(SIGNING, SUMS);
        let err = verify_detached(SUMS, &sig, &[]).unwrap_err();
        assert!(matches!(err, SignatureError::NoKeys));
    }
}
