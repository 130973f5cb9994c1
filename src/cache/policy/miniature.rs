//! Miniature simulation: W-TinyLFU at several window sizes, run side by side on a hashed sample of the
//! keys, choosing the window the real cache uses (Waldspurger, Saemundsson, Ahmad & Park, "Cache
//! Modeling and Optimization using Miniature Simulations", USENIX ATC 2017).
//!
//! A key is *sampled* when its hash, re-mixed, falls in one of `2^shift` equal ranges (see
//! [`is_sampled`]); the sample is scaled so the miniature caches hold about [`TARGET`] entries whatever
//! the real capacity (`shift = 0`, every key, for caches that small). Every sampled access reaches every
//! candidate: exact W-TinyLFU with LRU-ordered segments and one shared frequency sketch (the sketch
//! counts accesses, which do not depend on what a candidate holds), so a key's node is looked up once
//! and each candidate only relinks it.
//!
//! Each candidate's hits are scored per *epoch* of sampled accesses, with older epochs decaying, and the
//! real cache takes the window of the best-scoring candidate once its lead is more than noise. A recency-heavy workload (a loop a little
//! larger than a small window, or a working set that shifts) makes the wide windows hit more; a
//! frequency-heavy one the narrow ones. Why this replaced hill climbing: docs/hit-ratio.md.
//!
//! The cost is one hashed lookup and [`WINDOWS`]`.len()` relinks per sampled access, and memory for
//! about `TARGET × WINDOWS.len()` nodes at most, whatever the capacity.

use super::sketch::FrequencySketch;
use crate::sync::{AtomicU32, Mutex, Ordering};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The window sizes tried, as fractions of capacity.
pub(crate) const WINDOWS: [f64; 6] = [0.01, 0.05, 0.2, 0.5, 0.8, 0.99];
/// The window the real cache starts with (W-TinyLFU's usual 1%) until the first epoch ends.
const INITIAL: usize = 0;
/// Entries a miniature cache should hold: the sample is the largest power-of-two fraction of the keys
/// that keeps it at least this large.
pub(crate) const TARGET: u64 = 1_024;
/// An epoch lasts this many sampled accesses per entry of the miniature caches...
const EPOCH_PER_ENTRY: u64 = 2;
/// ...and at least this many, so that small caches' scores are not mostly noise.
const MIN_EPOCH: u64 = 2_000;
/// Each epoch, older scores count this much.
const DECAY: f64 = 0.5;

const NIL: u32 = u32::MAX;
const ABSENT: u8 = 0;
const WINDOW: u8 = 1;
const PROBATION: u8 = 2;
const PROTECTED: u8 = 3;
const N: usize = WINDOWS.len();

/// Whether `hash` is in the sample of one key in `2^shift`.
#[inline]
pub(crate) fn is_sampled(hash: u64, shift: u32) -> bool {
    // Re-mixed, so the sample is independent of the bits that pick shards, slots and sketch counters.
    shift == 0 || hash.wrapping_mul(0xd6e8_feb8_6659_fd93) >> (64 - shift) == 0
}

/// The sample's shift for a cache of about `entries` entries.
pub(crate) fn shift_for(entries: u64) -> u32 {
    let ratio = entries / TARGET;
    if ratio < 2 { 0 } else { (63 - ratio.leading_zeros()).min(32) }
}

/// Keys are hashes already: the index uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
}

/// One sampled key, as each candidate holds it (or not).
#[derive(Debug, Clone)]
struct Node {
    hash: u64,
    /// How many candidates hold it: the node is freed at 0.
    held: u8,
    segment: [u8; N],
    links: [Link; N],
}

#[derive(Debug, Clone, Copy)]
struct Queue {
    head: u32,
    tail: u32,
    len: u64,
}

impl Queue {
    const EMPTY: Queue = Queue { head: NIL, tail: NIL, len: 0 };
}

/// One window size's miniature W-TinyLFU.
#[derive(Debug, Clone)]
struct Candidate {
    queues: [Queue; 3],
    window_max: u64,
    main_max: u64,
    protected_max: u64,
    hits: u64,
    score: f64,
}

