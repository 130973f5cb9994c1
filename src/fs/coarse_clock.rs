//! Millisecond time for metadata expiry, cheap enough to read on every metadata hit.
//!
//! `Instant::now()` costs about 20 ns here, as much as the whole lookup it would guard. Linux's
//! `CLOCK_MONOTONIC_COARSE` is read from the vDSO without a fence in a few nanoseconds, at the cost of
//! resolution (one scheduler tick, 1–4 ms), which is ample for a TTL measured in seconds. Tests use a
//! [`ManualClock`] instead.

use std::sync::OnceLock;
use std::time::Instant;

use crate::ManualClock;

#[derive(Debug, Clone)]
pub(crate) enum CoarseClock {
    System,
    Manual(ManualClock),
}

impl CoarseClock {
    /// Milliseconds on a monotonic clock with an arbitrary origin.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            CoarseClock::System => system_ms(),
            CoarseClock::Manual(c) => u64::try_from(c.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(target_os = "linux")]
#[inline]
fn system_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, and CLOCK_MONOTONIC_COARSE is
    // supported by every Linux since 2.6.32; the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return fallback_ms();
    }
    (ts.tv_sec as u64).saturating_mul(1000) + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn system_ms() -> u64 {
    fallback_ms()
}

fn fallback_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn system_time_moves_forward_and_manual_time_follows_its_clock() {
        let (a, f) = (CoarseClock::System.now_ms(), fallback_ms());
        std::thread::sleep(Duration::from_millis(20));
        let (b, g) = (CoarseClock::System.now_ms(), fallback_ms());
        // The coarse clock ticks every 1-4 ms: it saw most of the 20 ms, and (on a loaded machine) at
        // most a few seconds.
        assert!((15..5_000).contains(&(b - a)), "coarse clock moved {} ms in a 20 ms sleep", b - a);
        assert!((20..5_000).contains(&(g - f)), "fallback clock moved {} ms in a 20 ms sleep", g - f);
        let m = ManualClock::new();
        let c = CoarseClock::Manual(m.clone());
        m.advance(Duration::from_millis(1500));
        assert_eq!(c.now_ms(), 1500);
    }
}
