//! A hierarchical timer wheel: O(1) amortised expiry per entry, no scans of the whole shard.
//!
//! Six levels of 64 buckets. A level-0 bucket spans 2^24 ns (about 16.8 ms); each level up spans 64
//! times more, so the wheel covers about 36 years (later deadlines park in the last bucket and are
//! re-filed when it comes round). An entry is filed at the lowest level whose 64 buckets reach its
//! deadline. When time moves on, the buckets it passed are emptied: entries whose deadline has come are
//! handed back as expired, the rest are re-filed lower down (each entry cascades at most once per level).
//!
//! Exactness: the level-0 bucket of the current tick is kept sorted by deadline, and every `advance`
//! pops its due prefix, so after `advance(now)` no entry with a deadline `<= now` remains. That is what
//! lets the shard promise that expired entries are reclaimed before any live entry is evicted.
//!
//! Time-to-idle moves deadlines later without touching the wheel: a due entry whose real deadline
//! ([`Timer::deadline`](super::entry::Timer::deadline)) has moved is simply re-filed.

use super::entry::NO_BUCKET;
use super::list::List;
use super::slab::{Lane, Slab};

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const BASE_SHIFT: u32 = 24;

fn shift(level: usize) -> u32 {
    BASE_SHIFT + 6 * level as u32
}

#[derive(Debug)]
pub(crate) struct TimerWheel {
    /// `LEVELS * SLOTS` buckets, allocated on the first `schedule` (caches without expiry never pay).
    buckets: Vec<List>,
    /// Bit `s` of `occupied[l]` is set when bucket `s` of level `l` is not empty.
    occupied: [u64; LEVELS],
    now: u64,
    len: usize,
    /// Reused between advances: entries being re-filed, with their deadlines.
    refile: Vec<(u64, u32)>,
}

