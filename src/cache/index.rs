//! A shard's hash index: key hashes to slab slots, searched by readers without a lock.
//!
//! # Design
//! An open-addressing table (linear probing) of 64-bit cells, one atomic load per probe. A cell is
//! `EMPTY`, a `TOMBSTONE`, or an entry: the upper 32 bits of the key's hash as a tag, and the slot index
//! (plus 2) below. A reader loads the table pointer under an epoch guard, probes from the hash's low
//! bits, and for each cell whose tag matches asks the caller whether the slot holds its key; an `EMPTY`
//! cell ends the search. Readers write nothing.
//!
//! Only the shard's writer (its lock held) changes the table, always one cell at a time with a single
//! atomic store, so a reader sees every cell either before or after a change:
//! - insert: the slot is fully written first, then its cell is stored with `Release` (a reader's
//!   `Acquire` load of the cell sees the slot's contents);
//! - replace (a new value for a key): the new slot is written, then the cell is switched to it;
//! - remove: the cell becomes a `TOMBSTONE` (so probes for keys further along do not stop), or `EMPTY`
//!   when the next cell is `EMPTY` (no probe continues past it anyway).
//!
//! A removed slot's contents stay readable until every reader that might have found it has unpinned:
//! the slab reuses slots only through the epoch's deferred reclamation (see `slab.rs`).
//!
//! Live entries plus tombstones never exceed three quarters of the cells, so every probe ends. When an
//! insert would break that, the writer builds a new table (twice the live entries, at least 16 cells,
//! rounded to a power of two), publishes it with one pointer store, and hands the old one to the epoch
//! to free once no reader can still be probing it. A reader still on the old table sees the entries as
//! they were when the copy was made: it linearises before the changes made since.

use crossbeam_epoch::{Atomic, Guard, Owned};

use crate::sync::{AtomicU64, Ordering};

const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
/// Slot indices are stored plus this, so that no entry encodes as `EMPTY` or `TOMBSTONE`.
const BIAS: u64 = 2;
/// Smallest table.
const MIN_CELLS: usize = 16;

#[inline]
fn tag(hash: u64) -> u64 {
    hash & 0xffff_ffff_0000_0000
}

#[inline]
fn encode(hash: u64, idx: u32) -> u64 {
    tag(hash) | (u64::from(idx) + BIAS)
}

#[inline]
fn slot_of(cell: u64) -> u32 {
    ((cell & 0xffff_ffff) - BIAS) as u32
}

struct Table {
    mask: usize,
    cells: Box<[AtomicU64]>,
}

impl Table {
    fn new(cells: usize) -> Self {
        Table { mask: cells - 1, cells: (0..cells).map(|_| AtomicU64::new(EMPTY)).collect() }
    }
}

/// The index itself, shared by the shard's readers and its writer.
pub(crate) struct Index {
    /// Never null. Swapped by the writer when it rebuilds (`Release`); loaded by readers (`Acquire`).
    table: Atomic<Table>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").finish_non_exhaustive()
    }
}

/// The writer's counts, kept beside the shard's other single-threaded state.
#[derive(Debug, Default)]
pub(crate) struct IndexCounts {
    live: usize,
    tombstones: usize,
    cells: usize,
}

impl Index {
    pub(crate) fn new() -> (Self, IndexCounts) {
        let index = Index { table: Atomic::new(Table::new(MIN_CELLS)) };
        (index, IndexCounts { live: 0, tombstones: 0, cells: MIN_CELLS })
    }