impl Candidate {
    fn new(fraction: f64, capacity: u64) -> Self {
        let window_max = ((capacity as f64 * fraction).round() as u64).clamp(1, capacity.saturating_sub(1).max(1));
        let main_max = capacity.saturating_sub(window_max);
        Candidate {
            queues: [Queue::EMPTY; 3],
            window_max,
            main_max,
            protected_max: main_max / 5 * 4,
            hits: 0,
            score: 0.0,
        }
    }
}

/// What a warm-restart snapshot keeps of a miniature.
#[cfg(feature = "snapshot")]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MiniatureState {
    /// The window chosen, as a share of the capacity.
    pub(crate) window: f64,
    /// Each candidate's score, in the order of [`WINDOWS`].
    pub(crate) scores: Vec<f64>,
    /// The cache size the miniatures were scaled for.
    pub(crate) entries: u64,
}

/// The miniature caches and their scores.
pub(crate) struct Miniature {
    /// The cache's size in entries the miniatures were scaled for.
    entries: u64,
    shift: u32,
    capacity: u64,
    sketch: FrequencySketch,
    index: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    candidates: Vec<Candidate>,
    seen: u64,
    chosen: usize,
}

impl std::fmt::Debug for Miniature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miniature")
            .field("shift", &self.shift)
            .field("capacity", &self.capacity)
            .field("nodes", &self.index.len())
            .field("chosen", &WINDOWS[self.chosen])
            .finish()
    }
}

impl Miniature {
    /// Miniatures of a cache of about `entries` entries.
    pub(crate) fn new(entries: u64) -> Self {
        let shift = shift_for(entries);
        let capacity = (entries >> shift).max(2);
        let mut sketch = FrequencySketch::new();
        sketch.ensure_capacity(capacity as usize);
        Miniature {
            entries,
            shift,
            capacity,
            sketch,
            index: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            candidates: WINDOWS.iter().map(|&w| Candidate::new(w, capacity)).collect(),
            seen: 0,
            chosen: INITIAL,
        }
    }

    /// The sample's shift (one key in `2^shift`).
    pub(crate) fn shift(&self) -> u32 {
        self.shift
    }

    /// The window the real cache should use, as a fraction of its capacity.
    pub(crate) fn window(&self) -> f64 {
        WINDOWS[self.chosen]
    }

    /// The cache now holds about `entries` entries: starts over if that is more than a quarter away
    /// from the size the miniatures were scaled for (the chosen window is kept until the next epoch
    /// ends). Small changes are ignored, so a weighted cache's estimate, which wanders, does not keep
    /// restarting it.
    pub(crate) fn resize(&mut self, entries: u64) {
        let (lo, hi) = (self.entries - self.entries / 5, self.entries + self.entries / 4);
        if !(lo..=hi).contains(&entries) {
            let chosen = self.chosen;
            *self = Miniature::new(entries);
            self.chosen = chosen;
        }
    }

    #[cfg(feature = "snapshot")]
    /// What a snapshot keeps of the miniature: the chosen window and each candidate's score (its decayed
    /// hits, the current epoch's counted in).
    pub(crate) fn state(&self) -> MiniatureState {
        MiniatureState {
            window: WINDOWS[self.chosen],
            scores: self.candidates.iter().map(|c| c.score * DECAY + c.hits as f64).collect(),
            entries: self.entries,
        }
    }

    #[cfg(feature = "snapshot")]
    /// Takes up a saved state: the candidate window nearest the saved one, and the candidates' scores if
    /// they were earned by miniatures of the same size (so that the restarted cache weighs new evidence
    /// against the old, rather than switching on its first epoch). Its own miniature caches start empty.
    pub(crate) fn restore(&mut self, state: &MiniatureState) {
        let distance = |i: usize| (WINDOWS[i] - state.window).abs();
        self.chosen = (0..N).min_by(|&a, &b| distance(a).total_cmp(&distance(b))).unwrap_or(INITIAL);
        if state.entries == self.entries && state.scores.len() == N {
            for (c, &score) in self.candidates.iter_mut().zip(&state.scores) {
                c.score = if score.is_finite() { score.max(0.0) } else { 0.0 };
            }
        }
    }

