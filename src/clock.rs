//! Time as the cache sees it: nanoseconds since the cache was built.
//!
//! Reading the clock costs a system call's worth of time (~20 ns), so the cache reads it only when a
//! deadline can exist (a TTL or time-to-idle is configured, or the entry has its own TTL).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A clock that only moves when told to, for testing expiry without sleeping.
///
/// Give a clone to [`CacheBuilder::clock`](crate::CacheBuilder::clock) and advance it from the test.
///
/// ```
/// use std::time::Duration;
/// use cachefs::{Cache, ManualClock};
///
/// let clock = ManualClock::new();
/// let cache: Cache<u32, u32> = Cache::builder()
///     .max_capacity(10)
///     .time_to_live(Duration::from_secs(5))
///     .clock(clock.clone())
///     .build();
/// cache.insert(1, 10);
/// clock.advance(Duration::from_secs(4));
/// assert_eq!(cache.get(&1), Some(10));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(cache.get(&1), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    // Plain std atomic even under loom: tests drive it from one thread, and it orders nothing.
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: the value is the only data; readers need no other memory ordered with it.
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Time elapsed on this clock since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// The cache's source of time.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// Real monotonic time, measured from the cache's creation.
    System(Instant),
    /// Test time.
    Manual(ManualClock),
}

impl Clock {
    pub(crate) fn system() -> Self {
        Clock::System(Instant::now())
    }

    /// Nanoseconds since the epoch of this clock; never `u64::MAX` (reserved for "never").
    pub(crate) fn now(&self) -> u64 {
        let nanos = match self {
            Clock::System(epoch) => u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Manual(clock) => clock.nanos.load(Ordering::Relaxed),
        };
        nanos.min(NEVER - 1)
    }
}

/// The deadline of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// The deadline `ttl` after `now`; [`NEVER`] without a TTL, or without a clock reading (a cache whose
/// entries cannot expire reads no clock).
pub(crate) fn expiry(ttl: Option<Duration>, now: Option<u64>) -> u64 {
    match (ttl, now) {
        (Some(ttl), Some(now)) => deadline_after(now, ttl),
        _ => NEVER,
    }
}

/// `now + d`, saturating at [`NEVER`].
pub(crate) fn deadline_after(now: u64, d: Duration) -> u64 {
    let d = u64::try_from(d.as_nanos()).unwrap_or(NEVER);
    now.saturating_add(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let m = ManualClock::new();
        let c = Clock::Manual(m.clone());
        assert_eq!(c.now(), 0);
        m.advance(Duration::from_millis(3));
        assert_eq!(c.now(), 3_000_000);
        assert_eq!(m.elapsed(), Duration::from_millis(3));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = Clock::system();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline_after(5, Duration::MAX), NEVER);
        assert_eq!(deadline_after(5, Duration::from_nanos(7)), 12);
        let m = ManualClock::new();
        m.advance(Duration::MAX);
        assert_eq!(Clock::Manual(m).now(), NEVER - 1);
    }
}
