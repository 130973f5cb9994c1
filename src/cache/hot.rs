//! The cache's entries in order of value, most valuable first, across shards: what a warm-restart
//! snapshot saves first and what [`Cache::hot_keys`] lists.
//!
//! Each shard orders its own entries by its policy (see `Shard::hot_entries`); the shards' lists are then
//! interleaved by rank within their shard, so that any prefix of the result takes from each shard in
//! proportion to what it holds.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hash};

use super::Cache;
use super::shard::Hot;

/// Interleaves lists of the given lengths, each most valuable first, into one order: position `p` of a
/// list of `n` ranks `(p + 1) / n`, lower ranks first, ties to the lower list. Returns `(list, position)`
/// pairs.
pub(crate) fn interleave(lens: &[usize]) -> Vec<(usize, usize)> {
    let mut heap: BinaryHeap<Next> =
        lens.iter().enumerate().filter(|&(_, &len)| len > 0).map(|(list, &len)| Next { list, pos: 0, len }).collect();
    let mut order = Vec::with_capacity(lens.iter().sum());
    while let Some(mut next) = heap.pop() {
        order.push((next.list, next.pos));
        next.pos += 1;
        if next.pos < next.len {
            heap.push(next);
        }
    }
    order
}

/// A list's next position, ordered for a max-heap so that the lowest rank pops first.
#[derive(Debug, PartialEq, Eq)]
struct Next {
    list: usize,
    pos: usize,
    len: usize,
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // (self.pos + 1) / self.len against other's, without division.
        let mine = (self.pos as u128 + 1) * other.len as u128;
        let theirs = (other.pos as u128 + 1) * self.len as u128;
        theirs.cmp(&mine).then(other.list.cmp(&self.list))
    }
}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    /// Up to `limit` keys of live entries, most valuable first: the reverse of the order the policy
    /// would evict them in (LRU: most recent first; LFU: most frequent; TTL: latest deadline, entries
    /// without one first; W-TinyLFU: protected, window, then probation, each most recent first), shards
    /// interleaved in proportion to what they hold. Weakly consistent, like [`iter`](Self::iter); each
    /// shard's lock is held only while its order is read.
    ///
    /// ```
    /// use cachefs::{Cache, Policy};
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).policy(Policy::Lru).build();
    /// for k in 0..3 {
    ///     cache.insert(k, k);
    /// }
    /// cache.get(&0);
    /// assert_eq!(cache.hot_keys(2), vec![0, 2]);
    /// ```
    pub fn hot_keys(&self, limit: usize) -> Vec<K>
    where
        K: Clone,
    {
        self.hot_map(limit, |key, _| key.clone())
    }

    /// `f` of up to `limit` live entries, most valuable first (as [`hot_keys`](Self::hot_keys) orders
    /// them). `f` runs with no lock held.
    pub(crate) fn hot_map<T>(&self, limit: usize, mut f: impl FnMut(&K, &V) -> T) -> Vec<T> {
        let mut per_shard: Vec<Vec<Option<T>>> = (0..self.inner.shards.len())
            .map(|i| {
                let mut items = Vec::new();
                self.visit_hot(i, limit, |key, value, _| items.push(Some(f(key, value))));
                items
            })
            .collect();
        let lens: Vec<usize> = per_shard.iter().map(Vec::len).collect();
        interleave(&lens).into_iter().take(limit).filter_map(|(s, p)| per_shard[s][p].take()).collect()
    }

    /// Calls `f` on shard `index`'s first `limit` live entries, most valuable first. The order is read
    /// under the shard's lock; `f` (user code: it clones or serialises) runs after it is released.
    pub(crate) fn visit_hot(&self, index: usize, limit: usize, mut f: impl FnMut(&K, &V, &Hot)) {
        let locked = &self.inner.shards[index];
        let guard = crossbeam_epoch::pin();
        let mut hot = {
            let mut shard = locked.lock(&guard);
            // Reads not yet replayed (the exact policies buffer them) count towards the order.
            locked.reads.drain(|i, g| shard.record_read(i, g));
            let now = (self.inner.config.load().expiring() || shard.has_timers()).then(|| self.inner.clock.now());
            shard.hot_entries(now)
        };
        hot.truncate(limit);
        for h in &hot {
            // SAFETY: the slot was occupied under the lock, with `guard` pinned before it was taken: even if
            // it has been retired since, it is not reclaimed while `guard` lives.
            let entry = unsafe { locked.store.slot_entry(h.idx) };
            f(&entry.key, &entry.value, h);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn interleaving_takes_from_each_list_in_proportion() {
        assert_eq!(interleave(&[]), vec![]);
        assert_eq!(interleave(&[0, 2]), vec![(1, 0), (1, 1)]);
        assert_eq!(interleave(&[2, 2]), vec![(0, 0), (1, 0), (0, 1), (1, 1)]);
        let order = interleave(&[4, 2, 0, 1]);
        assert_eq!(order.len(), 7);
        // Ranks 1/4, 2/4 and 1/2 (a tie, to the lower list), 3/4, then the lists' last entries.
        assert_eq!(&order[..4], &[(0, 0), (0, 1), (1, 0), (0, 2)]);
        // Each list's positions come in order.
        for list in 0..4 {
            let pos: Vec<usize> = order.iter().filter(|(l, _)| *l == list).map(|&(_, p)| p).collect();
            assert!(pos.windows(2).all(|w| w[0] + 1 == w[1]));
        }
    }

    #[test]
    fn hot_keys_follow_each_policy() {
        use crate::{Cache, Policy};
        let lfu: Cache<u32, u32> = Cache::builder().max_capacity(10).shards(1).policy(Policy::Lfu).build();
        for k in 0..4 {
            lfu.insert(k, k);
        }
        for _ in 0..3 {
            lfu.get(&2);
        }
        lfu.get(&1);
        lfu.insert(9, 9); // replays the recorded reads
        assert_eq!(lfu.hot_keys(3), vec![2, 1, 9]);

        let ttl: Cache<u32, u32> = Cache::builder().max_capacity(10).shards(1).policy(Policy::Ttl).build();
        ttl.insert_with_ttl(1, 1, std::time::Duration::from_secs(10));
        ttl.insert_with_ttl(2, 2, std::time::Duration::from_secs(100));
        ttl.insert(3, 3);
        assert_eq!(ttl.hot_keys(10), vec![3, 2, 1], "no deadline first, then the latest");

        let hybrid: Cache<u32, u32> = Cache::builder().max_capacity(100).shards(1).build();
        for k in 0..100 {
            hybrid.insert(k, k);
        }
        assert_eq!(hybrid.hot_keys(1000).len(), 100);
        assert_eq!(hybrid.hot_keys(0), Vec::<u32>::new());
    }
}
