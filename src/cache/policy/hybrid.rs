//! The default policy: W-TinyLFU (Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache
//! Admission Policy", ACM ToS 2017), the design Caffeine popularised.
//!
//! - A small **window** (1% of capacity) takes every new entry, so bursts of new keys get a chance.
//! - The **main** space is segmented: *probation* (20%) for entries admitted from the window,
//!   *protected* (80%) for entries read again while on probation.
//! - When the window overflows, its oldest entry (the *candidate*) must win a place in main: it is
//!   compared with main's next victim by estimated popularity from a [`FrequencySketch`], and the less
//!   popular of the two is evicted. One-hit wonders therefore never displace the working set (scan
//!   resistance), while recency still governs inside each segment.
//!
//! The window starts at 1% and adapts: the cache runs W-TinyLFU at several window sizes on a sample of
//! its keys ([`Miniature`](super::miniature)) and gives each shard the window that hits most there
//! (recency-heavy workloads get a large window, frequency-heavy ones a small one).
//!
//! Reads cost the policy nothing but a mark: a reader sets the entry's reference mark under the shard's
//! shared lock, and the segments are CLOCK-ordered queues (a marked entry reaching the head of its queue
//! gets a second chance, or a promotion from probation, and its read is counted in the sketch then).
//! This is the approximation of LRU that CLOCK makes, and it lets hits scale without the shard's
//! exclusive lock or a read buffer; all the work happens when something must be evicted.
//!
//! Each shard collects its sampled accesses (inserts, overwrites, and the reads readers record in the
//! read buffer for sampled keys only) and hands them to the cache's miniature in [`Hybrid::adapt`].
//!
//! Expiry is shared with every policy (the shard's timer wheel). Weights count in every segment.

use super::miniature::{Adaptation, Handover, is_sampled};
use super::sketch::FrequencySketch;
use crate::cache::list::List;
use crate::cache::slab::{Lane, Slab};
use crate::sync::Ordering;

/// Entry marks: none, read since the policy last looked, or just inserted (an insert is an access too:
/// it buys the same second chance, so a new key is not the first to go from a window of old, read keys).
pub(crate) const UNMARKED: u8 = 0;
pub(crate) const READ: u8 = 1;
const INSERTED: u8 = 2;

const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;
/// In a saved place: the entry held a read's mark.
const MARKED: u8 = 4;

#[derive(Debug, Default)]
struct Segment {
    queue: List,
    weight: u64,
}

impl Segment {
    fn push<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, tag: u8) {
        let m = slab.meta_mut(idx);
        m.queue = tag;
        self.weight += u64::from(m.weight);
        self.queue.push_back(slab, Lane::Policy, idx);
    }

    fn pull<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.weight -= u64::from(slab.meta(idx).weight);
        self.queue.unlink(slab, Lane::Policy, idx);
    }
}

#[derive(Debug)]
pub(crate) struct Hybrid {
    window: Segment,
    probation: Segment,
    protected: Segment,
    window_max: u64,
    main_max: u64,
    protected_max: u64,
    capacity: u64,
    sketch: FrequencySketch,
    /// The miniature's sample (one key in `2^shift`), as this shard last heard it.
    shift: u32,
    /// Hashes of sampled accesses not yet handed to the miniature, oldest first.
    samples: Vec<u64>,
    /// How many samples to collect before handing them over (the miniature says; 1 until it has).
    batch: usize,
    /// Writes since a weighted cache last re-estimated its entries ([`Adaptation::remeasure_every`]).
    writes: u32,
    entries: usize,
    /// Where the next admitted entry goes, when it is restored from a snapshot ([`Hybrid::place`]'s code).
    restoring: Option<u8>,
}

/// Most sampled accesses a shard keeps: allocated once, so that recording a read never allocates. Past
/// this (reads with no write to hand them over, or a miniature busy every time), new ones are dropped.
const BACKLOG: usize = 256;
/// Most sampled accesses one turn hands over, so that no single write does much simulation work.
const PER_TURN: usize = 16;

impl Hybrid {
    pub(crate) fn new(capacity: u64) -> Self {
        let mut h = Hybrid {
            window: Segment::default(),
            probation: Segment::default(),
            protected: Segment::default(),
            window_max: 0,
            main_max: 0,
            protected_max: 0,
            capacity,
            sketch: FrequencySketch::new(),
            shift: u32::MAX,
            samples: Vec::with_capacity(BACKLOG),
            batch: 1,
            writes: 0,
            entries: 0,
            restoring: None,
        };
        h.set_window((capacity / 100).max(1));
        h
    }

    /// Sizes the segments for a window of `window` (clamped so both window and main keep room).
    fn set_window(&mut self, window: u64) {
        self.window_max = window.clamp(1, self.capacity.saturating_sub(1).max(1)).min(self.capacity);
        self.main_max = self.capacity - self.window_max;
        self.protected_max = self.main_max / 5 * 4;
    }