    fn table<'g>(&self, guard: &'g Guard) -> &'g Table {
        // Acquire pairs with the Release swap in `rebuild`: the new table's cells are initialised.
        let t = self.table.load(Ordering::Acquire, guard);
        // SAFETY: the pointer is never null (set in `new`, replaced only by `rebuild` with another
        // table), and a replaced table is destroyed only through `guard.defer_destroy`, after every
        // guard pinned when it was replaced, this one included, has gone.
        unsafe { t.deref() }
    }

    /// The slot holding the key with this `hash`, as confirmed by `is_key` (called for each slot whose
    /// tag matches).
    #[inline]
    pub(crate) fn find(&self, hash: u64, guard: &Guard, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = self.table(guard);
        let want = tag(hash);
        let mut pos = hash as usize & t.mask;
        loop {
            // Acquire pairs with the writer's Release store of the cell: the slot it names is written.
            let cell = t.cells[pos].load(Ordering::Acquire);
            if cell == EMPTY {
                return None;
            }
            if cell != TOMBSTONE && tag(cell) == want && is_key(slot_of(cell)) {
                return Some(slot_of(cell));
            }
            pos = (pos + 1) & t.mask;
        }
    }

    /// Asks the processor to fetch the cell a search for `hash` starts at (a hint; never faults).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        let t = self.table(guard);
        let cell: *const AtomicU64 = &t.cells[hash as usize & t.mask];
        #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
        // SAFETY: a prefetch is only a hint: it reads nothing architecturally and never faults, and
        // `cell` points into the live table anyway. SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(cell.cast());
        }
        let _ = cell;
    }

    /// Adds `idx` (a key not in the index) under `hash`. Writer only; `hash_of` gives the hash of any
    /// slot in the index (for a rebuild).
    pub(crate) fn insert(
        &self,
        counts: &mut IndexCounts,
        hash: u64,
        idx: u32,
        guard: &Guard,
        hash_of: &dyn Fn(u32) -> u64,
    ) {
        if (counts.live + counts.tombstones + 1) * 4 > counts.cells * 3 {
            self.rebuild(counts, guard, hash_of);
        }
        let t = self.table(guard);
        let mut pos = hash as usize & t.mask;
        loop {
            // Relaxed: only this writer stores cells; it reads back its own stores.
            let cell = t.cells[pos].load(Ordering::Relaxed);
            if cell == EMPTY || cell == TOMBSTONE {
                if cell == TOMBSTONE {
                    counts.tombstones -= 1;
                }
                // Release: publishes the slot's contents to readers that load this cell.
                t.cells[pos].store(encode(hash, idx), Ordering::Release);
                counts.live += 1;
                return;
            }
            pos = (pos + 1) & t.mask;
        }
    }

    /// The position of `idx`'s cell (it must be in the index).
    fn position(t: &Table, hash: u64, idx: u32) -> usize {
        let want = encode(hash, idx);
        let mut pos = hash as usize & t.mask;
        // Relaxed: only this writer stores cells.
        while t.cells[pos].load(Ordering::Relaxed) != want {
            debug_assert_ne!(t.cells[pos].load(Ordering::Relaxed), EMPTY, "slot {idx} is not in the index");
            pos = (pos + 1) & t.mask;
        }
        pos
    }

    /// Switches the key at slot `old` to slot `new` (fully written). Writer only.
    pub(crate) fn replace(&self, hash: u64, old: u32, new: u32, guard: &Guard) {
        let t = self.table(guard);
        let pos = Self::position(t, hash, old);
        // Release: publishes the new slot's contents.
        t.cells[pos].store(encode(hash, new), Ordering::Release);
    }

    /// Removes slot `idx` (in the index under `hash`). Writer only.
    pub(crate) fn remove(&self, counts: &mut IndexCounts, hash: u64, idx: u32, guard: &Guard) {
        let t = self.table(guard);
        let pos = Self::position(t, hash, idx);
        // Relaxed: the store publishes nothing (readers skip tombstones and stop at EMPTY).
        if t.cells[(pos + 1) & t.mask].load(Ordering::Relaxed) == EMPTY {
            t.cells[pos].store(EMPTY, Ordering::Relaxed);
        } else {
            t.cells[pos].store(TOMBSTONE, Ordering::Relaxed);
            counts.tombstones += 1;
        }
        counts.live -= 1;
    }

    /// Replaces the table with a fresh one sized for the live entries, without tombstones. `hash_of`
    /// gives a slot's full hash (cells keep only its upper half).
    fn rebuild(&self, counts: &mut IndexCounts, guard: &Guard, hash_of: &dyn Fn(u32) -> u64) {
        let old = self.table(guard);
        let cells = ((counts.live + 1) * 2).next_power_of_two().max(MIN_CELLS);
        let new = Table::new(cells);
        for cell in old.cells.iter() {
            // Relaxed: only this writer stores cells.
            let c = cell.load(Ordering::Relaxed);
            if c == EMPTY || c == TOMBSTONE {
                continue;
            }
            let hash = hash_of(slot_of(c));
            let mut pos = hash as usize & new.mask;
            while new.cells[pos].load(Ordering::Relaxed) != EMPTY {
                pos = (pos + 1) & new.mask;
            }
            // Relaxed: the table is not yet published; the swap below publishes it whole.
            new.cells[pos].store(c, Ordering::Relaxed);
        }
        // Release: a reader that loads the new table sees its cells, and (transitively, through the
        // cells' earlier Release stores) the slots they name.
        let old = self.table.swap(Owned::new(new), Ordering::AcqRel, guard);
        // SAFETY: `old` is no longer reachable from the index; readers that loaded it hold guards, and
        // the epoch frees it only after they have all unpinned. It is destroyed once (this swap removed
        // the only pointer to it).
        unsafe { guard.defer_destroy(old) };
        counts.cells = cells;
        counts.tombstones = 0;
    }

    /// Every slot in the index (for invariant checks). Writer only.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn slots(&self, guard: &Guard) -> Vec<u32> {
        let t = self.table(guard);
        // Relaxed: only the writer, which is calling, stores cells.
        let cells = t.cells.iter().map(|c| c.load(Ordering::Relaxed));
        cells.filter(|&c| c != EMPTY && c != TOMBSTONE).map(slot_of).collect()
    }
}

