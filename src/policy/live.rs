//! `[policy]` on a running server: the one place the server keeps the
//! policy in effect, re-read from the config file when the file changes,
//! so that tightening it takes effect without a restart and without
//! deleting anything (issue 21).
//!
//! Only `[policy]` is live. Every other setting (ports, limits, upstreams,
//! `[git] mirror`, `[shared]`) is wired into the server's parts when it
//! starts and needs a restart (`tfmirror stop`, then the next `exec`). The
//! whole file is still parsed as at start, so a file that a restart would
//! refuse changes nothing here either.
//!
//! The rules, in [`look`]:
//! - The router calls [`LivePolicy::refresh`] before each request; at most
//!   once per [`CHECK_EVERY`] it stats the file, off the runtime threads.
//!   A request waits for a check under way, so no request after it is
//!   judged by the old policy.
//! - A file whose stamp (mtime, ctime, size, inode) is as last seen is
//!   not read, unless it changed less than [`RACY`] ago: a write within
//!   the same clock tick as the last check can leave the stamp as it was
//!   (git's "racy" index entries), so such a file is read and hashed again.
//! - Bytes as last read: nothing changes, and nothing is logged (a `touch`).
//! - New bytes that parse: their `[policy]` is swapped in, with one INFO
//!   line; a removed `[policy]` allows everything again.
//! - New bytes that do not parse, or a file that cannot be read (removed,
//!   larger than [`MAX_CONFIG_SIZE`]): the last good policy stays, with
//!   one WARN line naming the file and the error, once per change.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::Policy;
use crate::audit::AuditLog;
use crate::config::{Config, ConfigError};

/// How often, at most, the config file is looked at again.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A stamp younger than this is not trusted to tell a change apart.
const RACY: Duration = Duration::from_secs(2);

/// A config file is a few hundred bytes; a reload reads at most this.
const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// The policy in effect, and where it comes from. Cloned into each
/// handler; all clones share one policy.
#[derive(Clone)]
pub struct LivePolicy(Arc<Inner>);

struct Inner {
    /// The config file the server was started with; `None`: no file, the
    /// policy never changes.
    file: Option<PathBuf>,
    every: Duration,
    current: RwLock<Option<Arc<Policy>>>,
    watch: tokio::sync::Mutex<Watch>,
    /// Where refusals are recorded, once the server has an audit log.
    audit: OnceLock<AuditLog>,
}

/// The file as the last check found it.
struct Watch {
    checked: Option<Instant>,
    seen: Seen,
}

/// What is known of the file: its stamp and the hash of its bytes. The
/// default is a file that is not there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Seen {
    stamp: Option<Stamp>,
    digest: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    /// The inode's change time: set by every write, and by nothing a user
    /// can turn back, unlike the mtime.
    changed: SystemTime,
    len: u64,
    inode: (u64, u64),
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(metadata.ctime()).unwrap_or(0),
                u32::try_from(metadata.ctime_nsec()).unwrap_or(0),
            );
        Stamp {
            modified: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            changed,
            len: metadata.len(),
            inode: (metadata.dev(), metadata.ino()),
        }
    }

    /// Whether the file changed so recently that another write in the same
    /// clock tick could have left this stamp as it is.
    fn is_racy(&self) -> bool {
        let settled = SystemTime::now()
            .duration_since(self.changed)
            .is_ok_and(|age| age >= RACY);
        !settled
    }
}

/// What a look at the file found.
enum Look {
    /// Nothing new.
    Same,
    /// A new stamp on the same bytes, or the same failure.
    Restamped(Seen),
    /// New bytes that parse, and their `[policy]`.
    Changed(Seen, Option<Policy>),
    /// New bytes that do not parse, or a file that cannot be read.
    Failed(Seen, ConfigError),
}

/// Looks at `file`, known as `before`; blocking (a stat, and a read of a
/// few hundred bytes when it changed).
fn look(file: &Path, before: &Seen) -> Look {
    let failed = |seen: Seen, source: std::io::Error| {
        if seen == *before {
            Look::Same
        } else {
            let path = file.to_owned();
            Look::Failed(seen, ConfigError::Read { path, source })
        }
    };
    let stamp = match std::fs::metadata(file) {
        Ok(metadata) => Stamp::of(&metadata),
        Err(e) => return failed(Seen::default(), e),
    };
    if before.stamp == Some(stamp) && !stamp.is_racy() {
        return Look::Same;
    }
    let stamped = Seen {
        stamp: Some(stamp),
        digest: None,
    };
    let text = match read_bounded(file) {
        Ok(text) => text,
        Err(e) => return failed(stamped, e),
    };
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let seen = Seen {
        digest: Some(digest),
        ..stamped
    };
    if before.digest == Some(digest) {
        return match *before == seen {
            true => Look::Same,
            false => Look::Restamped(seen),
        };
    }
    match Config::from_text(file, &text) {
        Ok(config) => Look::Changed(seen, config.policy),
        Err(error) => Look::Failed(seen, error),
    }
}

