//! A circuit breaker in front of the remote tier.
//!
//! Closed: calls go through; `failures` consecutive failures open it. Open: calls are skipped (reads go
//! straight to the origin, uploads are dropped) until `cool_down` has passed. Then one call, the probe,
//! goes through (half-open): success closes the breaker, failure opens it for another `cool_down`. A
//! probe that never reports (its thread died) is replaced after `cool_down`.
//!
//! The state sits behind one small mutex, held for a comparison and an assignment, never across the
//! remote call itself.

use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// The breaker's state, as exported in [`TierStats`](super::TierStats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go to the remote tier.
    Closed,
    /// The remote tier failed repeatedly; it is skipped until the cool-down ends.
    Open,
    /// One probe call is testing whether the remote tier is back.
    HalfOpen,
}

impl BreakerState {
    /// 0 closed, 1 open, 2 half-open (the gauge's value).
    pub fn code(self) -> u64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    /// Protects the state machine; see the module docs.
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker { threshold: threshold.max(1), cool_down, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    /// Whether a call may go to the remote tier now.
    pub(crate) fn allow(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now < until => false,
            State::HalfOpen { probe_started } if now < probe_started + self.cool_down => false,
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { probe_started: now };
                true
            }
        }
    }

    pub(crate) fn success(&self) {
        *self.state.lock() = State::Closed { failures: 0 };
    }

    /// Records a failure; true if it opened the breaker.
    pub(crate) fn failure(&self) -> bool {
        let mut state = self.state.lock();
        let open = State::Open { until: Instant::now() + self.cool_down };
        match *state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                *state = State::Closed { failures: failures + 1 };
                false
            }
            State::Closed { .. } | State::HalfOpen { .. } => {
                *state = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.state.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(30));
        assert!(!b.failure() && !b.failure());
        b.success();
        assert!(!b.failure() && !b.failure());
        assert!(b.failure(), "third consecutive failure opens");
        assert_eq!((b.state(), b.allow()), (BreakerState::Open, false));
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "the probe");
        assert_eq!((b.state(), b.allow()), (BreakerState::HalfOpen, false), "one probe at a time");
        assert!(b.failure(), "a failed probe opens again");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.success();
        assert_eq!((b.state(), b.allow()), (BreakerState::Closed, true));
        assert_eq!(BreakerState::HalfOpen.code(), 2);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_the_cool_down() {
        let b = Breaker::new(1, Duration::from_millis(20));
        b.failure();
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow(), "the first probe never reported");
    }
}
