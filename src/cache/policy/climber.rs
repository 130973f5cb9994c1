//! Hill climbing over the W-TinyLFU window size (the adaptive scheme of Einziger, Eytan, Friedman and
//! Manes, "Adaptive Software Cache Management", Middleware 2018, as Caffeine ships it).
//!
//! The climber watches the hit rate over samples of accesses. After each sample it moves the window
//! by a step: on in the same direction if the hit rate improved, back the other way if it fell. Steps
//! shrink geometrically so the size settles, and jump back to full size when the hit rate changes
//! sharply (the workload changed). A recency-heavy workload thus grows the window towards LRU; a
//! frequency-heavy one shrinks it towards pure TinyLFU.

/// First step, and the step after a restart, as a fraction of capacity.
const STEP: f64 = 0.0625;
/// Each step is this fraction of the one before.
const DECAY: f64 = 0.98;
/// A hit-rate change this large restarts the climb with a full step.
const RESTART: f64 = 0.05;

#[derive(Debug)]
pub(crate) struct HillClimber {
    previous_rate: f64,
    /// Signed, in capacity units: the next adjustment if the hit rate keeps improving.
    step: f64,
    capacity: f64,
}

impl HillClimber {
    pub(crate) fn new(capacity: u64) -> Self {
        let capacity = capacity as f64;
        HillClimber { previous_rate: 0.0, step: STEP * capacity, capacity }
    }

    /// Starts over for a cache of `capacity`.
    pub(crate) fn restart(&mut self, capacity: u64) {
        *self = HillClimber::new(capacity);
    }

    /// Takes the hit rate of the sample just ended; returns how much to grow (positive) or shrink
    /// (negative) the window.
    pub(crate) fn step(&mut self, rate: f64) -> f64 {
        let change = rate - self.previous_rate;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART { STEP * self.capacity * amount.signum() } else { DECAY * amount };
        self.previous_rate = rate;
        amount
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn keeps_direction_while_improving_and_reverses_on_loss() {
        let mut c = HillClimber::new(1_000);
        let mut sample = |hits: u64| c.step(hits as f64 / 100.0);
        // From nothing to 50%: a big change, so the next step is a full one, in the same direction.
        assert!((sample(50) - 62.5).abs() < 1e-9);
        // A small gain: keep going, and the step after this one decays.
        assert!((sample(51) - 62.5).abs() < 1e-9);
        // A small loss: turn round, with the decayed step.
        let back = sample(50);
        assert!((back + 62.5 * DECAY).abs() < 1e-9, "{back}");
        // A gain: keep going the way we now go (down).
        let on = sample(90);
        assert!((on + 62.5 * DECAY * DECAY).abs() < 1e-9, "{on}");
        // That gain was big: the climb restarts with a full step, still downwards.
        assert!((sample(91) + 62.5).abs() < 1e-9);
    }
}
