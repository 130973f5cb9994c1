//! Prefetching for sequential readers: after a read that continues a sequential scan, ask the kernel to
//! load the next `n` records in the background, at most once per half window.
//!
//! A read of `id` continues a scan when `id` is at most `n` past the previous read (any thread's). Each
//! request covers `id + 1 ..= id + n`, and the next one is made when reads get within `n / 2` of its end,
//! so a steady scan makes one system call per `n / 2` records. The state is two relaxed atomics: hints
//! only, a race between readers costs at most a duplicate or a missed request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub(crate) struct Prefetcher {
    n: u64,
    /// The id after the previous read.
    next: AtomicU64,
    /// The id after the end of the last request.
    until: AtomicU64,
}

impl Prefetcher {
    pub(crate) fn new(n: u32) -> Prefetcher {
        Prefetcher { n: u64::from(n), next: AtomicU64::new(u64::MAX), until: AtomicU64::new(0) }
    }

    /// Notes a read of `id`; returns the range to prefetch as `(first id, count)`, if one is due.
    #[inline]
    pub(crate) fn after_read(&self, id: u64) -> Option<(u64, u64)> {
        if self.n == 0 {
            return None;
        }
        let expected = self.next.swap(id.saturating_add(1), Relaxed);
        let sequential = id >= expected.saturating_sub(1) && id - expected.saturating_sub(1) <= self.n;
        if !sequential {
            return None;
        }
        let until = self.until.load(Relaxed);
        let first = id.checked_add(1)?;
        if until > first.saturating_add(self.n / 2) && until <= first.saturating_add(self.n) {
            return None;
        }
        self.until.store(first.saturating_add(self.n), Relaxed);
        Some((first, self.n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_asks_once_per_half_window_and_random_reads_never() {
        let p = Prefetcher::new(64);
        let asks: Vec<_> = (1000..1200).filter_map(|id| p.after_read(id)).collect();
        // The first read only starts the scan; then one request per 32 reads.
        assert_eq!(asks.first(), Some(&(1002, 64)));
        assert!((6..=8).contains(&asks.len()), "{asks:?}");
        let p = Prefetcher::new(64);
        let random = [5u64, 90_000, 17, 4_000_000, 123_456, 9];
        assert!(random.iter().all(|&id| p.after_read(id).is_none()));
        assert!(Prefetcher::new(0).after_read(1).is_none());
        let p = Prefetcher::new(8);
        p.after_read(u64::MAX - 1);
        assert_eq!(p.after_read(u64::MAX), None, "no overflow at the end of the id space");
    }
}