    /// One access of sampled key `hash`.
    pub(crate) fn access(&mut self, hash: u64) {
        self.sketch.increment(hash);
        let idx = match self.index.get(&hash) {
            Some(&idx) => idx,
            None => {
                let node = Node { hash, held: 0, segment: [ABSENT; N], links: [Link { prev: NIL, next: NIL }; N] };
                let idx = match self.free.pop() {
                    Some(i) => {
                        self.nodes[i as usize] = node;
                        i
                    }
                    None => {
                        self.nodes.push(node);
                        // The free list never holds more than every node: room for that now, so that
                        // releasing a node never allocates.
                        self.free.reserve(self.nodes.capacity() - self.free.len());
                        (self.nodes.len() - 1) as u32
                    }
                };
                self.index.insert(hash, idx);
                idx
            }
        };
        for c in 0..N {
            if self.nodes[idx as usize].segment[c] == ABSENT {
                self.miss(c, idx);
            } else {
                self.candidates[c].hits += 1;
                self.hit(c, idx);
            }
        }
        self.release_if_unheld(idx);
        self.seen += 1;
        if self.seen.is_multiple_of((EPOCH_PER_ENTRY * self.capacity).max(MIN_EPOCH)) {
            self.end_epoch();
        }
    }

    fn end_epoch(&mut self) {
        for c in &mut self.candidates {
            c.score = c.score * DECAY + c.hits as f64;
            c.hits = 0;
        }
        let best =
            (0..N).max_by(|&a, &b| self.candidates[a].score.total_cmp(&self.candidates[b].score)).unwrap_or(INITIAL);
        // Hit counts are noisy (roughly Poisson): a challenger must lead by more than a standard
        // deviation of the difference, or the window would flap between near-equal candidates, and
        // every move costs the real cache some of its contents' order.
        let (challenger, chosen) = (self.candidates[best].score, self.candidates[self.chosen].score);
        if challenger - chosen > (challenger + chosen).sqrt() {
            self.chosen = best;
        }
    }

    fn hit(&mut self, c: usize, idx: u32) {
        match self.nodes[idx as usize].segment[c] {
            PROBATION => {
                self.unlink(c, idx);
                self.push(c, PROTECTED, idx);
                let cand = &self.candidates[c];
                if cand.queues[2].len > cand.protected_max {
                    let head = cand.queues[2].head;
                    self.unlink(c, head);
                    self.push(c, PROBATION, head);
                }
            }
            segment => {
                self.unlink(c, idx);
                self.push(c, segment, idx);
            }
        }
    }

    fn miss(&mut self, c: usize, idx: u32) {
        self.nodes[idx as usize].held += 1;
        self.push(c, WINDOW, idx);
        while self.candidates[c].queues[0].len > self.candidates[c].window_max {
            let cand = self.candidates[c].queues[0].head;
            self.unlink(c, cand);
            let q = &self.candidates[c].queues;
            if q[1].len + q[2].len < self.candidates[c].main_max {
                self.push(c, PROBATION, cand);
                continue;
            }
            let victim = if q[1].head != NIL { q[1].head } else { q[2].head };
            let (fc, fv) = (
                self.sketch.frequency(self.nodes[cand as usize].hash),
                self.sketch.frequency(self.nodes[victim as usize].hash),
            );
            let evicted = if fc > fv {
                self.unlink(c, victim);
                self.push(c, PROBATION, cand);
                victim
            } else {
                cand
            };
            self.nodes[evicted as usize].held -= 1;
            if evicted != idx {
                self.release_if_unheld(evicted);
            }
        }
    }

    fn release_if_unheld(&mut self, idx: u32) {
        let node = &self.nodes[idx as usize];
        if node.held == 0 {
            self.index.remove(&node.hash);
            self.free.push(idx);
        }
    }

    fn push(&mut self, c: usize, segment: u8, idx: u32) {
        let q = &mut self.candidates[c].queues[usize::from(segment - 1)];
        let tail = q.tail;
        q.tail = idx;
        if tail == NIL {
            q.head = idx;
        }
        q.len += 1;
        if tail != NIL {
            self.nodes[tail as usize].links[c].next = idx;
        }
        let node = &mut self.nodes[idx as usize];
        node.segment[c] = segment;
        node.links[c] = Link { prev: tail, next: NIL };
    }