    /// The shard's capacity changed: the window keeps its share of it, and protected demotes what no
    /// longer fits (the caller then evicts down to the new capacity).
    pub(crate) fn set_capacity<K, V>(&mut self, slab: &mut Slab<K, V>, capacity: u64) {
        let share = self.window_max as f64 / self.capacity.max(1) as f64;
        self.capacity = capacity;
        self.resize_window(slab, (capacity as f64 * share).round() as u64);
    }

    /// Notes an access of `hash` if it is in the miniature's sample. Until the shard first hears the
    /// sample's size (`shift` is `u32::MAX`), every access is kept, and filtered on handover.
    fn sample(&mut self, hash: u64) {
        if self.samples.len() < BACKLOG && (self.shift == u32::MAX || is_sampled(hash, self.shift)) {
            self.samples.push(hash);
        }
    }

    /// Hands the sampled accesses collected so far to the cache's miniature, once there are a batch of
    /// them and if it is free (a busy miniature is tried again at the next turn), and takes the window
    /// it chose; called after writes only (readers do no simulation work). True when a weighted cache
    /// should re-estimate its entries ([`Adaptation::resize`]), which is the caller's to do.
    pub(crate) fn adapt<K, V>(&mut self, slab: &mut Slab<K, V>, adaptation: &Adaptation) -> bool {
        let remeasure = adaptation.remeasure_every().is_some_and(|every| {
            self.writes += 1;
            let due = self.writes >= every;
            if due {
                self.writes = 0;
            }
            due
        });
        if self.samples.len() >= self.batch
            && let Some(Handover { taken, shift, window, batch }) =
                adaptation.try_hand_over(&self.samples[..self.samples.len().min(PER_TURN)])
        {
            self.samples.drain(..taken);
            (self.shift, self.batch) = (shift, batch);
            let window = (self.capacity as f64 * window).round() as u64;
            if window.clamp(1, self.capacity.saturating_sub(1).max(1)) != self.window_max {
                self.resize_window(slab, window);
            }
        }
        remeasure
    }

    /// Takes `idx`'s reference mark: true if it was set. A read's mark (`READ`) is counted in the sketch;
    /// the mark an insert leaves (`INSERTED`) only buys the second chance, its access already counted.
    fn consume_mark<K, V>(&mut self, slab: &Slab<K, V>, idx: u32) -> bool {
        let mark = slab.mark(idx).load(Ordering::Relaxed);
        if mark == UNMARKED {
            return false;
        }
        slab.mark(idx).store(UNMARKED, Ordering::Relaxed);
        if mark == READ {
            self.sketch.increment(slab.meta(idx).hash);
        }
        true
    }

    fn resize_window<K, V>(&mut self, slab: &mut Slab<K, V>, window: u64) {
        self.set_window(window);
        // Shrunk window: its oldest entries move to probation. Grown window: protected shrank, so its
        // oldest entries are demoted. Totals do not change, so nothing is evicted here.
        while self.window.weight > self.window_max {
            let Some(head) = self.window.queue.head() else { break };
            self.window.pull(slab, head);
            self.probation.push(slab, head, PROBATION);
        }
        self.demote_protected_overflow(slab);
    }

    /// Demotes protected's unmarked oldest entries to probation until protected fits; a marked one gets
    /// a second chance at the back (its mark consumed, so this ends).
    fn demote_protected_overflow<K, V>(&mut self, slab: &mut Slab<K, V>) {
        while self.protected.weight > self.protected_max {
            let Some(head) = self.protected.queue.head() else { break };
            if self.consume_mark(slab, head) {
                self.protected.queue.move_to_back(slab, Lane::Policy, head);
                continue;
            }
            self.protected.pull(slab, head);
            self.probation.push(slab, head, PROBATION);
        }
    }

    fn segment(&mut self, tag: u8) -> &mut Segment {
        match tag {
            WINDOW => &mut self.window,
            PROBATION => &mut self.probation,
            _ => &mut self.protected,
        }
    }

    pub(crate) fn admit<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.entries += 1;
        self.sketch.ensure_capacity(self.entries);

