//! One shard: a plain single-threaded map from keys to slab slots, with its policy and timer wheel.
//!
//! The shard knows nothing of threads; `cache/mod.rs` wraps each in a lock. That keeps every structural
//! invariant here checkable single-threaded by [`Shard::validate`], after every step of the property
//! tests.
//!
//! Nothing the shard removes is dropped here: departing keys and values go to a [`Removals`] list the
//! caller drains after releasing the lock, so neither a value's `Drop` nor the eviction listener ever
//! runs under it.

use std::borrow::Borrow;

use hashbrown::HashTable;

use super::entry::Entry;
use super::expiry::TimerWheel;
use super::policy::{Policy, PolicyState, READ};
use super::removal::{Removal, RemovalCause, Removals};
use super::slab::Slab;
use crate::clock::NEVER;

/// What [`Shard::insert`] did.
#[derive(Debug)]
pub(crate) enum Inserted<K, V> {
    /// A new entry.
    New,
    /// The key was present; its old value is in the removals, cause `Replaced`.
    Updated,
    /// The entry outweighs the shard on its own and was refused; handed back.
    Rejected(K, V),
}

#[derive(Debug)]
pub(crate) struct Shard<K, V> {
    map: HashTable<u32>,
    slab: Slab<K, V>,
    policy: PolicyState,
    wheel: TimerWheel,
    capacity: u64,
    weight: u64,
    tti: Option<u64>,
    /// Reused between calls: indices the timer wheel found expired.
    expired: Vec<u32>,
    /// True when the policy takes reads as marks on the entry (W-TinyLFU) rather than as records in the
    /// read buffer (the others, whose exact order needs every read).
    marks_reads: bool,
    /// Writes since the policy last saw the cache-wide hit and miss counts.
    writes_unobserved: u32,
}

impl<K: Eq, V> Shard<K, V> {
    pub(crate) fn new(policy: Policy, capacity: u64, tti: Option<u64>) -> Self {
        Shard {
            map: HashTable::new(),
            slab: Slab::new(),
            policy: PolicyState::new(policy, capacity),
            wheel: TimerWheel::new(0),
            capacity,
            weight: 0,
            tti,
            expired: Vec::new(),
            marks_reads: policy == Policy::Hybrid,
            writes_unobserved: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    #[cfg(any(test, loom))]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether some entry has a deadline, so that writes must consult the clock.
    pub(crate) fn has_timers(&self) -> bool {
        !self.wheel.is_empty()
    }

    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.map.find(hash, |&i| self.slab.entry(i).key.borrow() == key).copied()
    }

    pub(crate) fn entry(&self, idx: u32) -> &Entry<K, V> {
        self.slab.entry(idx)
    }

    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.slab.generation(idx)
    }

    /// Whether reads of slot `idx` must consult the clock.
    #[inline]
    pub(crate) fn may_expire(&self, idx: u32) -> bool {
        self.slab.has_timers() && (self.tti.is_some() || self.slab.timer(idx).expires_at != NEVER)
    }

    /// Whether slot `idx` is past its deadline at `now` (only meaningful when [`Shard::may_expire`]).
    pub(crate) fn is_expired(&self, idx: u32, now: u64) -> bool {
        self.slab.timer(idx).is_expired(self.tti, now)
    }

    /// Notes a read of slot `idx` at `now`, for time-to-idle. Callers hold the shared lock at least.
    pub(crate) fn note_access(&self, idx: u32, now: u64) {
        self.slab.timer(idx).accessed_at.store(now, crate::sync::Ordering::Relaxed);
    }

    /// Notes a read of slot `idx` under the shared lock: marks the entry, or says the read must be
    /// recorded in the read buffer (returns true). The mark is stored only if not already set, so hot
    /// entries cost readers no write at all.
    #[cfg(test)]
    pub(crate) fn note_read(&self, idx: u32) -> bool {
        self.note_read_of(self.slab.entry(idx))
    }

    /// [`Shard::note_read`] for an entry the caller already holds (saves a second slot lookup).
    #[inline]
    pub(crate) fn note_read_of(&self, entry: &Entry<K, V>) -> bool {
        if !self.marks_reads {
            return true;
        }
        let mark = &entry.mark;
        if mark.load(crate::sync::Ordering::Relaxed) != READ {
            mark.store(READ, crate::sync::Ordering::Relaxed);
        }
        false
    }

