//! The caches a replay runs: cachefs's policies through the real `Cache`, and the peers, behind one trait.

use std::num::NonZeroUsize;

use cachefs::{Cache, Policy};

/// A cache as a replay drives it: look the key up, insert it on a miss.
pub trait Replayable {
    /// Returns whether `key` hit; on a miss, inserts it.
    fn access(&mut self, key: u64) -> bool;
}

impl Replayable for Cache<u64, ()> {
    fn access(&mut self, key: u64) -> bool {
        if self.get(&key).is_some() {
            return true;
        }
        self.insert(key, ());
        false
    }
}

impl Replayable for moka::sync::Cache<u64, ()> {
    fn access(&mut self, key: u64) -> bool {
        if self.get(&key).is_some() {
            return true;
        }
        self.insert(key, ());
        false
    }
}

impl Replayable for quick_cache::sync::Cache<u64, ()> {
    fn access(&mut self, key: u64) -> bool {
        if self.get(&key).is_some() {
            return true;
        }
        self.insert(key, ());
        false
    }
}

impl Replayable for lru::LruCache<u64, ()> {
    fn access(&mut self, key: u64) -> bool {
        if self.get(&key).is_some() {
            return true;
        }
        self.put(key, ());
        false
    }
}

/// Builds a cachefs cache as a user gets it, with `policy` and, if given, `shards`.
pub fn ours(policy: Policy, capacity: u64, shards: Option<usize>) -> Cache<u64, ()> {
    let mut b = Cache::builder().max_capacity(capacity).policy(policy);
    if let Some(s) = shards {
        b = b.shards(s);
    }
    b.build()
}

/// `moka::sync::Cache` with its defaults.
pub fn moka(capacity: u64) -> moka::sync::Cache<u64, ()> {
    moka::sync::Cache::new(capacity)
}

/// `quick_cache::sync::Cache` with its defaults.
pub fn quick_cache(capacity: u64) -> quick_cache::sync::Cache<u64, ()> {
    quick_cache::sync::Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX))
}

/// `lru::LruCache`, exact LRU.
pub fn lru_crate(capacity: u64) -> lru::LruCache<u64, ()> {
    let n = NonZeroUsize::new(usize::try_from(capacity).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN);
    lru::LruCache::new(n)
}