impl TimerWheel {
    pub(crate) fn new(now: u64) -> Self {
        TimerWheel { buckets: Vec::new(), occupied: [0; LEVELS], now, len: 0, refile: Vec::new() }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn current_bucket(&self) -> usize {
        (self.now >> BASE_SHIFT) as usize & (SLOTS - 1)
    }

    fn locate(&self, deadline: u64) -> usize {
        if deadline <= self.now {
            return self.current_bucket();
        }
        for level in 0..LEVELS {
            let s = shift(level);
            if (deadline >> s) - (self.now >> s) < SLOTS as u64 {
                return level * SLOTS + ((deadline >> s) as usize & (SLOTS - 1));
            }
        }
        // Beyond the wheel's span: park in the farthest top-level bucket; re-filed when it comes round.
        let s = shift(LEVELS - 1);
        (LEVELS - 1) * SLOTS + (((self.now >> s) + SLOTS as u64 - 1) as usize & (SLOTS - 1))
    }

    /// Files `idx` (not currently filed) under `deadline`.
    pub(crate) fn schedule<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, deadline: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![List::default(); LEVELS * SLOTS];
        }
        let b = self.locate(deadline);
        let t = slab.wheel_mut(idx);
        debug_assert_eq!(t.bucket, NO_BUCKET);
        t.filed = deadline;
        t.bucket = b as u16;
        if b == self.current_bucket() {
            // Keep the current bucket sorted: walk back from the tail to the first earlier deadline.
            let mut after = self.buckets[b].tail();
            while let Some(t) = after {
                if slab.wheel(t).filed <= deadline {
                    break;
                }
                after = Some(slab.link(t, Lane::Timer).prev).filter(|&p| p != super::slab::NIL);
            }
            match after {
                None => match self.buckets[b].head() {
                    Some(h) => self.buckets[b].insert_before(slab, Lane::Timer, idx, h),
                    None => self.buckets[b].push_back(slab, Lane::Timer, idx),
                },
                Some(t) => match Some(slab.link(t, Lane::Timer).next).filter(|&n| n != super::slab::NIL) {
                    Some(n) => self.buckets[b].insert_before(slab, Lane::Timer, idx, n),
                    None => self.buckets[b].push_back(slab, Lane::Timer, idx),
                },
            }
        } else {
            self.buckets[b].push_back(slab, Lane::Timer, idx);
        }
        self.occupied[b / SLOTS] |= 1 << (b % SLOTS);
        self.len += 1;
    }

    /// Takes `idx` out of the wheel if it is filed.
    pub(crate) fn unschedule<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        let b = slab.wheel(idx).bucket;
        if b == NO_BUCKET {
            return;
        }
        let b = b as usize;
        self.buckets[b].unlink(slab, Lane::Timer, idx);
        if self.buckets[b].is_empty() {
            self.occupied[b / SLOTS] &= !(1 << (b % SLOTS));
        }
        slab.wheel_mut(idx).bucket = NO_BUCKET;
        self.len -= 1;
    }

    /// Moves `idx` to `deadline` (filed or not before).
    pub(crate) fn reschedule<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, deadline: u64) {
        self.unschedule(slab, idx);
        self.schedule(slab, idx, deadline);
    }

    fn detach<K, V>(&mut self, slab: &mut Slab<K, V>, b: usize, out: &mut Vec<u32>) {
        while let Some(idx) = self.buckets[b].pop_front(slab, Lane::Timer) {
            slab.wheel_mut(idx).bucket = NO_BUCKET;
            self.len -= 1;
            out.push(idx);
        }
        self.occupied[b / SLOTS] &= !(1 << (b % SLOTS));
    }

    /// Moves the wheel to `now`. Every entry whose deadline is `<= now` is taken out of the wheel and its
    /// index appended to `expired`; the caller removes those entries from the shard.
    pub(crate) fn advance<K, V>(&mut self, slab: &mut Slab<K, V>, now: u64, tti: Option<u64>, expired: &mut Vec<u32>) {
        if self.len == 0 {
            self.now = self.now.max(now);
            return;
        }
        if now > self.now {
            let prev = self.now;
            self.now = now;
            let due = expired;
            let start = due.len();
            for level in 0..LEVELS {
                let s = shift(level);
                let (p, n) = (prev >> s, now >> s);
                if p == n {
                    break;
                }
                // Level 0 also empties the bucket of the tick it leaves: it may hold deadlines in (prev, now].
                let first = if level == 0 { p } else { p + 1 };
                let count = (n - first + 1).min(SLOTS as u64);
                for t in first..first + count {
                    self.detach(slab, level * SLOTS + (t as usize & (SLOTS - 1)), due);
                }
            }
            let mut refile = std::mem::take(&mut self.refile);
            let mut keep = start;
            for i in start..due.len() {
                let idx = due[i];
                let deadline = slab.timer(idx).deadline(tti);
                if deadline <= now {
                    due[keep] = idx;
                    keep += 1;
                } else {
                    refile.push((deadline, idx));
                }
            }
            due.truncate(keep);
            // Sorted, so that re-filing into the (empty) current bucket appends in deadline order.
            refile.sort_unstable_by_key(|&(d, _)| d);
            for &(deadline, idx) in &refile {
                self.schedule(slab, idx, deadline);
            }
            refile.clear();
            self.refile = refile;
            self.pop_due(slab, tti, due);
            return;
        }
        self.pop_due(slab, tti, expired);
    }

    /// The current bucket is sorted: pops its due prefix.
    fn pop_due<K, V>(&mut self, slab: &mut Slab<K, V>, tti: Option<u64>, expired: &mut Vec<u32>) {
        let cur = self.current_bucket();
        while let Some(h) = self.buckets[cur].head() {
            if slab.wheel(h).filed > self.now {
                break;
            }
            self.unschedule(slab, h);
            let deadline = slab.timer(h).deadline(tti);
            if deadline <= self.now {
                expired.push(h);
            } else {
                self.schedule(slab, h, deadline);
            }
        }
    }

    /// The filed entry with (about) the earliest deadline: exact within the current bucket, otherwise the
    /// first entry of the nearest non-empty bucket.
    pub(crate) fn earliest(&self) -> Option<u32> {
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits == 0 {
                continue;
            }
            let cur = (self.now >> shift(level)) as u32 & (SLOTS as u32 - 1);
            let slot = (cur + bits.rotate_right(cur).trailing_zeros()) as usize & (SLOTS - 1);
            return self.buckets[level * SLOTS + slot].head();
        }
        None
    }

    /// Checks that every filed entry is where its `bucket` says and the count matches.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate<K, V>(&self, slab: &Slab<K, V>) {
        let mut n = 0;
        for (b, list) in self.buckets.iter().enumerate() {
            let mut last = 0;
            for idx in list.iter(slab, Lane::Timer) {
                let t = slab.wheel(idx);
                assert_eq!(t.bucket as usize, b, "entry filed in the wrong bucket");
                if b == self.current_bucket() {
                    assert!(t.filed >= last, "current bucket out of order");
                    last = t.filed;
                }
                n += 1;
            }
            assert_eq!(list.is_empty(), self.occupied[b / SLOTS] & (1 << (b % SLOTS)) == 0);
        }
        assert_eq!(n, self.len, "wheel length");
        let filed = slab.iter().filter(|&(i, _)| slab.has_timers() && slab.wheel(i).bucket != NO_BUCKET).count();
        assert_eq!(filed, self.len, "entries marked filed");
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::cache::entry::{Entry, Meta};
    use crate::clock::NEVER;
    use proptest::prelude::*;

    fn slab_with(deadlines: &[u64]) -> Slab<usize, ()> {
        let mut s = Slab::new();
        s.enable_timers();
        let guard = crossbeam_epoch::pin();
        for (k, &d) in deadlines.iter().enumerate() {
            let meta = Meta { hash: k as u64, weight: 1, ..Meta::default() };
            s.insert(Entry { key: k, value: () }, meta, Some((d, 0)), &guard);
        }
        s
    }

    #[test]
    fn expires_exactly_at_deadline_across_levels() {
        let deadlines = [5, 20_000_000, 2_000_000_000, 90_000_000_000, 7_200_000_000_000];
        let mut slab = slab_with(&deadlines);
        let mut w = TimerWheel::new(0);
        for (i, &d) in deadlines.iter().enumerate() {
            w.schedule(&mut slab, i as u32, d);
        }
        w.validate(&slab);
        let mut out = Vec::new();
        for (i, &d) in deadlines.iter().enumerate() {
            w.advance(&mut slab, d - 1, None, &mut out);
            assert!(out.is_empty(), "entry {i} expired early");
            w.advance(&mut slab, d, None, &mut out);
            assert_eq!(out, vec![i as u32]);
            out.clear();
            w.validate(&slab);
        }
        assert!(w.is_empty());
    }

    #[test]
    fn earliest_and_unschedule() {
        let mut slab = slab_with(&[3_000_000_000, 1_000, 50_000_000]);
        let mut w = TimerWheel::new(0);
        for i in 0..3 {
            let d = slab.timer(i).expires_at();
            w.schedule(&mut slab, i, d);
        }
        assert_eq!(w.earliest(), Some(1));
        w.unschedule(&mut slab, 1);
        assert_eq!(w.earliest(), Some(2));
        w.unschedule(&mut slab, 2);
        w.unschedule(&mut slab, 2);
        assert_eq!(w.earliest(), Some(0));
        w.validate(&slab);
    }

    #[test]
    fn idle_entries_are_refiled_not_expired() {
        let mut slab = slab_with(&[NEVER]);
        let mut w = TimerWheel::new(0);
        let tti = Some(100_000_000);
        w.schedule(&mut slab, 0, 100_000_000);
        slab.timer(0).touch(80_000_000);
        let mut out = Vec::new();
        w.advance(&mut slab, 150_000_000, tti, &mut out);
        assert!(out.is_empty());
        w.advance(&mut slab, 180_000_000, tti, &mut out);
        assert_eq!(out, vec![0]);
    }

    proptest! {
        /// Against a brute-force model: after each advance, exactly the entries with deadline <= now are out.
        #[test]
        fn matches_brute_force(
            deadlines in prop::collection::vec(0u64..(1u64 << 40), 1..60),
            steps in prop::collection::vec(0u64..(1u64 << 36), 1..40),
        ) {
            let mut slab = slab_with(&deadlines);
            let mut w = TimerWheel::new(0);
            for (i, &d) in deadlines.iter().enumerate() {
                w.schedule(&mut slab, i as u32, d);
            }
            let mut now = 0u64;
            let mut gone = vec![false; deadlines.len()];
            let mut out = Vec::new();
            for step in steps {
                now += step;
                w.advance(&mut slab, now, None, &mut out);
                for &i in &out {
                    prop_assert!(!gone[i as usize]);
                    gone[i as usize] = true;
                }
                out.clear();
                for (i, &d) in deadlines.iter().enumerate() {
                    prop_assert_eq!(gone[i], d <= now, "entry {} deadline {} now {}", i, d, now);
                }
                w.validate(&slab);
            }
        }
    }
}