    /// Whether reads are taken as marks under the shared lock ([`Shard::note_read`]).
    pub(crate) fn marks_reads(&self) -> bool {
        self.marks_reads
    }

    /// Every 64th write, true: time to hand the policy the cache's hit and miss counts ([`Shard::observe`]).
    pub(crate) fn observation_due(&mut self) -> bool {
        if !self.marks_reads {
            return false;
        }
        self.writes_unobserved += 1;
        if self.writes_unobserved < 64 {
            return false;
        }
        self.writes_unobserved = 0;
        true
    }

    /// Gives the policy the cache-wide `hits` and `misses` so far, for its adaptation; `sample` is the
    /// number of accesses one adaptation step should look at.
    pub(crate) fn observe(&mut self, hits: u64, misses: u64, sample: u64) {
        self.policy.observe(&mut self.slab, hits, misses, sample);
    }

    /// Applies a read recorded earlier, if slot `idx` still holds the entry that was read.
    pub(crate) fn record_read(&mut self, idx: u32, generation: u32) {
        if self.slab.get_current(idx, generation).is_some() {
            self.policy.touch(&mut self.slab, idx);
        }
    }

    /// Stores `new` (built by [`Entry::new`]) with TTL deadline `expires_at` ([`NEVER`] for none),
    /// replacing the entry with an equal key.
    ///
    /// `now` is `Some` whenever any entry may have a deadline; the caller has already reclaimed what
    /// expired by then ([`Shard::expire`]), so capacity evictions only ever take live entries.
    pub(crate) fn insert(
        &mut self,
        new: Entry<K, V>,
        expires_at: u64,
        now: Option<u64>,
        out: &mut Removals<K, V>,
    ) -> Inserted<K, V> {
        let existing = self.find(new.hash, &new.key);
        if u64::from(new.weight) > self.capacity {
            if let Some(idx) = existing {
                // The caller meant to replace it: do not keep serving the old value.
                out.push(self.remove_at(idx, RemovalCause::Replaced));
            }
            return Inserted::Rejected(new.key, new.value);
        }
        if expires_at != NEVER || self.tti.is_some() {
            self.slab.enable_timers();
        }
        // A policy that filters admission (W-TinyLFU) takes the entry in first and decides between it and
        // the residents. The others make room among the residents first: the entry is kept out of the
        // policy (and the timer wheel) until then, so it can never be chosen to make room for itself.
        let filters = self.policy.filters_admission();
        let (idx, outcome) = match existing {
            Some(idx) => {
                if !filters {
                    self.policy.unlink(&mut self.slab, idx);
                    if self.slab.has_timers() {
                        self.wheel.unschedule(&mut self.slab, idx);
                    }
                }
                let e = self.slab.entry_mut(idx);
                let old_weight = std::mem::replace(&mut e.weight, new.weight);
                let old_value = std::mem::replace(&mut e.value, new.value);
                self.weight = self.weight - u64::from(old_weight) + u64::from(new.weight);
                if filters {
                    self.policy.reweigh(&mut self.slab, idx, old_weight);
                    self.policy.touch(&mut self.slab, idx);
                }
                out.push(Removal { key: new.key, value: old_value, cause: RemovalCause::Replaced });
                (idx, Inserted::Updated)
            }
            None => {
                let (hash, weight) = (new.hash, new.weight);
                let idx = self.slab.insert(new);
                let slab = &self.slab;
                self.map.insert_unique(hash, idx, |&i| slab.entry(i).hash);
                self.weight += u64::from(weight);
                if filters {
                    self.policy.admit(&mut self.slab, idx);
                }
                (idx, Inserted::New)
            }
        };
        if !filters {
            self.evict_to_fit(out);
            match outcome {
                Inserted::Updated => self.policy.readmit(&mut self.slab, idx),
                _ => self.policy.admit(&mut self.slab, idx),
            }
        }
        if self.slab.has_timers() {
            self.slab.timer_mut(idx).start(expires_at, now.unwrap_or(0));
            self.file_timer(idx);
        }
        if filters {
            self.evict_to_fit(out);
        }
        outcome
    }

