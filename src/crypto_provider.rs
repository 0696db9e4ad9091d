//! The process's rustls crypto provider. reqwest 0.13, the HTTP client of
//! both gix (git mirrors) and object_store (the shared tier), is built
//! without a provider of its own (its default, aws-lc-rs, is a C build): it
//! takes the process default, which must be set before a client is built.
//! That default is ring, the provider the rest of tfmirror already uses.

use std::sync::Once;

/// Installs ring as the process default, once; call it before building a
/// reqwest 0.13 client.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a default is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