impl IndexCounts {
    /// Entries indexed.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Heap bytes of the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.cells * std::mem::size_of::<u64>()
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader can hold the table any more, so it is freed at once (the
        // unprotected guard runs deferred functions immediately; nothing is deferred here).
        unsafe {
            let guard = crossbeam_epoch::unprotected();
            let t = self.table.load(Ordering::Relaxed, guard);
            drop(t.into_owned());
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Hashes whose low bits collide, to force long probe chains.
    fn h(i: u32) -> u64 {
        (u64::from(i.wrapping_mul(0x9e37_79b9)) << 32) | u64::from(i % 3)
    }

    #[test]
    fn find_insert_replace_remove_and_rebuild() {
        let (index, mut counts) = Index::new();
        let guard = crossbeam_epoch::pin();
        let hash_of = |idx: u32| h(if idx == 1005 { 5 } else { idx });
        // Fewer under Miri, which runs this some thousand times slower.
        let (keys, rounds) = if cfg!(miri) { (100u32, 2u32) } else { (1000, 20) };
        for i in 0..keys {
            assert_eq!(index.find(h(i), &guard, |_| true), None);
            index.insert(&mut counts, h(i), i, &guard, &hash_of);
        }
        assert_eq!(counts.live(), keys as usize);
        assert!(counts.cells >= 2 * keys as usize && counts.cells.is_power_of_two());
        for i in 0..keys {
            assert_eq!(index.find(h(i), &guard, |s| s == i), Some(i), "{i}");
        }
        // A tag match is not a key match.
        assert_eq!(index.find(h(7), &guard, |_| false), None);
        index.replace(h(5), 5, 1005, &guard);
        assert_eq!(index.find(h(5), &guard, |s| s == 1005), Some(1005));
        for i in (0..keys).step_by(2) {
            let idx = if i == 5 { 1005 } else { i };
            index.remove(&mut counts, h(i), idx, &guard);
        }
        for i in 0..keys {
            let want = (i % 2 == 1).then_some(if i == 5 { 1005 } else { i });
            assert_eq!(index.find(h(i), &guard, |s| Some(s) == want), want, "{i}");
        }
        let mut slots = index.slots(&guard);
        slots.sort();
        assert_eq!(slots.len(), keys as usize / 2);
        // Churn: tombstones never fill the table.
        for round in 0..rounds {
            for i in (0..keys).step_by(2) {
                let idx = 2000 + i + round;
                // Rebuilds see only the odd keys (and 1005): each churned slot is removed at once.
                index.insert(&mut counts, h(i), idx, &guard, &hash_of);
                index.remove(&mut counts, h(i), idx, &guard);
            }
            assert!((counts.live + counts.tombstones) * 4 <= counts.cells * 3);
        }
    }
}