    fn file_timer(&mut self, idx: u32) {
        let deadline = self.slab.timer(idx).deadline(self.tti);
        if deadline == NEVER {
            self.wheel.unschedule(&mut self.slab, idx);
        } else {
            self.wheel.reschedule(&mut self.slab, idx, deadline);
        }
    }

    fn evict_to_fit(&mut self, out: &mut Removals<K, V>) {
        while self.weight > self.capacity {
            let Some(victim) = self.policy.victim(&mut self.slab, &self.wheel) else { break };
            out.push(self.remove_at(victim, RemovalCause::Capacity));
        }
    }

    fn remove_at(&mut self, idx: u32, cause: RemovalCause) -> Removal<K, V> {
        let hash = self.slab.entry(idx).hash;
        if let Ok(found) = self.map.find_entry(hash, |&i| i == idx) {
            found.remove();
        }
        self.policy.unlink(&mut self.slab, idx);
        if self.slab.has_timers() {
            self.wheel.unschedule(&mut self.slab, idx);
        }
        let e = self.slab.remove(idx);
        self.weight -= u64::from(e.weight);
        Removal { key: e.key, value: e.value, cause }
    }

    /// Removes `key` if present.
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q, cause: RemovalCause) -> Option<Removal<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let idx = self.find(hash, key)?;
        Some(self.remove_at(idx, cause))
    }

    /// Reclaims every entry whose deadline is `<= now`.
    pub(crate) fn expire(&mut self, now: u64, out: &mut Removals<K, V>) {
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.advance(&mut self.slab, now, self.tti, &mut expired);
        for idx in expired.drain(..) {
            out.push(self.remove_at(idx, RemovalCause::Expired));
        }
        self.expired = expired;
    }

    /// Removes every entry for which `pred` holds, with `cause`.
    pub(crate) fn remove_if(
        &mut self,
        mut pred: impl FnMut(&K, &V) -> bool,
        cause: RemovalCause,
        out: &mut Vec<Removal<K, V>>,
    ) {
        let doomed: Vec<u32> = self.slab.iter().filter(|(_, e)| pred(&e.key, &e.value)).map(|(i, _)| i).collect();
        out.reserve(doomed.len());
        for idx in doomed {
            out.push(self.remove_at(idx, cause));
        }
    }

    /// Clones of the live entries (for iteration).
    pub(crate) fn snapshot(&self, now: Option<u64>) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        self.slab
            .iter()
            .filter(|&(i, _)| !self.may_expire(i) || now.is_none_or(|now| !self.is_expired(i, now)))
            .map(|(_, e)| (e.key.clone(), e.value.clone()))
            .collect()
    }

    /// Checks every structural invariant; panics with a description on the first that fails.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate(&self) {
        assert_eq!(self.map.len(), self.slab.len(), "map and slab disagree on the count");
        let mut weight = 0;
        for (idx, e) in self.slab.iter() {
            assert_eq!(self.map.find(e.hash, |&i| i == idx), Some(&idx), "entry missing from the map");
            weight += u64::from(e.weight);
        }
        assert_eq!(weight, self.weight, "weights do not add up");
        assert!(self.weight <= self.capacity, "weight {} over capacity {}", self.weight, self.capacity);
        assert_eq!(self.policy.validate(&self.slab), self.slab.len(), "policy tracks a different count");
        self.wheel.validate(&self.slab);
        assert_eq!(self.slab.free_count() + self.slab.len(), self.slab_slots(), "slots leaked");
    }

    #[cfg(any(test, fuzzing, loom))]
    fn slab_slots(&self) -> usize {
        self.slab.slots_allocated()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn shard(policy: Policy, capacity: u64) -> Shard<u64, u64> {
        Shard::new(policy, capacity, None)
    }

    fn put(s: &mut Shard<u64, u64>, k: u64, w: u32, expires_at: u64, now: Option<u64>) -> Removals<u64, u64> {
        let mut out = Removals::new();
        if let Some(now) = now {
            s.expire(now, &mut out);
        }
        s.insert(Entry::new(k, k * 10, k.wrapping_mul(0x9e37_79b9_7f4a_7c15), w), expires_at, now, &mut out);
        s.validate();
        out
    }

    #[test]
    fn lru_order_follows_recorded_reads() {
        let mut s = shard(Policy::Lru, 3);
        for k in 0..3 {
            put(&mut s, k, 1, NEVER, None);
        }
        let idx = s.find(0u64.wrapping_mul(0x9e37_79b9_7f4a_7c15), &0).unwrap();
        s.record_read(idx, s.generation(idx));
        let out = put(&mut s, 3, 1, NEVER, None);
        assert_eq!(out.iter().map(|r| (r.key, r.cause)).collect::<Vec<_>>(), vec![(1, RemovalCause::Capacity)]);
        // A stale record (old generation) is ignored.
        s.record_read(idx, s.generation(idx).wrapping_add(1));
        s.validate();
    }

    #[test]
    fn hybrid_marks_reads_lru_records_them() {
        let mut h = shard(Policy::Hybrid, 10);
        put(&mut h, 1, 1, NEVER, None);
        let idx = h.find(1u64.wrapping_mul(0x9e37_79b9_7f4a_7c15), &1).unwrap();
        assert!(!h.note_read(idx), "W-TinyLFU takes a mark, not a record");
        assert_eq!(h.entry(idx).mark.load(crate::sync::Ordering::Relaxed), 1);
        let mut l = shard(Policy::Lru, 10);
        put(&mut l, 1, 1, NEVER, None);
        let idx = l.find(1u64.wrapping_mul(0x9e37_79b9_7f4a_7c15), &1).unwrap();
        assert!(l.note_read(idx) && l.note_read(idx), "exact LRU records every read");
        assert!((0..200).filter(|_| h.observation_due()).count() == 3 && !l.observation_due());
    }

    #[test]
    fn weights_evict_as_many_as_needed() {
        let mut s = shard(Policy::Lru, 10);
        for k in 0..5 {
            put(&mut s, k, 2, NEVER, None);
        }
        let out = put(&mut s, 9, 7, NEVER, None);
        assert_eq!(out.len(), 4, "7 units need four 2-unit entries out");
        assert_eq!((s.len(), s.weight()), (2, 9));
    }

    #[test]
    fn rejects_overweight_and_replaces() {
        let mut s = shard(Policy::Hybrid, 4);
        put(&mut s, 1, 1, NEVER, None);
        let mut out = Removals::new();
        let r = s.insert(Entry::new(1, 99, 1u64.wrapping_mul(0x9e37_79b9_7f4a_7c15), 5), NEVER, None, &mut out);
        assert!(matches!(r, Inserted::Rejected(1, 99)));
        assert_eq!(out.len(), 1, "the old value is not kept");
        assert_eq!(s.len(), 0);
        put(&mut s, 2, 1, NEVER, None);
        let out = put(&mut s, 2, 3, NEVER, None);
        assert_eq!(out[0].cause, RemovalCause::Replaced);
        assert_eq!(s.weight(), 3);
    }

    #[test]
    fn expiry_reclaims_only_what_is_due() {
        let mut s = shard(Policy::Lfu, 10);
        put(&mut s, 1, 1, 100, Some(0));
        put(&mut s, 2, 1, 200, Some(0));
        put(&mut s, 3, 1, NEVER, Some(0));
        assert!(s.has_timers());
        let mut out = Removals::new();
        s.expire(150, &mut out);
        assert_eq!(out.iter().map(|r| (r.key, r.cause)).collect::<Vec<_>>(), vec![(1, RemovalCause::Expired)]);
        assert_eq!(s.snapshot(Some(250)).len(), 1, "snapshot hides the expired entry 2");
        s.validate();
    }

    #[test]
    fn remove_and_remove_if() {
        let mut s = shard(Policy::Ttl, 10);
        for k in 0..6 {
            put(&mut s, k, 1, NEVER, None);
        }
        let h = 4u64.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        assert_eq!(s.remove(h, &4, RemovalCause::Removed).map(|r| r.value), Some(40));
        assert!(s.remove(h, &4, RemovalCause::Removed).is_none());
        let mut gone = Vec::new();
        s.remove_if(|k, _| k % 2 == 0, RemovalCause::Invalidated, &mut gone);
        assert_eq!(gone.len(), 2, "0 and 2 (4 was removed)");
        assert_eq!(s.len(), 3);
        s.validate();
    }
}
