//! Which stripe of a striped structure (statistics, latency recorders) the calling thread uses.
//!
//! Each thread gets a number the first time it asks, from a global counter; structures take it modulo
//! their stripe count. Threads that run at the same time thus mostly use different stripes, and so
//! different cache lines or locks. Report-only: plain `std` atomics, even under loom.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's number: stable for the thread's life, distinct from recently started threads'.
pub(crate) fn thread_index() -> usize {
    THREAD_INDEX.with(|c| {
        let i = c.get();
        if i != usize::MAX {
            return i;
        }
        // Relaxed: the counter only has to hand out distinct numbers.
        let i = NEXT_THREAD.fetch_add(1, Relaxed);
        c.set(i);
        i
    })
}

/// How many stripes a structure should have: the next power of two at or above the core count.
pub(crate) fn default_stripes() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get()).next_power_of_two()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_number_and_others_differ() {
        let mine = thread_index();
        assert_eq!(thread_index(), mine);
        let other = std::thread::spawn(thread_index).join().unwrap();
        assert_ne!(other, mine);
        assert!(default_stripes().is_power_of_two());
    }
}
