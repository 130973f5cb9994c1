//! Least frequently used, ties broken by recency, with ageing.
//!
//! Each entry counts its own accesses (0 to [`MAX_FREQ`]) and sits in the queue of its count, least
//! recent at the front. The victim is the front of the lowest non-empty queue: O(1) with a bitmap. New
//! entries start at 1: the next newcomer evicts the least frequent resident, which is a newcomer that
//! was not read again, if there is one. Every `10 × entries` accesses
//! all counts are halved (queues merge pairwise, keeping recency within each), so a key that was hot
//! long ago loses its standing; halving costs O(entries) once per 10 × entries accesses: O(1) amortised.
//!
//! A newcomer is linked only after room has been made among the residents (see `Shard::insert`), so a
//! full cache evicts its least frequent resident, never the entry being stored.

use crate::cache::list::List;
use crate::cache::slab::{Lane, Slab};

pub(crate) const MAX_FREQ: u8 = 31;
const QUEUES: usize = MAX_FREQ as usize + 1;

#[derive(Debug)]
pub(crate) struct Lfu {
    queues: [List; QUEUES],
    /// Bit `f` set when queue `f` is not empty.
    occupied: u32,
    accesses: u64,
    entries: u64,
}

impl Default for Lfu {
    fn default() -> Self {
        Lfu { queues: [List::default(); QUEUES], occupied: 0, accesses: 0, entries: 0 }
    }
}

impl Lfu {
    fn push<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, freq: u8) {
        slab.meta_mut(idx).freq = freq;
        self.queues[freq as usize].push_back(slab, Lane::Policy, idx);
        self.occupied |= 1 << freq;
    }

    fn pull<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) -> u8 {
        let f = slab.meta(idx).freq;
        self.queues[f as usize].unlink(slab, Lane::Policy, idx);
        if self.queues[f as usize].is_empty() {
            self.occupied &= !(1 << f);
        }
        f
    }

    pub(crate) fn admit<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.entries += 1;
        self.push(slab, idx, 1);
    }

    /// Re-links `idx` (unlinked by [`Lfu::unlink`], which keeps its count) as if it had been read.
    pub(crate) fn readmit<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.entries += 1;
        let f = slab.meta(idx).freq;
        self.push(slab, idx, f);
        self.touch(slab, idx);
    }

    pub(crate) fn touch<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        let f = self.pull(slab, idx);
        self.push(slab, idx, (f + 1).min(MAX_FREQ));
        self.accesses += 1;
        if self.accesses >= self.ageing_period() {
            self.age(slab);
        }
    }

    pub(crate) fn unlink<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.entries -= 1;
        self.pull(slab, idx);
    }

    pub(crate) fn victim(&self) -> Option<u32> {
        if self.occupied == 0 {
            return None;
        }
        self.queues[self.occupied.trailing_zeros() as usize].head()
    }

    /// Most frequent first, the most recent first within a count.
    pub(crate) fn by_value<K, V>(&self, slab: &Slab<K, V>) -> Vec<u32> {
        self.queues.iter().rev().flat_map(|q| q.iter_back(slab, Lane::Policy)).collect()
    }

    /// Gives the linked entry `idx` the count `frequency` (capped), as the most recent of that count.
    pub(crate) fn set_frequency<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, frequency: u8) {
        self.pull(slab, idx);
        self.push(slab, idx, frequency.min(MAX_FREQ));
    }

    /// How far the counts are towards their next halving, from 0 to 1.
    #[cfg(feature = "snapshot")]
    pub(crate) fn ageing(&self) -> f64 {
        self.accesses as f64 / self.ageing_period() as f64
    }

    /// Puts the counts `progress` (0 to 1) of the way towards their next halving (a restored cache takes
    /// up the old one's: counts restored fresh would otherwise outlive the old cache's by up to a period).
    #[cfg(feature = "snapshot")]
    pub(crate) fn set_ageing(&mut self, progress: f64) {
        let period = self.ageing_period();
        self.accesses = ((period as f64 * progress.clamp(0.0, 1.0)) as u64).min(period - 1);
    }

    /// Accesses between two halvings.
    fn ageing_period(&self) -> u64 {
        10 * self.entries.max(16)
    }

    /// Halves every count. Ascending order: queue `f / 2` has already been emptied when `f` moves into it.
    fn age<K, V>(&mut self, slab: &mut Slab<K, V>) {
        self.accesses = 0;
        for f in 1..QUEUES {
            while let Some(idx) = self.queues[f].pop_front(slab, Lane::Policy) {
                self.push(slab, idx, (f / 2) as u8);
            }
            self.occupied &= !(1 << f);
        }
    }

    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate<K, V>(&self, slab: &Slab<K, V>) -> usize {
        let mut n = 0;
        for (f, q) in self.queues.iter().enumerate() {
            assert_eq!(q.is_empty(), self.occupied & (1 << f) == 0, "LFU occupancy bit {f}");
            for idx in q.iter(slab, Lane::Policy) {
                assert_eq!(slab.meta(idx).freq as usize, f, "entry in the wrong LFU queue");
                n += 1;
            }
        }
        assert_eq!(n as u64, self.entries);
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_frequent_then_least_recent_and_ages() {
        let mut slab = Slab::new();
        let mut lfu = Lfu::default();
        let ids: Vec<u32> = (0..3u32).map(|k| slab.put(k, (), 0, 1)).collect();
        for &i in &ids {
            lfu.admit(&mut slab, i);
        }
        lfu.touch(&mut slab, ids[0]);
        lfu.touch(&mut slab, ids[0]);
        lfu.touch(&mut slab, ids[2]);
        assert_eq!(lfu.victim(), Some(ids[1]), "only once-used entry");
        lfu.touch(&mut slab, ids[1]);
        assert_eq!(lfu.victim(), Some(ids[2]), "tie at 2: least recent");
        lfu.validate(&slab);
        // Make key 0 very hot, then age repeatedly through accesses to key 1.
        for _ in 0..30 {
            lfu.touch(&mut slab, ids[0]);
        }
        assert_eq!(slab.meta(ids[0]).freq, MAX_FREQ);
        for _ in 0..400 {
            lfu.touch(&mut slab, ids[1]);
        }
        assert!(slab.meta(ids[0]).freq < 8, "old popularity must fade");
        lfu.validate(&slab);
    }
}
