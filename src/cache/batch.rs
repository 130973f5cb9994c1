//! Batch operations: many keys at once.
//!
//! `get_many` reads every key under one epoch guard, without a lock, in two passes: the first hashes
//! the keys and prefetches their index cells, so that the second finds them in cache (the lookups'
//! memory latency overlaps instead of adding up); hits and misses are counted once. `insert_many` and
//! `invalidate_many` group the keys by shard (a counting sort) and take each shard's lock once. Results
//! come back in the order of the keys given.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use super::removal::RemovalCause;
use super::shard::{Incoming, Inserted};
use super::stats::Counter;
use super::{Cache, Read};
use crate::clock::expiry;

/// One entry of [`Cache::store_batch`].
pub(crate) struct Stored<K, V> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) value: V,
    /// Time to live from the write (`None`: no deadline).
    pub(crate) ttl: Option<Duration>,
    /// For an entry restored from a snapshot: its frequency and place (see `Shard::restore`).
    pub(crate) restored: Option<(u8, u8)>,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
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
    /// Takes no lock (but to reclaim expired entries it finds).
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
        let guard = crossbeam_epoch::pin();
        let hashes: Vec<u64> = keys
            .iter()
            .map(|k| {
                let hash = self.hash(*k);
                self.shard(hash).store.prefetch(hash, &guard);
                hash
            })
            .collect();
        let mut expired = Vec::new();
        let mut hits = 0;
        let out: Vec<Option<V>> = keys
            .iter()
            .zip(&hashes)
            .map(|(key, &hash)| {
                let locked = self.shard(hash);
                match self.read_entry(&locked.store, hash, *key, &guard) {
                    Read::Hit(v, record) => {
                        if let Some((idx, generation)) = record {
                            self.record_read(locked, idx, generation, &guard);
                        }
                        hits += 1;
                        Some(v)
                    }
                    Read::Miss => None,
                    Read::Expired => {
                        expired.push(self.shard_index(hash));
                        None
                    }
                }
            })
            .collect();
        drop(guard);
        expired.sort_unstable();
        expired.dedup();
        for s in expired {
            self.write(&self.inner.shards[s], true, |_, _, _, _| ());
        }
        self.inner.counters.add(Counter::Hit, hits);
        self.inner.counters.add(Counter::Miss, keys.len() as u64 - hits);
        out
    }

    /// Stores every pair, as [`insert`](Self::insert) would one by one (a later pair with an equal key
    /// replaces an earlier one), taking each shard's lock once.
    ///
    /// The pairs are taken shard by shard. With [`Policy::Hybrid`](crate::Policy::Hybrid) over several
    /// shards, the window the policy adapts to may then differ slightly from the loop's, and so may which
    /// older entries are evicted; the other policies evict exactly as the loop would.
    pub fn insert_many(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let ttl = if self.inner.config.expiring() { self.inner.config.load().ttl } else { None };
        let entries = entries
            .into_iter()
            .map(|(key, value)| Stored { hash: self.hash(&key), key, value, ttl, restored: None })
            .collect();
        self.store_batch(entries, usize::MAX);
    }

    /// Stores `entries` as a loop of single inserts would (a later entry with an equal key replaces an
    /// earlier one), shard by shard, taking each shard's lock once per `max_group` of its entries.
    pub(crate) fn store_batch(&self, entries: Vec<Stored<K, V>>, max_group: usize) {
        // Entries with equal keys keep their order (the sort is stable), so the last one wins as in a loop.
        let hashes: Vec<u64> = entries.iter().map(|e| e.hash).collect();
        let mut entries: Vec<Option<Stored<K, V>>> = entries.into_iter().map(Some).collect();
        let mut rejected = Vec::new();
        let mut duplicates = Vec::new();
        let order = self.by_shard(&hashes);
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            for part in run.chunks(max_group) {
                let index = part[0].0;
                let group: Vec<Stored<K, V>> =
                    part.iter().map(|&(_, i)| entries[i].take().expect("each position once")).collect();
                self.store_group(index, group, &mut duplicates, &mut rejected);
            }
        }
        // Dropped here, outside every lock.
        drop(duplicates);
        self.inner.counters.add(Counter::Rejection, rejected.len() as u64);
        if let Some(listener) = &self.inner.listener {
            for (k, v) in rejected {
                (listener.call)(k, v, RemovalCause::Capacity);
            }
        }
    }

    /// Stores `group`, all of shard `index`, under one turn of its lock; keys handed back by updates go
    /// to `duplicates`, refused entries to `rejected` (both dealt with after the lock).
    fn store_group(&self, index: usize, group: Vec<Stored<K, V>>, duplicates: &mut Vec<K>, rejected: &mut Vec<(K, V)>) {
        let weights: Vec<u32> = group.iter().map(|e| self.weigh(&e.key, &e.value)).collect();
        let needs_clock = group.iter().any(|e| e.ttl.is_some());
        self.write(&self.inner.shards[index], needs_clock, |shard, now, out, guard| {
            let (mut inserts, mut updates) = (0, 0);
            for (i, (e, weight)) in group.into_iter().zip(weights).enumerate() {
                if i > 0 {
                    // The turn each single insert's write gives the policy (the write itself gives
                    // the last entry's), so that a batch adapts exactly as the loop would.
                    self.adapt(shard);
                }
                let incoming =
                    Incoming { key: e.key, value: e.value, hash: e.hash, weight, expires_at: expiry(e.ttl, now) };
                let outcome = match e.restored {
                    None => shard.insert(incoming, now, out, guard),
                    Some((f, place)) => shard.restore(incoming, now, f, place, out, guard),
                };
                match outcome {
                    Inserted::New => inserts += 1,
                    Inserted::Updated(k) => {
                        updates += 1;
                        duplicates.push(k);
                    }
                    Inserted::Rejected(k, v) => rejected.push((k, v)),
                }
            }
            self.inner.counters.add(Counter::Insert, inserts);
            self.inner.counters.add(Counter::Update, updates);
        });
    }

    /// Drops every key of `keys` that is present ([`RemovalCause::Invalidated`]); returns how many were.
    /// Takes each shard's lock once.
    pub fn invalidate_many<Q>(&self, keys: &[&Q]) -> u64
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(*k)).collect();
        let mut total = 0;
        for group in self.by_shard(&hashes).chunk_by(|a, b| a.0 == b.0) {
            total += self.write_then(&self.inner.shards[group[0].0], false, true, |shard, _, out, guard| {
                let before = out.len();
                for &(_, i) in group {
                    if let Some(r) = shard.remove(hashes[i], keys[i], RemovalCause::Invalidated, guard) {
                        out.push(r);
                    }
                }
                (out.len() - before) as u64
            });
        }
        self.collect_departed(Duration::ZERO);
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
        // Smaller under Miri, which interprets every instruction (500 entries took it a minute, 60 took
        // 47 s of the test command's time).
        let n: u32 = if cfg!(miri) { 30 } else { 500 };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        // Room for every key in each of the 8 shards, whatever the hash seed: with twice `n` in all, a
        // shard that drew 8 of Miri's 30 keys evicted one (one run in five, by the binomial odds).
        let cache: Cache<u32, u32> = Cache::builder()
            .max_capacity(8 * (u64::from(n) + 1))
            .shards(8)
            .eviction_listener(move |k, v, c| sink.lock().unwrap().push((k, v, c)))
            .build();
        cache.insert_many((0..n).map(|k| (k, k * 2)).chain([(7, 70)]));
        assert_eq!(cache.len(), u64::from(n));
        assert_eq!(cache.get(&7), Some(70), "the later pair wins");
        let keys: Vec<u32> = (n - 10..n + 10).collect();
        let refs: Vec<&u32> = keys.iter().collect();
        let got = cache.get_many(&refs);
        for (k, v) in keys.iter().zip(&got) {
            assert_eq!(*v, (*k < n).then_some(k * 2));
        }
        assert_eq!(cache.invalidate_many(&refs), 10);
        assert_eq!(cache.len(), u64::from(n) - 10);
        let s = cache.stats();
        assert_eq!((s.inserts, s.updates, s.hits, s.misses), (u64::from(n), 1, 11, 10));
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
        // Past the capacity of 10 either way (fewer under Miri: each write is about 0.2 s of its time).
        let n = if cfg!(miri) { 20 } else { 50 };
        cache.insert_many((0..n).map(|k| (k, k)));
        assert_eq!(cache.len(), 10);
        cache.validate();
        let heavy: Cache<u32, u32> = Cache::builder().max_capacity(10).weigher(|_, v: &u32| *v).build();
        heavy.insert_many([(1, 5), (2, 50)]);
        assert_eq!((heavy.len(), heavy.stats().rejections), (1, 1));
    }
}
