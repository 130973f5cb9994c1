//! The caches we compare under concurrency, behind one trait: cachefs and its peers, built as their users
//! build them (defaults, one capacity), plus a map that never evicts as the ceiling.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// The value every throughput workload stores: 64 bytes behind an `Arc`, cheap to clone.
pub type Val = Arc<[u8; 64]>;

/// A concurrent cache of `u64 → Val`.
pub trait SharedCache: Send + Sync {
    /// Whether `key` is present (cloning its value, as a user's `get` would).
    fn get(&self, key: u64) -> bool;
    /// Stores `key → value`.
    fn insert(&self, key: u64, value: Val);
    /// Finishes deferred work (moka's pending maintenance), so sizes and memory are final.
    fn settle(&self) {}
}

impl SharedCache for cachefs::Cache<u64, Val> {
    fn get(&self, key: u64) -> bool {
        cachefs::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        cachefs::Cache::insert(self, key, value)
    }
    fn settle(&self) {
        // Hands departed entries (and replaced index tables) to the epoch and lets it free them.
        self.run_pending_tasks();
    }
}

impl SharedCache for quick_cache::sync::Cache<u64, Val> {
    fn get(&self, key: u64) -> bool {
        quick_cache::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        quick_cache::sync::Cache::insert(self, key, value)
    }
}

impl SharedCache for moka::sync::Cache<u64, Val> {
    fn get(&self, key: u64) -> bool {
        moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        moka::sync::Cache::insert(self, key, value)
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
}

impl SharedCache for mini_moka::sync::Cache<u64, Val> {
    fn get(&self, key: u64) -> bool {
        mini_moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        mini_moka::sync::Cache::insert(self, key, value)
    }
    fn settle(&self) {
        mini_moka::sync::ConcurrentCacheExt::sync(self);
    }
}

impl SharedCache for Mutex<lru::LruCache<u64, Val>> {
    fn get(&self, key: u64) -> bool {
        self.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned().is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        self.lock().unwrap_or_else(|e| e.into_inner()).put(key, value);
    }
}

impl SharedCache for dashmap::DashMap<u64, Val> {
    fn get(&self, key: u64) -> bool {
        dashmap::DashMap::get(self, &key).map(|r| r.value().clone()).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        dashmap::DashMap::insert(self, key, value);
    }
}

/// A cache we measure: its name and how to build one of a capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// cachefs with its defaults (W-TinyLFU).
    Cachefs,
    /// `quick_cache::sync::Cache`.
    QuickCache,
    /// `moka::sync::Cache`.
    Moka,
    /// `mini_moka::sync::Cache`.
    MiniMoka,
    /// `Mutex<lru::LruCache>`.
    MutexLru,
    /// `dashmap::DashMap`, which never evicts: the ceiling for reads.
    DashMap,
}

impl Peer {
    /// Every cache, ours first, the ceiling last.
    pub const ALL: [Peer; 6] =
        [Peer::Cachefs, Peer::QuickCache, Peer::Moka, Peer::MiniMoka, Peer::MutexLru, Peer::DashMap];

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Cachefs => "cachefs",
            Peer::QuickCache => "quick_cache",
            Peer::Moka => "moka",
            Peer::MiniMoka => "mini-moka",
            Peer::MutexLru => "Mutex<LruCache>",
            Peer::DashMap => "dashmap (no eviction)",
        }
    }

    /// Builds one with room for `capacity` entries.
    pub fn build(self, capacity: u64) -> Box<dyn SharedCache> {
        let entries = usize::try_from(capacity).unwrap_or(usize::MAX);
        match self {
            Peer::Cachefs => Box::new(cachefs::Cache::<u64, Val>::new(capacity)),
            Peer::QuickCache => Box::new(quick_cache::sync::Cache::<u64, Val>::new(entries)),
            Peer::Moka => Box::new(moka::sync::Cache::<u64, Val>::new(capacity)),
            Peer::MiniMoka => Box::new(mini_moka::sync::Cache::<u64, Val>::new(capacity)),
            Peer::MutexLru => {
                Box::new(Mutex::new(lru::LruCache::new(NonZeroUsize::new(entries).unwrap_or(NonZeroUsize::MIN))))
            }
            Peer::DashMap => Box::new(dashmap::DashMap::<u64, Val>::with_capacity(entries)),
        }
    }
}
