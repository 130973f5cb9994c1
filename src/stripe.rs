//! Which stripe of a striped structure (statistics, latency recorders) the calling thread uses.
//!
//! Each thread gets a number the first time it asks, from a global counter; structures take it modulo
//! their stripe count. Threads that run at the same time thus mostly use different stripes, and so
//! different cache lines or locks. Report-only: plain `std` atomics, even under loom.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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

/// One stripe of `N` counters, on cache lines of its own.
#[derive(Debug)]
#[repr(align(128))]
struct CounterStripe<const N: usize>([AtomicU64; N]);

/// `N` report-only counters, striped by thread: a thread adds to its own stripe, a reader sums them.
/// Relaxed throughout: the counters order nothing.
#[derive(Debug)]
pub(crate) struct StripedCounters<const N: usize> {
    stripes: Box<[CounterStripe<N>]>,
}

impl<const N: usize> StripedCounters<N> {
    /// At least `stripes` stripes (rounded up to a power of two).
    pub(crate) fn new(stripes: usize) -> Self {
        let n = stripes.next_power_of_two().max(1);
        StripedCounters { stripes: (0..n).map(|_| CounterStripe(std::array::from_fn(|_| AtomicU64::new(0)))).collect() }
    }

    /// Adds `n` to counter `i` in this thread's stripe.
    #[inline]
    pub(crate) fn add(&self, i: usize, n: u64) {
        // The stripe count is a power of two.
        self.stripes[thread_index() & (self.stripes.len() - 1)].0[i].fetch_add(n, Relaxed);
    }

    /// Counter `i`, summed over the stripes.
    pub(crate) fn total(&self, i: usize) -> u64 {
        self.stripes.iter().map(|s| s.0[i].load(Relaxed)).sum()
    }

    /// Every counter, summed over the stripes.
    pub(crate) fn totals(&self) -> [u64; N] {
        let mut total = [0u64; N];
        for s in self.stripes.iter() {
            for (t, c) in total.iter_mut().zip(&s.0) {
                *t += c.load(Relaxed);
            }
        }
        total
    }
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
