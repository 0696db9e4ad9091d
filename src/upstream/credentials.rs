//! Registry credentials: forwarded from the client, or read from the
//! environment the way Terraform and OpenTofu read them.
//!
//! A [`Credential`] is only ever held in memory; its `Debug` output is
//! redacted so a stray `{:?}` in a log line cannot leak it.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// The value of an `Authorization` header for a registry API request.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    pub fn from_header(value: &str) -> Credential {
        Credential(value.to_owned())
    }

    pub fn bearer(token: &str) -> Credential {
        Credential(format!("Bearer {token}"))
    }

    pub fn header_value(&self) -> &str {
        &self.0
    }

    /// What is remembered of a credential (in the index, next to what it
    /// fetched): a hash, so the cache never holds the token itself. Two
    /// requests present the same credential when their hashes are equal.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"tfmirror credential\0");
        hasher.update(self.0.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The variable that gives Terraform a token for `host`, for messages that
/// tell the user what to set: `TF_TOKEN_registry_terraform_io`.
pub fn token_variable(host: &str) -> String {
    let encoded = host
        .to_ascii_lowercase()
        .replace('-', "__")
        .replace('.', "_");
    format!("TF_TOKEN_{encoded}")
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Tokens from `TF_TOKEN_<host>` and `TOFU_TOKEN_<host>` variables, keyed
/// by lowercase hostname. OpenTofu's variable wins when both name a host,
/// as it does in OpenTofu.
#[derive(Default, Clone)]
pub struct EnvTokens(HashMap<String, Credential>);

impl EnvTokens {
    pub fn from_env() -> EnvTokens {
        EnvTokens::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> EnvTokens {
        let mut tf = HashMap::new();
        let mut tofu = HashMap::new();
        for (name, value) in vars {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            if let Some(host) = name.strip_prefix("TF_TOKEN_") {
                tf.insert(host_from_var(host), Credential::bearer(value));
            } else if let Some(host) = name.strip_prefix("TOFU_TOKEN_") {
                tofu.insert(host_from_var(host), Credential::bearer(value));
            }
        }
        tf.extend(tofu);
        EnvTokens(tf)
    }

    pub fn get(&self, host: &str) -> Option<&Credential> {
        self.0.get(&host.to_ascii_lowercase())
    }
}

/// Hostnames cannot appear in variable names as they are, so Terraform
/// spells `-` as `__` and `.` as `_`.
fn host_from_var(encoded: &str) -> String {
    encoded
        .replace("__", "\0")
        .replace('_', ".")
        .replace('\0', "-")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hostnames_like_terraform() {
        assert_eq!(
            host_from_var("registry_terraform_io"),
            "registry.terraform.io"
        );
        assert_eq!(
            host_from_var("my__registry_example_com"),
            "my-registry.example.com"
        );
    }

    #[test]
    fn reads_both_prefixes() {
        let tokens = EnvTokens::from_vars([
            (
                "TF_TOKEN_registry_terraform_io".to_owned(),
                "abc".to_owned(),
            ),
            (
                "TOFU_TOKEN_registry_opentofu_org".to_owned(),
                "def".to_owned(),
            ),
            ("TF_TOKEN_empty_example".to_owned(), " ".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ]);
        assert_eq!(
            tokens.get("Registry.Terraform.io").unwrap().header_value(),
            "Bearer abc"
        );
        assert_eq!(
            tokens.get("registry.opentofu.org").unwrap().header_value(),
            "Bearer def"
        );
        assert!(tokens.get("empty.example").is_none());
    }

    #[test]
    fn token_variables_round_trip_hostnames() {
        let variable = token_variable("My-Registry.example.com");
        assert_eq!(variable, "TF_TOKEN_my__registry_example_com");
        let host = host_from_var(variable.strip_prefix("TF_TOKEN_").unwrap());
        assert_eq!(host, "my-registry.example.com");
    }

    #[test]
    fn hashes_tell_credentials_apart_without_holding_them() {
        let hash = Credential::bearer("secret").sha256();
        assert_eq!(hash, Credential::from_header("Bearer secret").sha256());
        assert_ne!(hash, Credential::bearer("other").sha256());
        assert!(!hash.contains("secret"));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let shown = format!("{:?}", Credential::bearer("secret"));
        assert!(!shown.contains("secret"));
    }
}
