//! Prefetching for sequential readers: while reads continue a sequential scan, keep between `n` and `2n`
//! records ahead of the reader requested from the kernel (`madvise(WILLNEED)` when mapped,
//! `posix_fadvise(WILLNEED)` otherwise), in requests of `n` records that never overlap.
//!
//! A read of `id` continues a scan when `id` is at most `n` past the previous read (any thread's). The
//! first such read requests `id + 1 .. id + 1 + 2n`; later ones request the next `n` records whenever
//! fewer than `n` remain requested ahead. A steady scan therefore makes one system call per `n`
//! records, and the device always has the next window in flight while the reader consumes the current
//! one. The state is two relaxed atomics: hints only; a race between readers costs at most a
//! duplicate or a missed request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub(crate) struct Prefetcher {
    n: u64,
    /// The id after the previous read.
    next: AtomicU64,
    /// The id after the end of what has been requested.
    until: AtomicU64,
}

impl Prefetcher {
    pub(crate) fn new(n: u32) -> Prefetcher {
        Prefetcher { n: u64::from(n), next: AtomicU64::new(u64::MAX), until: AtomicU64::new(0) }
    }

    /// Notes a read of `id`; returns the range to prefetch as `(first id, count)`, if one is due.
    #[cfg(test)]
    pub(crate) fn after_read(&self, id: u64) -> Option<(u64, u64)> {
        self.after_reads(id, id)
    }

    /// Notes reads of `first..=last` (one record, or a run of `read_many`); returns the range to
    /// prefetch as `(first id, count)`, if one is due.
    #[inline]
    pub(crate) fn after_reads(&self, first: u64, last: u64) -> Option<(u64, u64)> {
        if self.n == 0 {
            return None;
        }
        let previous = self.next.swap(last.saturating_add(1), Relaxed).wrapping_sub(1);
        if previous == u64::MAX || first < previous || first - previous > self.n {
            return None;
        }
        let first = last.checked_add(1)?;
        let until = self.until.load(Relaxed);
        let (start, count) = if until < first || until - first > 2 * self.n {
            // A new scan, or one that jumped: start a lookahead of two windows.
            (first, 2 * self.n)
        } else if until - first < self.n {
            (until, self.n)
        } else {
            return None;
        };
        self.until.store(start.saturating_add(count), Relaxed);
        Some((start, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_keeps_one_to_two_windows_requested_and_random_reads_none() {
        let p = Prefetcher::new(64);
        let asks: Vec<_> = (1000..1400).filter_map(|id| p.after_read(id).map(|a| (id, a))).collect();
        // The first read only starts the scan; the second requests two windows; then one window per 64
        // reads, each starting where the last ended.
        assert_eq!(asks[0], (1001, (1002, 128)));
        for w in asks.windows(2) {
            let ((_, (s0, c0)), (id, (s1, c1))) = (w[0], w[1]);
            assert_eq!((s1, c1), (s0 + c0, 64), "no overlap, no gap");
            assert!(s1 + c1 - (id + 1) >= 64 && s1 - (id + 1) < 64, "between one and two windows ahead at {id}");
        }
        assert!((6..=7).contains(&asks.len()), "{asks:?}");
        let p = Prefetcher::new(64);
        assert!([5u64, 90_000, 17, 4_000_000, 123_456, 9].iter().all(|&id| p.after_read(id).is_none()));
        assert!(Prefetcher::new(0).after_read(1).is_none());
        let p = Prefetcher::new(8);
        p.after_read(u64::MAX - 1);
        assert_eq!(p.after_read(u64::MAX), None, "no overflow at the end of the id space");
        // A jump forward restarts the lookahead from the new position.
        let p = Prefetcher::new(8);
        p.after_read(10);
        assert_eq!(p.after_read(11), Some((12, 16)));
        p.after_read(1000);
        assert_eq!(p.after_read(1001), Some((1002, 16)));
        // Runs of reads count as reads of their last id.
        let p = Prefetcher::new(8);
        assert_eq!(p.after_reads(0, 99), None);
        assert_eq!(p.after_reads(100, 199), Some((200, 16)));
        assert_eq!(p.after_reads(200, 299), Some((300, 16)), "the lookahead fell behind: start again");
    }
}
