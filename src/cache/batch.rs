//! Batch operations: many keys, each shard's lock taken once.
//!
//! The keys are hashed and grouped by shard; each group is served under one acquisition of its shard's
//! lock. Results come back in the order of the keys given. Compared with a loop of single-key calls this
//! saves one lock round trip, one counter update and (for writes) one read-buffer replay per key.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use super::removal::{Removal, RemovalCause};
use super::shard::Inserted;
use super::stats::Counter;
use super::{Cache, Entry, Read, Removals};
use crate::clock::{NEVER, deadline_after};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// Positions `0..hashes.len()` grouped by shard (a counting sort: O(keys + shards)), as
    /// `(shard index, position)` pairs; positions keep their order within a shard.
    fn by_shard(&self, hashes: &[u64]) -> Vec<(usize, usize)> {
        let shards = self.inner.shards.len();
        let mut starts = vec![0usize; shards + 1];
        for &h in hashes {
            starts[self.shard_index(h) + 1] += 1;
        }
        for i in 0..shards {
            starts[i + 1] += starts[i];
        }
        let mut order = vec![(0, 0); hashes.len()];
        for (i, &h) in hashes.iter().enumerate() {
            let s = self.shard_index(h);
            order[starts[s]] = (s, i);
            starts[s] += 1;
        }
        order
    }

    /// The values of `keys`, in order (`None` where absent or expired). Counts a hit or miss per key.
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let cache: Cache<u32, &str> = Cache::new(100);
    /// cache.insert_many([(1, "a"), (2, "b")]);
    /// assert_eq!(cache.get_many(&[&1, &3, &2]), vec![Some("a"), None, Some("b")]);
    /// assert_eq!(cache.invalidate_many(&[&1, &3]), 1);
    /// ```
    pub fn get_many<Q>(&self, keys: &[&Q]) -> Vec<Option<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(*k)).collect();
        let mut out: Vec<Option<V>> = vec![None; keys.len()];
        let order = self.by_shard(&hashes);
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let locked = &self.inner.shards[group[0].0];
            // W-TinyLFU takes reads as marks: one shared acquisition serves the whole group.
            let shared = locked.shard.read();
            if shared.marks_reads() {
                let mut expired = false;
                for &(_, i) in group {
                    match self.read_entry(&shared, hashes[i], keys[i]) {
                        Read::Hit(v, _) => out[i] = Some(v),
                        Read::Miss => {}
                        Read::Expired => expired = true,
                    }
                }
                drop(shared);
                if expired {
                    self.write(locked, true, |_, _, _| ());
                }
                continue;
            }
            drop(shared);
            // Reads the policy must see in order: one exclusive acquisition per shard applies them at
            // once, with no trip through the read buffer (readers wait for the group, not the batch).
            self.write(locked, false, |shard, now, _| {
                for &(_, i) in group {
                    // `write` reclaimed what had expired by `now`, so whatever is found is live.
                    if let Some(idx) = shard.find(hashes[i], keys[i]) {
                        if let (true, Some(now)) = (shard.may_expire(idx), now) {
                            shard.note_access(idx, now);
                        }
                        out[i] = Some(shard.entry(idx).value.clone());
                        shard.record_read(idx, shard.generation(idx));
                    }
                }
            });
        }
        let hits = out.iter().filter(|v| v.is_some()).count() as u64;
        self.inner.counters.add(Counter::Hit, hits);
        self.inner.counters.add(Counter::Miss, keys.len() as u64 - hits);
        out
    }

    /// Stores every pair, as [`insert`](Self::insert) would one by one (a later pair with an equal key
    /// replaces an earlier one).
    pub fn insert_many(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let mut entries: Vec<(u64, K, V)> = entries.into_iter().map(|(k, v)| (self.hash(&k), k, v)).collect();
        // Stable: pairs with equal keys keep their order, so the last one wins as in a loop.
        entries.sort_by_key(|e| self.shard_index(e.0));
        let mut entries = entries.into_iter().peekable();
        let mut rejected = Vec::new();
        while let Some(first) = entries.next() {
            let index = self.shard_index(first.0);
            let mut group = vec![first];
            while let Some(next) = entries.next_if(|e| self.shard_index(e.0) == index) {
                group.push(next);
            }
            let weights: Vec<u32> = group.iter().map(|(_, k, v)| self.weigh(k, v)).collect();
            let ttl = self.inner.ttl;
            self.write(&self.inner.shards[index], false, |shard, now, out: &mut Removals<K, V>| {
                let expires_at = match (ttl, now) {
                    (Some(ttl), Some(now)) => deadline_after(now, ttl),
                    _ => NEVER,
                };
                let (mut inserts, mut updates) = (0, 0);
                for ((hash, key, value), weight) in group.into_iter().zip(weights) {
                    match shard.insert(Entry::new(key, value, hash, weight), expires_at, now, out) {
                        Inserted::New => inserts += 1,
                        Inserted::Updated => updates += 1,
                        Inserted::Rejected(k, v) => rejected.push((k, v)),
                    }
                }
                self.inner.counters.add(Counter::Insert, inserts);
                self.inner.counters.add(Counter::Update, updates);
            });
        }
        self.inner.counters.add(Counter::Rejection, rejected.len() as u64);
        if let Some(listener) = &self.inner.listener {
            for (k, v) in rejected {
                listener(k, v, RemovalCause::Capacity);
            }
        }
    }

    /// Drops every key of `keys` that is present ([`RemovalCause::Invalidated`]); returns how many were.
    pub fn invalidate_many<Q>(&self, keys: &[&Q]) -> u64
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(*k)).collect();
        let mut total = 0;
        for group in self.by_shard(&hashes).chunk_by(|a, b| a.0 == b.0) {
            let gone: Vec<Removal<K, V>> = self.write(&self.inner.shards[group[0].0], false, |shard, _, _| {
                group.iter().filter_map(|&(_, i)| shard.remove(hashes[i], keys[i], RemovalCause::Invalidated)).collect()
            });
            total += gone.len() as u64;
            self.notify(gone);
        }
        total
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Cache, ManualClock, RemovalCause};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn batches_match_single_key_calls() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(1_000)
            .shards(8)
            .eviction_listener(move |k, v, c| sink.lock().unwrap().push((k, v, c)))
            .build();
        cache.insert_many((0..500).map(|k| (k, k * 2)).chain([(7, 70)]));
        assert_eq!(cache.len(), 500);
        assert_eq!(cache.get(&7), Some(70), "the later pair wins");
        let keys: Vec<u32> = (490..510).collect();
        let refs: Vec<&u32> = keys.iter().collect();
        let got = cache.get_many(&refs);
        for (k, v) in keys.iter().zip(&got) {
            assert_eq!(*v, (*k < 500).then_some(k * 2));
        }
        assert_eq!(cache.invalidate_many(&refs), 10);
        assert_eq!(cache.len(), 490);
        let s = cache.stats();
        assert_eq!((s.inserts, s.updates, s.hits, s.misses), (500, 1, 11, 10));
        assert_eq!(s.removed(RemovalCause::Invalidated), 10);
        assert_eq!(seen.lock().unwrap().iter().filter(|e| e.2 == RemovalCause::Invalidated).count(), 10);
        cache.validate();
    }

    #[test]
    fn batch_reads_skip_expired_and_batch_writes_respect_capacity() {
        let clock = ManualClock::new();
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(10)
            .shards(1)
            .time_to_live(Duration::from_secs(1))
            .clock(clock.clone())
            .build();
        cache.insert_many((0..5).map(|k| (k, k)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get_many(&[&0, &1]), vec![None, None]);
        assert_eq!(cache.len(), 0, "the expired entries were reclaimed");
        cache.insert_many((0..50).map(|k| (k, k)));
        assert_eq!(cache.len(), 10);
        cache.validate();
        let heavy: Cache<u32, u32> = Cache::builder().max_capacity(10).weigher(|_, v: &u32| *v).build();
        heavy.insert_many([(1, 5), (2, 50)]);
        assert_eq!((heavy.len(), heavy.stats().rejections), (1, 1));
    }
}
