//! Sealed (offline) mode: the server contacts no upstream at all and
//! answers only from the cache.
//!
//! The server is built with one `Option<Sealed>` (from the config, see
//! [`crate::config::Config::offline`]) and hands it to the few places every
//! upstream contact goes through: `upstream::Upstream` (discovery, registry
//! API, every download), `git::GitMirrors` (ref checks and fetches), the
//! document cache (which then never lets a copy expire), and the server's
//! construction (no shared tier is opened). A refusal names what was asked
//! for and why the server is sealed, so a user who forgot the setting sees
//! where to turn it off.

use std::fmt;
use std::path::PathBuf;

/// The environment variable that seals the server; `exec --offline` sets it
/// for the server it starts.
pub const OFFLINE_ENV: &str = "TFMIRROR_OFFLINE";

/// Why the server is sealed: the setting the user would change to unseal
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// `offline = true` in the config file (its path, when read from one).
    ConfigKey(Option<PathBuf>),
    /// `TFMIRROR_OFFLINE=1`, set by the user or by `exec --offline`.
    Environment,
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sealed::ConfigKey(Some(path)) => write!(f, "offline = true in {}", path.display()),
            Sealed::ConfigKey(None) => f.write_str("offline = true in the config"),
            Sealed::Environment => write!(f, "{OFFLINE_ENV}=1, as `tfmirror exec --offline` sets"),
        }
    }
}

/// A request a sealed server refused: `what` is not cached, and the
/// upstream may not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", refusal(what, sealed))]
pub struct Offline {
    pub what: String,
    pub sealed: Sealed,
}

/// The one wording of a sealed server's refusal of `what`, `sealed` being
/// why it is sealed; also what a client says with the reason the server's
/// health answer gave.
pub fn refusal(what: &str, sealed: &dyn fmt::Display) -> String {
    format!("{what} is not in the cache, and tfmirror is offline (sealed: {sealed})")
}

impl Sealed {
    /// The refusal of `what`.
    pub fn refuse(&self, what: impl Into<String>) -> Offline {
        Offline {
            what: what.into(),
            sealed: self.clone(),
        }
    }
}

/// Reads [`OFFLINE_ENV`]: `1`/`true`/`yes` seal, `0`/`false`/`no` or
/// unset/empty do not; anything else is refused rather than guessed.
pub fn from_env_value(value: Option<&str>) -> Result<Option<Sealed>, BadOfflineEnv> {
    match value.map(str::trim).unwrap_or("") {
        "" | "0" | "false" | "no" => Ok(None),
        "1" | "true" | "yes" => Ok(Some(Sealed::Environment)),
        other => Err(BadOfflineEnv(other.to_owned())),
    }
}

/// A value of [`OFFLINE_ENV`] that is neither on nor off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{OFFLINE_ENV}={0:?}: expected 1 or 0")]
pub struct BadOfflineEnv(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_artifact_and_the_setting() {
        let sealed = Sealed::ConfigKey(Some("/etc/tfmirror.toml".into()));
        let refusal = sealed.refuse("registry.terraform.io/hashicorp/aws 5.89.0 linux_amd64");
        assert_eq!(
            refusal.to_string(),
            "registry.terraform.io/hashicorp/aws 5.89.0 linux_amd64 is not in the cache, and \
             tfmirror is offline (sealed: offline = true in /etc/tfmirror.toml)"
        );
        let by_env = Sealed::Environment.refuse("x").to_string();
        assert!(by_env.contains("TFMIRROR_OFFLINE=1"), "{by_env}");
        assert!(by_env.contains("exec --offline"), "{by_env}");
    }

    #[test]
    fn the_variable_is_on_off_or_refused() {
        assert_eq!(from_env_value(None), Ok(None));
        assert_eq!(from_env_value(Some("")), Ok(None));
        assert_eq!(from_env_value(Some("0")), Ok(None));
        assert_eq!(from_env_value(Some("false")), Ok(None));
        assert_eq!(from_env_value(Some("1")), Ok(Some(Sealed::Environment)));
        assert_eq!(from_env_value(Some("true")), Ok(Some(Sealed::Environment)));
        assert_eq!(
            from_env_value(Some("maybe")),
            Err(BadOfflineEnv("maybe".into()))
        );
    }
}