    fn unlink(&mut self, c: usize, idx: u32) {
        let node = &mut self.nodes[idx as usize];
        let (Link { prev, next }, segment) = (node.links[c], node.segment[c]);
        node.segment[c] = ABSENT;
        let q = &mut self.candidates[c].queues[usize::from(segment - 1)];
        q.len -= 1;
        if prev == NIL {
            q.head = next;
        } else {
            self.nodes[prev as usize].links[c].next = next;
        }
        if next == NIL {
            self.candidates[c].queues[usize::from(segment - 1)].tail = prev;
        } else {
            self.nodes[next as usize].links[c].prev = prev;
        }
    }

    /// Checks every candidate's queues against the nodes.
    #[cfg(test)]
    fn validate(&self) {
        let mut held = HashMap::<u32, u8>::new();
        for (c, cand) in self.candidates.iter().enumerate() {
            let mut total = 0;
            for (s, q) in cand.queues.iter().enumerate() {
                let (mut n, mut at, mut prev) = (0, q.head, NIL);
                while at != NIL {
                    let node = &self.nodes[at as usize];
                    assert_eq!(usize::from(node.segment[c]), s + 1);
                    assert_eq!(node.links[c].prev, prev);
                    *held.entry(at).or_default() += 1;
                    (prev, at) = (at, node.links[c].next);
                    n += 1;
                }
                assert_eq!(q.tail, prev);
                assert_eq!(n, q.len);
                total += n;
            }
            assert!(total <= self.capacity, "candidate {c} holds {total} of {}", self.capacity);
            assert!(cand.queues[0].len <= cand.window_max);
        }
        assert_eq!(held.len(), self.index.len());
        for (idx, n) in held {
            assert_eq!(self.nodes[idx as usize].held, n);
            assert_eq!(self.index[&self.nodes[idx as usize].hash], idx);
        }
    }
}

/// The cache's miniature, shared by its shards, and the sample's shift for readers.
#[derive(Debug)]
pub(crate) struct Adaptation {
    /// Taken by a shard's writer (under the shard's lock: shard, then miniature, never the reverse) to
    /// hand over its samples, and by capacity changes.
    miniature: Mutex<Miniature>,
    /// The sample's shift, so that a reader can tell a sampled key without the lock. Relaxed: a reader
    /// that sees an old shift records a read the shard filters out, or misses one; both only blur the
    /// sample for the moment the shift changes.
    shift: AtomicU32,
    shards: u64,
    weighted: bool,
}

/// What a shard learns when it hands its samples over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Handover {
    /// How many of the samples, from the oldest, the miniature took (all, unless it had no room left
    /// without allocating and was told not to grow).
    pub(crate) taken: usize,
    /// The sample's shift.
    pub(crate) shift: u32,
    /// The window the real cache should use, as a fraction of its capacity.
    pub(crate) window: f64,
    /// How many samples a shard should collect before the next handover: few enough that the batches
    /// of all the shards together reorder the miniature's stream by at most an eighth of its size.
    pub(crate) batch: usize,
}

/// Most samples a shard collects before handing them over.
const MAX_BATCH: u64 = 16;

impl Adaptation {
    /// For a cache of `capacity` split into `shards` shards. A weighted cache cannot tell how many
    /// entries its capacity holds until it holds some: it starts by sampling every key, in miniatures of
    /// at most `2 × TARGET - 1` entries, until its first [`resize`](Self::resize).
    pub(crate) fn new(capacity: u64, shards: usize, weighted: bool) -> Self {
        let entries = if weighted { capacity.min(2 * TARGET - 1) } else { capacity };
        let m = Miniature::new(entries);
        let shards = shards.max(1) as u64;
        Adaptation { shift: AtomicU32::new(m.shift()), miniature: Mutex::new(m), shards, weighted }
    }

    /// For a weighted cache, how many writes a shard lets pass between estimates of how many entries the
    /// capacity holds (about every 16,384 writes to the cache); `None` for an unweighted cache, whose
    /// capacity is its entries.
    pub(crate) fn remeasure_every(&self) -> Option<u32> {
        self.weighted.then(|| (16_384 / self.shards).max(64) as u32)
    }

