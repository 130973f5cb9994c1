//! The lossy buffer of reads that lets `get` record recency without an exclusive lock.
//!
//! A hit pushes `(slot, generation)` here instead of reordering the policy's queues, which would need the
//! shard's write lock. The next writer of the shard (or the reader that fills the buffer, if it can take
//! the write lock without waiting) drains the buffer under the write lock and replays the reads, oldest
//! first, into the policy. This is Caffeine's read-buffer design.
//!
//! Under contention a record may be lost (two readers claim the same cell after a drain reset the
//! cursor, or a drainer resets the cursor before a slow reader stores). That costs a little policy
//! precision, never correctness: a record only reorders a queue, and its generation is checked against
//! the slot so a stale record cannot promote whatever entry reused the slot. Single-threaded nothing is
//! lost, so one-shard LRU stays exact.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Cells per shard. Small under loom so the model stays tractable.
#[cfg(not(loom))]
pub(crate) const CELLS: usize = 64;
#[cfg(loom)]
pub(crate) const CELLS: usize = 2;

const EMPTY: u64 = 0;

#[derive(Debug)]
pub(crate) struct ReadBuffer {
    /// Next cell to claim. May run past `CELLS` while the buffer is full.
    cursor: AtomicUsize,
    cells: Box<[AtomicU64]>,
}

/// What a push found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Recorded; room remains.
    Recorded,
    /// Recorded into the last cell: the buffer should be drained.
    Full,
    /// Not recorded, the buffer was already full: drain it, then apply this read directly.
    Overflow,
}

fn encode(idx: u32, generation: u32) -> u64 {
    // idx is never u32::MAX (slab NIL), so idx + 1 fits in 32 bits and a record is never EMPTY.
    (u64::from(generation) << 32) | (u64::from(idx) + 1)
}

fn decode(record: u64) -> (u32, u32) {
    ((record as u32).wrapping_sub(1), (record >> 32) as u32)
}

impl ReadBuffer {
    pub(crate) fn new() -> Self {
        ReadBuffer { cursor: AtomicUsize::new(0), cells: (0..CELLS).map(|_| AtomicU64::new(EMPTY)).collect() }
    }

    /// Records a read of slot `idx` at `generation`.
    pub(crate) fn push(&self, idx: u32, generation: u32) -> Pushed {
        // Relaxed: the cursor only hands out cells; the record itself is published by the Release store.
        let i = self.cursor.fetch_add(1, Ordering::Relaxed);
        if i >= CELLS {
            return Pushed::Overflow;
        }
        // Release pairs with the drainer's Acquire swap, so a drained record is the complete value.
        self.cells[i].store(encode(idx, generation), Ordering::Release);
        if i + 1 == CELLS { Pushed::Full } else { Pushed::Recorded }
    }

    /// Hands every recorded read to `apply`, oldest first, and empties the buffer.
    /// Called only under the shard's write lock, so drains never overlap.
    pub(crate) fn drain(&self, mut apply: impl FnMut(u32, u32)) {
        let claimed = self.cursor.load(Ordering::Relaxed).min(CELLS);
        for cell in &self.cells[..claimed] {
            // Acquire pairs with the pusher's Release store.
            let record = cell.swap(EMPTY, Ordering::Acquire);
            if record != EMPTY {
                let (idx, generation) = decode(record);
                apply(idx, generation);
            }
        }
        // Relaxed: a reader that claimed a cell before this reset and stores after it leaves a record
        // that a later drain may replay or a later push overwrite; both are harmless (see module docs).
        self.cursor.store(0, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn drains_in_order_and_reports_full() {
        let b = ReadBuffer::new();
        for i in 0..CELLS as u32 - 1 {
            assert_eq!(b.push(i, 7), Pushed::Recorded);
        }
        assert_eq!(b.push(99, 8), Pushed::Full);
        assert_eq!(b.push(100, 8), Pushed::Overflow, "past the end nothing is recorded");
        let mut seen = Vec::new();
        b.drain(|i, g| seen.push((i, g)));
        let mut want: Vec<(u32, u32)> = (0..CELLS as u32 - 1).map(|i| (i, 7)).collect();
        want.push((99, 8));
        assert_eq!(seen, want);
        seen.clear();
        b.drain(|i, g| seen.push((i, g)));
        assert!(seen.is_empty());
        assert_eq!(b.push(0, u32::MAX), Pushed::Recorded);
        b.drain(|i, g| seen.push((i, g)));
        assert_eq!(seen, vec![(0, u32::MAX)]);
    }

    #[test]
    fn records_round_trip() {
        for (i, g) in [(0, 0), (u32::MAX - 1, u32::MAX), (12345, 1)] {
            assert_eq!(decode(encode(i, g)), (i, g));
        }
    }
}
