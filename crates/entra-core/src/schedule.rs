//! When a discovery provider's key set is fetched (rule 10): the periodic refresh with jitter, the
//! refresh an unknown `kid` may force, retries with backoff, and when a fetch some worker claimed
//! is no longer running. Pure arithmetic on seconds and milliseconds; the module's shared zone
//! keeps the numbers.

use std::time::Duration;

/// Default interval between key set refreshes (Microsoft's libraries use 12-24 h; an hour
/// follows rotations sooner at no real cost).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// Default least interval between refreshes forced by an unknown `kid`.
pub const DEFAULT_REFRESH_ON_UNKNOWN_KID: Duration = Duration::from_secs(300);
/// Longest wait between retries after failures (seconds).
pub const MAX_BACKOFF: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// `refresh`: how often the key set is fetched again.
    pub refresh: Duration,
    /// `refresh_on_unknown_kid`: the least time between two refreshes forced by tokens.
    pub on_unknown_kid: Duration,
}

impl Schedule {
    pub fn new(refresh: Option<Duration>, on_unknown_kid: Option<Duration>) -> Schedule {
        Schedule {
            refresh: refresh.unwrap_or(DEFAULT_REFRESH),
            on_unknown_kid: on_unknown_kid.unwrap_or(DEFAULT_REFRESH_ON_UNKNOWN_KID),
        }
    }

    /// When to refresh after a fetch succeeded at `now`: the interval, up to a tenth earlier
    /// (chosen by `random`), so that the workers of many servers do not refresh in step.
    pub fn next_refresh(&self, now: u64, random: u64) -> u64 {
        let refresh = self.refresh.as_secs();
        now + refresh - random % (refresh / 10 + 1)
    }

    /// Whether a token with an unknown `kid` may force a refresh at `now`, the last forced one
    /// having been at `last` (seconds): at most once per interval, whoever sends such tokens.
    /// `last` is 0 before the first: the clock (monotonic, from boot) may still be below the
    /// interval.
    pub fn may_force(&self, last: u64, now: u64) -> bool {
        last == 0 || now >= last.saturating_add(self.on_unknown_kid.as_secs())
    }
}

/// Seconds until the next try after `failures` failures in a row before this one: 1, 2, 4, ...
/// up to [`MAX_BACKOFF`].
pub fn retry_in(failures: u32) -> u64 {
    (1u64 << failures.min(6)).min(MAX_BACKOFF)
}

/// Whether a fetch is due at `now`: the first keys (`next_refresh` starts at 0), the refresh
/// interval or a retry's backoff elapsed, or a refresh forced by an unknown `kid`.
pub fn is_due(now: u64, next_refresh: u64, forced: bool) -> bool {
    forced || now >= next_refresh
}

/// Whether a fetch claimed at `started_ms` still runs at `now_ms`: one that outlives twice the
/// longest a fetch can take (three requests, each within `timeout` per phase) died with its
/// worker or was reloaded away.
pub fn claim_is_live(started_ms: u64, now_ms: u64, timeout: Duration) -> bool {
    let longest = 3 * timeout.as_millis() as u64;
    now_ms.saturating_sub(started_ms) < 2 * longest + 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_comes_up_to_a_tenth_early_never_late() {
        let s = Schedule::new(Some(Duration::from_secs(3600)), None);
        let times: Vec<u64> = (0..1000).map(|r| s.next_refresh(10_000, r * 7919)).collect();
        assert!(times.iter().all(|t| (10_000 + 3240..=10_000 + 3600).contains(t)));
        assert!(times.contains(&(10_000 + 3600)) && times.iter().any(|t| *t < 10_000 + 3300));
        assert_eq!(
            Schedule::new(Some(Duration::from_secs(5)), None).next_refresh(0, 1),
            5,
            "no jitter under 10 s"
        );
    }

    #[test]
    fn defaults_follow_microsoft_guidance() {
        let s = Schedule::new(None, None);
        assert_eq!((s.refresh, s.on_unknown_kid), (Duration::from_secs(3600), Duration::from_secs(300)));
    }

    #[test]
    fn an_unknown_kid_forces_at_most_one_refresh_per_interval() {
        let s = Schedule::new(None, Some(Duration::from_secs(300)));
        assert!(s.may_force(0, 1_700_000_000), "the first one may (0: never forced)");
        assert!(!s.may_force(1000, 1299));
        assert!(s.may_force(1000, 1300));
        assert!(!s.may_force(u64::MAX, u64::MAX - 1), "no overflow");
    }

    #[test]
    fn retries_back_off_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (0..10).map(retry_in).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(retry_in(u32::MAX), 60);
    }

    #[test]
    fn a_fetch_is_due_first_periodically_and_when_forced() {
        assert!(is_due(5, 0, false), "no keys yet");
        assert!(!is_due(5, 6, false));
        assert!(is_due(6, 6, false));
        assert!(is_due(5, 6, true));
    }

    #[test]
    fn a_claimed_fetch_goes_stale_after_twice_three_timeouts() {
        let timeout = Duration::from_secs(5);
        assert!(claim_is_live(1000, 1000, timeout));
        assert!(claim_is_live(1000, 1000 + 30_999, timeout));
        assert!(!claim_is_live(1000, 1000 + 31_000, timeout));
        assert!(claim_is_live(5000, 1000, timeout), "a clock read before the claim is not stale");
    }
}