/// The file's text, if it is no larger than [`MAX_CONFIG_SIZE`].
fn read_bounded(file: &Path) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} KiB", MAX_CONFIG_SIZE / 1024),
        ));
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The words a log line gives a policy.
fn described(policy: &Option<Policy>) -> String {
    match policy {
        Some(policy) => policy.summary(),
        None => "no [policy], everything is allowed".to_owned(),
    }
}

impl LivePolicy {
    /// A policy that never changes: for a server without a config file,
    /// and for tests.
    pub fn fixed(policy: Option<Policy>) -> LivePolicy {
        LivePolicy::new(None, policy, Seen::default(), CHECK_EVERY)
    }

    /// The policy of the config file `file`, kept current as it changes.
    /// `at_start` is the policy the server's config was read with, kept
    /// should the file have broken since.
    pub async fn watch(file: Option<PathBuf>, at_start: Option<Policy>) -> LivePolicy {
        LivePolicy::start(file, at_start, CHECK_EVERY).await
    }

    async fn start(file: Option<PathBuf>, at_start: Option<Policy>, every: Duration) -> LivePolicy {
        let Some(file) = file else {
            return LivePolicy::fixed(at_start);
        };
        let reading = file.clone();
        let first = tokio::task::spawn_blocking(move || look(&reading, &Seen::default())).await;
        let (policy, seen) = match first {
            Ok(Look::Changed(seen, policy)) => (policy, seen),
            Ok(Look::Failed(seen, error)) => {
                tracing::warn!("{error}; the policy read at start stays in effect");
                (at_start, seen)
            }
            Ok(Look::Same | Look::Restamped(_)) | Err(_) => (at_start, Seen::default()),
        };
        if policy.is_some() {
            let text = described(&policy);
            tracing::info!("policy from {}: {text}", file.display());
        }
        LivePolicy::new(Some(file), policy, seen, every)
    }

    fn new(file: Option<PathBuf>, policy: Option<Policy>, seen: Seen, every: Duration) -> Self {
        LivePolicy(Arc::new(Inner {
            file,
            every,
            current: RwLock::new(policy.map(Arc::new)),
            watch: tokio::sync::Mutex::new(Watch {
                checked: Some(Instant::now()),
                seen,
            }),
            audit: OnceLock::new(),
        }))
    }

    /// Records every refusal from now on in `audit` (the server's audit
    /// log, which starts with it); a second call changes nothing.
    pub fn record_refusals_in(&self, audit: AuditLog) {
        let _ = self.0.audit.set(audit);
    }

    /// The audit log refusals go to; one that records nothing until
    /// [`LivePolicy::record_refusals_in`].
    pub fn audit(&self) -> Option<&AuditLog> {
        self.0.audit.get()
    }

    /// The policy in effect; `None`: everything is allowed.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Looks at the config file if the last look is [`CHECK_EVERY`] old,
    /// and takes in a changed `[policy]`. Cheap otherwise: a lock and a
    /// clock read.
    pub async fn refresh(&self) {
        let Some(file) = &self.0.file else {
            return;
        };
        let mut watch = self.0.watch.lock().await;
        if watch.checked.is_some_and(|at| at.elapsed() < self.0.every) {
            return;
        }
        let (file, seen) = (file.clone(), watch.seen.clone());
        let looked = tokio::task::spawn_blocking(move || look(&file, &seen)).await;
        watch.checked = Some(Instant::now());
        match looked {
            Ok(look) => self.take(&mut watch, look),
            Err(e) => tracing::warn!("cannot look at the config file for [policy]: {e}"),
        }
    }