        let hash = slab.meta(idx).hash;
        let restoring = self.restoring.take();
        if restoring.is_none() {
            // A restored entry's count was set by `expect_restored`: no access happened now.
            self.sketch.increment(hash);
        }
        self.sample(hash);
        if let Some(place) = restoring
            && self.admit_in_place(slab, idx, place)
        {
            return;
        }
        slab.mark(idx).store(INSERTED, Ordering::Relaxed);
        self.window.push(slab, idx, WINDOW);
        // Spill the window into main while main has room: no contest needed.
        while self.window.weight > self.window_max {
            let Some(head) = self.window.queue.head() else { break };
            if self.main_weight() + u64::from(slab.meta(head).weight) > self.main_max {
                break;
            }
            self.window.pull(slab, head);
            self.probation.push(slab, head, PROBATION);
        }
    }

    /// A restored entry goes back to the main segment it was saved from, with its mark, if main has room
    /// for it (protected only if protected does too); false when it should go through the window.
    fn admit_in_place<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, place: u8) -> bool {
        let (segment, mark) = (place & 3, if place & MARKED != 0 { READ } else { UNMARKED });
        let weight = u64::from(slab.meta(idx).weight);
        if segment == WINDOW || segment > PROTECTED || self.main_weight() + weight > self.main_max {
            return false;
        }
        slab.mark(idx).store(mark, Ordering::Relaxed);
        if segment == PROTECTED && self.protected.weight + weight <= self.protected_max {
            self.protected.push(slab, idx, PROTECTED);
        } else {
            self.probation.push(slab, idx, PROBATION);
        }
        true
    }

    /// Where entry `idx` is, for a snapshot: its segment, and [`MARKED`] if it holds a read's mark.
    pub(crate) fn place<K, V>(&self, slab: &Slab<K, V>, idx: u32) -> u8 {
        let marked = slab.mark(idx).load(Ordering::Relaxed) == READ;
        slab.meta(idx).queue | if marked { MARKED } else { 0 }
    }

    #[cfg(feature = "snapshot")]
    /// The window's share of the capacity.
    pub(crate) fn window_share(&self) -> f64 {
        self.window_max as f64 / self.capacity.max(1) as f64
    }

    /// How far the sketch's counts are towards their next halving (0 to 1).
    #[cfg(feature = "snapshot")]
    pub(crate) fn ageing(&self) -> f64 {
        self.sketch.ageing()
    }

    /// Puts the sketch's counts `progress` of the way towards their next halving.
    #[cfg(feature = "snapshot")]
    pub(crate) fn set_ageing(&mut self, progress: f64) {
        self.sketch.set_ageing(progress);
    }

    #[cfg(feature = "snapshot")]
    /// Prepares for `entries` restored entries: the window takes the old cache's `share` of the capacity,
    /// and the sketch its size for them now (growing it later would clear the counts restored by then).
    pub(crate) fn prepare_restore<K, V>(&mut self, slab: &mut Slab<K, V>, share: Option<f64>, entries: usize) {
        if let Some(share) = share {
            self.resize_window(slab, (self.capacity as f64 * share.clamp(0.0, 1.0)).round() as u64);
        }
        self.sketch.ensure_capacity(self.entries + entries);
    }

    /// Entry `idx` was read or overwritten: marks it (readers do the same under the shared lock, and
    /// record a read here only for sampled keys), and notes the access if the key is sampled.
    pub(crate) fn touch<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        slab.mark(idx).store(READ, Ordering::Relaxed);
        self.sample(slab.meta(idx).hash);
    }

    /// Slot `new` took over `old`'s place (a new value for its key, weighing `new`'s weight instead of
    /// `old_weight`); it counts as an access.
    pub(crate) fn replace<K, V>(&mut self, slab: &mut Slab<K, V>, old: u32, new: u32, old_weight: u32) {
        let tag = slab.meta(old).queue;
        self.segment(tag).queue.replace(slab, Lane::Policy, old, new);
        self.reweigh(slab, new, old_weight);
        self.touch(slab, new);
    }

    /// The entry's weight changed from `old_weight` to its current weight.
    pub(crate) fn reweigh<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, old_weight: u32) {
        let m = slab.meta(idx);
        let (tag, new) = (m.queue, u64::from(m.weight));
        let seg = self.segment(tag);
        seg.weight = seg.weight - u64::from(old_weight) + new;
    }

    pub(crate) fn unlink<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.entries -= 1;
        let tag = slab.meta(idx).queue;
        self.segment(tag).pull(slab, idx);
    }

    fn main_weight(&self) -> u64 {
        self.probation.weight + self.protected.weight
    }

    /// Main's next victim: probation's oldest unmarked entry (marked ones are promoted to protected on
    /// the way), or protected's oldest unmarked entry when probation is empty.
    fn main_victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<u32> {
        loop {
            if let Some(head) = self.probation.queue.head() {
                if self.consume_mark(slab, head) {
                    self.probation.pull(slab, head);
                    self.protected.push(slab, head, PROTECTED);
                    self.demote_protected_overflow(slab);
                    continue;
                }
                return Some(head);
            }
            let head = self.protected.queue.head()?;
            if self.consume_mark(slab, head) {
                self.protected.queue.move_to_back(slab, Lane::Policy, head);
                continue;
            }
            return Some(head);
        }
    }

    /// The next entry to evict; the caller removes it and calls again while still over capacity.
    pub(crate) fn victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<u32> {
        loop {
            let window_over = self.window.weight > self.window_max;
            if !window_over || self.window.queue.is_empty() {
                return self.main_victim(slab).or_else(|| self.window.queue.head());
            }
            let candidate = self.window.queue.head()?;
            if self.consume_mark(slab, candidate) {
                // Read while in the window: a second chance at its back.
                self.window.queue.move_to_back(slab, Lane::Policy, candidate);
                continue;
            }
            let weight = u64::from(slab.meta(candidate).weight);
            if weight > self.main_max {
                // It could never fit in main: no point evicting anything for it.
                return Some(candidate);
            }
            let Some(victim) = self.main_victim(slab) else {
                self.window.pull(slab, candidate);
                self.probation.push(slab, candidate, PROBATION);
                continue;
            };
            if self.main_weight() + weight <= self.main_max {
                self.window.pull(slab, candidate);
                self.probation.push(slab, candidate, PROBATION);
                continue;
            }
            let (c, v) = (slab.meta(candidate).hash, slab.meta(victim).hash);
            return Some(if self.sketch.frequency(c) > self.sketch.frequency(v) { victim } else { candidate });
        }
    }

    /// Protected, then the window, then probation, each most recent first: probation's oldest are the
    /// next victims, and protected holds what was used again after admission.
    pub(crate) fn by_value<K, V>(&self, slab: &Slab<K, V>) -> Vec<u32> {
        [&self.protected, &self.window, &self.probation]
            .into_iter()
            .flat_map(|seg| seg.queue.iter_back(slab, Lane::Policy))
            .collect()
    }

    /// The sketch's estimate of `idx`'s accesses (0 to 15); a read its mark still holds is not counted
    /// (see [`Hybrid::place`]).
    pub(crate) fn frequency<K, V>(&self, slab: &Slab<K, V>, idx: u32) -> u8 {
        self.sketch.frequency(slab.meta(idx).hash)
    }

    /// A restored key is about to be admitted: its sketch estimate is raised to `frequency` (its admission
    /// counts no access: a resident the old cache had stopped counting must not outrank a newcomer), and it
    /// will be admitted where it was saved from (`place`, from [`Hybrid::place`]).
    pub(crate) fn expect_restored(&mut self, hash: u64, frequency: u8, place: u8) {
        self.sketch.raise(hash, frequency);
        self.restoring = Some(place);
    }

    /// Forgets a restored entry's place if it was not admitted (it replaced a held value instead).
    pub(crate) fn restored(&mut self) {
        self.restoring = None;
    }

    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate<K, V>(&self, slab: &Slab<K, V>) -> usize {
        let mut n = 0;
        for (tag, seg) in [(WINDOW, &self.window), (PROBATION, &self.probation), (PROTECTED, &self.protected)] {
            let mut w = 0;
            for idx in seg.queue.iter(slab, Lane::Policy) {
                let m = slab.meta(idx);
                assert_eq!(m.queue, tag, "entry in the wrong segment");
                w += u64::from(m.weight);
                n += 1;
            }
            assert_eq!(w, seg.weight, "segment {tag} weight");
        }
        assert_eq!(n, self.entries);
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Inserts keys into a tiny model of the shard loop: admit, then evict while over capacity.
    fn run(h: &mut Hybrid, slab: &mut Slab<u64, ()>, cap: u64, keys: &[u64], resident: &mut Vec<(u64, u32)>) {
        for &k in keys {
            if let Some(&(_, idx)) = resident.iter().find(|(rk, _)| *rk == k) {
                h.touch(slab, idx);
                continue;
            }
            let idx = slab.put(k, (), k.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
            h.admit(slab, idx);
            resident.push((k, idx));
            while resident.len() as u64 > cap {
                let v = h.victim(slab).expect("victim");
                h.unlink(slab, v);
                slab.remove(v, &crossbeam_epoch::pin());
                resident.retain(|&(_, i)| i != v);
            }
            h.validate(slab);
        }
    }

    #[test]
    fn a_scan_does_not_flush_the_hot_set() {
        let (cap, mut slab, mut resident) = (100, Slab::new(), Vec::new());
        let mut h = Hybrid::new(cap);
        let hot: Vec<u64> = (0..50).collect();
        for _ in 0..5 {
            run(&mut h, &mut slab, cap, &hot, &mut resident);
        }
        let scan: Vec<u64> = (1_000..3_000).collect();
        run(&mut h, &mut slab, cap, &scan, &mut resident);
        let kept = hot.iter().filter(|k| resident.iter().any(|(rk, _)| rk == *k)).count();
        assert!(kept >= 45, "hot keys survive a scan, kept {kept}");
    }
}