    /// Whether reads of `hash` should be recorded for the miniature.
    #[inline]
    pub(crate) fn samples(&self, hash: u64) -> bool {
        is_sampled(hash, self.shift.load(Ordering::Relaxed))
    }

    /// The cache now holds about `entries` entries.
    pub(crate) fn resize(&self, entries: u64) {
        let mut m = self.miniature.lock();
        m.resize(entries);
        self.shift.store(m.shift(), Ordering::Relaxed);
    }

    #[cfg(feature = "snapshot")]
    /// The miniature's state, for a snapshot.
    pub(crate) fn state(&self) -> MiniatureState {
        self.miniature.lock().state()
    }

    #[cfg(feature = "snapshot")]
    /// Takes up a saved state (see [`Miniature::restore`]); returns the window it chose.
    pub(crate) fn restore(&self, state: &MiniatureState) -> f64 {
        let mut m = self.miniature.lock();
        m.restore(state);
        m.window()
    }

    /// Runs the sampled accesses `hashes` (oldest first; those outside the current sample are skipped)
    /// through the miniature, if no other shard is using it (`None` if it is busy). Writers only: the
    /// miniature's tables may grow.
    pub(crate) fn try_hand_over(&self, hashes: &[u64]) -> Option<Handover> {
        let mut m = self.miniature.try_lock()?;
        let shift = m.shift();
        for &h in hashes {
            if is_sampled(h, shift) {
                m.access(h);
            }
        }
        let taken = hashes.len();
        let batch = (m.capacity / (8 * self.shards)).clamp(1, MAX_BATCH) as usize;
        Some(Handover { taken, shift, window: m.window(), batch })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn mix(k: u64) -> u64 {
        k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k >> 7)
    }

    #[test]
    fn the_sample_shrinks_with_the_cache_and_covers_its_share_of_keys() {
        assert_eq!(shift_for(100), 0);
        assert_eq!(shift_for(2 * TARGET - 1), 0);
        assert_eq!(shift_for(2 * TARGET), 1);
        assert_eq!(shift_for(1 << 20), 10);
        let sampled = (0..1u64 << 16).filter(|&k| is_sampled(mix(k), 4)).count();
        assert!((3_500..4_700).contains(&sampled), "{sampled} of 65,536 at 1/16");
        assert!((0..1000).all(|k| is_sampled(mix(k), 0)));
    }

    #[test]
    fn candidates_stay_consistent_and_within_capacity() {
        let mut m = Miniature::new(300);
        let mut x = 7u64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly a hot set, sometimes a scan.
            let key = if i % 5 == 0 { 1_000_000 + i } else { x % 400 };
            m.access(mix(key));
            if i % 997 == 0 {
                m.validate();
            }
        }
        m.validate();
    }

    #[test]
    fn reuse_at_short_distance_chooses_a_wide_window_and_a_skewed_load_a_narrow_one() {
        // Every key read twice, 200 distinct keys apart, never again: only a window wider than that
        // keeps it for its second read (the sketch never favours a key read once over a resident).
        let mut m = Miniature::new(500);
        for i in 100..20_000u64 {
            m.access(mix(i));
            m.access(mix(i - 100));
        }
        assert!(m.window() >= 0.5, "recency: chose {}", m.window());
        // Then a hot set among ever new keys: the hot keys must not be flushed by the one-hit ones.
        let mut x = 1u64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = if i % 2 == 0 { 10_000_000 + x % 400 } else { 20_000_000 + i };
            m.access(mix(key));
        }
        assert!(m.window() <= 0.2, "hot set among one-hit keys: chose {}", m.window());
        m.validate();
    }

    #[test]
    fn resizing_starts_over_but_keeps_the_choice_until_the_next_epoch() {
        let mut m = Miniature::new(500);
        m.chosen = 3;
        m.access(mix(1));
        m.resize(550);
        assert_eq!((m.chosen, m.index.len()), (3, 1), "a small change is ignored");
        m.resize(100_000);
        assert_eq!((m.shift(), m.window(), m.index.len()), (shift_for(100_000), WINDOWS[3], 0));
    }
}
