//! How old a cached copy may be: the one classification of an age against
//! `metadata_ttl` and `stale_while_revalidate`, used by metadata documents
//! (`documents`) and by git mirrors (`git::freshness`), so that a registry
//! answer and a mirror go stale by the same rule.

use std::time::Duration;

/// What a copy of a given age is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// Younger than the ttl: served as it is.
    Fresh,
    /// Past the ttl but within the stale window after it: served at once
    /// while one background refresh runs.
    Revalidate,
    /// Older still: refreshed before it is served (and served only when
    /// the upstream fails).
    Expired,
}

impl Age {
    /// `age` against `ttl`, then `stale_while_revalidate` past it. Each
    /// bound belongs to the older class: a copy exactly `ttl` old is no
    /// longer fresh.
    pub fn classify(age: Duration, ttl: Duration, stale_while_revalidate: Duration) -> Age {
        if age < ttl {
            Age::Fresh
        } else if age < ttl.saturating_add(stale_while_revalidate) {
            Age::Revalidate
        } else {
            Age::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn fresh_then_revalidate_then_expired() {
        let classify = |age| Age::classify(secs(age), secs(60), secs(30));
        assert_eq!(classify(0), Age::Fresh);
        assert_eq!(classify(59), Age::Fresh);
        assert_eq!(classify(60), Age::Revalidate);
        assert_eq!(classify(89), Age::Revalidate);
        assert_eq!(classify(90), Age::Expired);
        assert_eq!(classify(10_000), Age::Expired);
    }

    #[test]
    fn without_a_stale_window_a_copy_goes_from_fresh_to_expired() {
        assert_eq!(
            Age::classify(secs(59), secs(60), Duration::ZERO),
            Age::Fresh
        );
        assert_eq!(
            Age::classify(secs(60), secs(60), Duration::ZERO),
            Age::Expired
        );
    }

    #[test]
    fn a_zero_ttl_is_never_fresh_and_huge_windows_do_not_overflow() {
        assert_eq!(
            Age::classify(Duration::ZERO, Duration::ZERO, secs(1)),
            Age::Revalidate
        );
        assert_eq!(
            Age::classify(secs(5), secs(1), Duration::MAX),
            Age::Revalidate
        );
    }
}
