//! Waiting for a record to be published: `RingBuffer::wait_for`.
//!
//! - **In the writer's process** (the writer handle, and its clones through `Arc`): a condition
//!   variable. A waiter counts itself in `waiting`, then checks the published id under the mutex and
//!   sleeps on the condition variable; the writer stores the published id, then reads `waiting`, and only
//!   if someone waits takes the mutex and notifies. Both the store and the count are `SeqCst`, so either
//!   the writer sees the waiter (and its notification, sent under the mutex, cannot slip between the
//!   waiter's check and its sleep) or the waiter sees the new id. A write with no waiter costs one load.
//!   Wake-up latency is the scheduler's: tens of microseconds.
//! - **Read-only handles** (usually another process) cannot share a condition variable with the
//!   writer: they poll the published id in the shared header page, spinning briefly, then yielding, then
//!   sleeping with a back-off capped at [`POLL_MAX`] (1 ms): an idle reader costs about a thousand
//!   wake-ups a second, and sees a new record up to 1 ms after it is published plus the scheduler's
//!   delay; while records keep coming the back-off restarts with every wait and stays short. Measured
//!   in `tests/ring_tail.rs` (debug build, another process, this project's loaded 2-core VM): a record
//!   written after a 20 ms pause reached the reader about 2 ms later (median), at most 6 ms. A futex on
//!   the shared page would wake sooner, but read-only handles map it read-only and cannot register as
//!   waiters, and waking on every write would cost the writer a system call per record.

use std::time::{Duration, Instant};

use super::header::Control;
use crate::sync::{AtomicU64, Condvar, Mutex, Ordering::SeqCst};

/// The longest sleep between two polls of a read-only handle.
pub(crate) const POLL_MAX: Duration = Duration::from_millis(1);

/// The writer process's waiters.
#[derive(Debug)]
pub(crate) struct Waiters {
    /// Threads in `wait_for`.
    waiting: AtomicU64,
    /// Guards nothing but the sleep itself (the state is the published id).
    lock: Mutex<()>,
    cond: Condvar,
}

impl Default for Waiters {
    fn default() -> Self {
        Waiters { waiting: AtomicU64::new(0), lock: Mutex::new(()), cond: Condvar::new() }
    }
}

impl Waiters {
    /// Wakes every waiter; the caller has just published. Costs a load when nobody waits.
    #[inline]
    pub(crate) fn notify(&self) {
        if self.waiting.load(SeqCst) > 0 {
            drop(self.lock.lock());
            self.cond.notify_all();
        }
    }

    /// Waits until `published()` exceeds `id` or `deadline` passes (`None`: no deadline).
    pub(crate) fn wait(&self, id: u64, deadline: Option<Instant>, published: impl Fn() -> u64) -> bool {
        if published() > id {
            return true;
        }
        self.waiting.fetch_add(1, SeqCst);
        let mut guard = self.lock.lock();
        let reached = loop {
            if published() > id {
                break true;
            }
            match deadline {
                None => guard = self.cond.wait(guard),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    guard = self.cond.wait_for(guard, d - now);
                }
            }
        };
        drop(guard);
        self.waiting.fetch_sub(1, SeqCst);
        reached
    }
}

/// Polls `control` until the published id exceeds `id` or `deadline` passes.
pub(crate) fn poll(control: &Control, id: u64, deadline: Option<Instant>) -> bool {
    let mut round = 0u32;
    let mut sleep = Duration::from_micros(10);
    loop {
        if control.published() > id {
            return true;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if round < 64 {
            std::hint::spin_loop();
        } else if round < 80 {
            std::thread::yield_now();
        } else {
            let left = deadline.map_or(sleep, |d| d - now);
            std::thread::sleep(sleep.min(left));
            sleep = (sleep * 2).min(POLL_MAX);
        }
        round = round.saturating_add(1);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64 as Published;

    #[test]
    fn a_waiter_wakes_on_publish_and_times_out_otherwise() {
        let waiters = Arc::new(Waiters::default());
        let published = Arc::new(Published::new(0));
        let p = published.clone();
        assert!(!waiters.wait(0, Some(Instant::now() + Duration::from_millis(10)), || p.load(SeqCst)));
        let (w, p) = (waiters.clone(), published.clone());
        let waiter = std::thread::spawn(move || w.wait(4, None, || p.load(SeqCst)));
        // Publish in steps; only the last one satisfies the waiter.
        for v in 1..=5 {
            std::thread::sleep(Duration::from_millis(2));
            published.store(v, SeqCst);
            waiters.notify();
        }
        assert!(waiter.join().unwrap());
        assert_eq!(waiters.waiting.load(SeqCst), 0);
    }
}
