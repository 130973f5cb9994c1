//! When a crash test SIGKILLs its child: a random moment within a window that widens whenever a child
//! was killed before it reported any progress, and narrows again (never below where it started) when
//! a child got far. On an idle machine children are killed early, during their start-up and first
//! operations as much as later; on a loaded one (the test command runs two test binaries beside
//! background builds) a fixed window could kill every child before its first acknowledged operation,
//! and the test would then prove nothing (`fills > KILLS` failed with 1 fill over 50 kills). The window
//! is bounded, so a run stays bounded in time.

use std::time::Duration;

/// The widest the window grows, in milliseconds.
const MAX_SPAN_MS: u64 = 3_000;
/// Acknowledged operations from one child beyond which the window narrows.
const FAR: usize = 20;

pub struct KillWindow {
    floor_ms: u64,
    initial_span_ms: u64,
    span_ms: u64,
}

impl KillWindow {
    /// Kills `floor_ms + random % span_ms` milliseconds after the child starts, to begin with.
    pub fn new(floor_ms: u64, span_ms: u64) -> Self {
        assert!(span_ms > 0);
        KillWindow { floor_ms, initial_span_ms: span_ms, span_ms }
    }

    /// How long to let the next child run, from a random number.
    pub fn delay(&self, random: u64) -> Duration {
        Duration::from_millis(self.floor_ms + random % self.span_ms)
    }

    /// Reports how many operations the child just killed had acknowledged: none doubles the window (up
    /// to three seconds), more than twenty halves it (down to its first width).
    pub fn after_kill(&mut self, progress: usize) {
        if progress == 0 {
            self.span_ms = (self.span_ms * 2).min(MAX_SPAN_MS);
        } else if progress > FAR {
            self.span_ms = (self.span_ms / 2).max(self.initial_span_ms);
        }
    }

    /// The window's width now, in milliseconds, for a test's report.
    pub fn span_ms(&self) -> u64 {
        self.span_ms
    }
}

#[test]
fn kill_window_widens_to_its_bound_and_narrows_to_its_start() {
    let mut w = KillWindow::new(10, 100);
    assert_eq!(w.delay(u64::MAX), Duration::from_millis(10 + u64::MAX % 100));
    for _ in 0..10 {
        w.after_kill(0);
    }
    assert_eq!(w.span_ms(), MAX_SPAN_MS);
    assert!(w.delay(u64::MAX) < Duration::from_millis(10 + MAX_SPAN_MS));
    w.after_kill(FAR); // some progress, not far: unchanged
    assert_eq!(w.span_ms(), MAX_SPAN_MS);
    for _ in 0..10 {
        w.after_kill(FAR + 1);
    }
    assert_eq!(w.span_ms(), 100);
}