    /// Puts what a look found in effect, and says so.
    fn take(&self, watch: &mut Watch, look: Look) {
        let Some(file) = &self.0.file else {
            return;
        };
        match look {
            Look::Same => {}
            Look::Restamped(seen) => watch.seen = seen,
            Look::Changed(seen, policy) => {
                watch.seen = seen;
                let text = described(&policy);
                tracing::info!("policy reloaded from {}: {text}", file.display());
                *self
                    .0
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = policy.map(Arc::new);
            }
            Look::Failed(seen, error) => {
                watch.seen = seen;
                tracing::warn!("{error}; the policy in effect is kept");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Artifact;

    const ACME: &str = "[policy]\nproviders = [\"acme/*\"]\n";

    fn alpha() -> Artifact {
        Artifact::provider("registry.terraform.io/hashicorp/alpha", None)
    }

    /// Whether the policy in effect refuses hashicorp/alpha.
    fn refuses_alpha(live: &LivePolicy) -> bool {
        live.current().is_some_and(|p| p.judge(&alpha()).is_err())
    }

    /// Writes `text` as a new file renamed into place, as editors do: the
    /// new inode tells the change apart whatever the clock's resolution.
    fn replace(path: &Path, text: &str) {
        let next = path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    async fn live(path: &Path) -> LivePolicy {
        let at_start = Config::from_file(path).unwrap().policy;
        LivePolicy::start(Some(path.to_owned()), at_start, Duration::ZERO).await
    }

    #[tokio::test]
    async fn a_changed_policy_is_taken_in_and_a_removed_one_allows_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "idle_timeout = \"60s\"\n").unwrap();
        let live = live(&path).await;
        assert!(live.current().is_none());

        replace(&path, &format!("idle_timeout = \"60s\"\n{ACME}"));
        live.refresh().await;
        let refusal = live.current().unwrap().judge(&alpha()).unwrap_err();
        assert_eq!(
            refusal.file.as_deref(),
            Some(path.as_path()),
            "names the file"
        );

        replace(&path, "idle_timeout = \"60s\"\n");
        live.refresh().await;
        assert!(live.current().is_none(), "a removed [policy] allows all");
    }

    #[tokio::test]
    async fn a_broken_file_keeps_the_last_good_policy_and_warns_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, ACME).unwrap();
        let live = live(&path).await;
        assert!(refuses_alpha(&live));

        let mut watch = live.0.watch.lock().await;
        let before = watch.seen.clone();
        replace(&path, "[policy]\nproviders = [\"aws\"]\n");
        let Look::Failed(seen, error) = look(&path, &before) else {
            panic!("a bad entry fails");
        };
        assert_eq!(
            error.to_string(),
            format!(
                "invalid config {}:2:13: [policy] providers: \"aws\": expected \
                 [host/]namespace/type",
                path.display()
            )
        );
        live.take(&mut watch, Look::Failed(seen, error));
        assert!(refuses_alpha(&live), "the last good policy stays");
        // The same broken bytes again, even restamped, are no new failure:
        // one warning per change, not per request.
        assert!(matches!(look(&path, &watch.seen), Look::Same));
        replace(&path, "[policy]\nproviders = [\"aws\"]\n");
        assert!(matches!(
            look(&path, &watch.seen),
            Look::Restamped(_) | Look::Same
        ));
        drop(watch);

        std::fs::remove_file(&path).unwrap();
        live.refresh().await;
        assert!(refuses_alpha(&live), "a removed file keeps it too");
        let watch = live.0.watch.lock().await;
        assert!(matches!(look(&path, &watch.seen), Look::Same));
        drop(watch);

        replace(&path, "[policy]\nproviders = [\"hashicorp/*\"]\n");
        live.refresh().await;
        assert!(live.current().is_some() && !refuses_alpha(&live));
    }

    #[tokio::test]
    async fn the_same_bytes_are_not_a_change_and_checks_are_spaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, ACME).unwrap();
        let live = live(&path).await;
        let seen = live.0.watch.lock().await.seen.clone();
        replace(&path, ACME);
        assert!(matches!(look(&path, &seen), Look::Restamped(_)));

        let spaced = LivePolicy::start(Some(path.clone()), None, Duration::from_secs(3600)).await;
        assert!(refuses_alpha(&spaced), "read at start");
        replace(&path, "");
        spaced.refresh().await;
        assert!(
            refuses_alpha(&spaced),
            "not looked at again within the hour"
        );
    }

    #[test]
    fn a_file_too_large_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let comment = format!("# {}\n", "x".repeat(MAX_CONFIG_SIZE as usize));
        std::fs::write(&path, format!("{ACME}{comment}")).unwrap();
        let Look::Failed(_, error) = look(&path, &Seen::default()) else {
            panic!("a huge file fails");
        };
        assert_eq!(
            error.to_string(),
            format!(
                "cannot read config file {}: larger than 1024 KiB",
                path.display()
            )
        );
    }
}
