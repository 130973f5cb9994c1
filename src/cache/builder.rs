//! Configuration of a [`Cache`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::policy::Policy;
use super::removal::RemovalCause;
use super::{Cache, Listener, Weigher};
use crate::clock::{Clock, ManualClock};
use crate::latency::LatencyConfig;
use std::sync::Arc;

/// The default maximum weighted size when [`CacheBuilder::max_capacity`] is not called.
pub const DEFAULT_MAX_CAPACITY: u64 = 10_000;

/// Builds a [`Cache`]; start from [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use cachefs::{Cache, Policy};
///
/// let cache: Cache<String, Vec<u8>> = Cache::builder()
///     .max_capacity(64 * 1024 * 1024)
///     .weigher(|_k: &String, v: &Vec<u8>| v.len().try_into().unwrap_or(u32::MAX))
///     .policy(Policy::Lru)
///     .time_to_live(Duration::from_secs(300))
///     .build();
/// cache.insert("blob".to_string(), vec![0; 1024]);
/// assert_eq!(cache.weighted_size(), 1024);
/// ```
pub struct CacheBuilder<K, V, S = ahash::RandomState> {
    pub(crate) max_capacity: u64,
    pub(crate) shards: Option<usize>,
    pub(crate) hasher: S,
    pub(crate) policy: Policy,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tti: Option<Duration>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) listener: Option<Listener<K, V>>,
    pub(crate) clock: Clock,
    pub(crate) name: String,
    pub(crate) latency: Option<LatencyConfig>,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V, S: fmt::Debug> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("shards", &self.shards)
            .field("hasher", &self.hasher)
            .field("policy", &self.policy)
            .field("time_to_live", &self.ttl)
            .field("time_to_idle", &self.tti)
            .field("weigher", &self.weigher.is_some())
            .field("eviction_listener", &self.listener.is_some())
            .field("name", &self.name)
            .field("latency", &self.latency)
            .finish()
    }
}

impl<K, V> CacheBuilder<K, V> {
    pub(crate) fn new() -> Self {
        CacheBuilder {
            max_capacity: DEFAULT_MAX_CAPACITY,
            shards: None,
            hasher: default_hasher(),
            policy: Policy::default(),
            ttl: None,
            tti: None,
            weigher: None,
            listener: None,
            clock: Clock::system(),
            name: "default".to_string(),
            latency: None,
            _types: PhantomData,
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// The most the entries may weigh together (entries count 1 each without a [`weigher`](Self::weigher)).
    /// 0 makes a cache that stores nothing. Default [`DEFAULT_MAX_CAPACITY`].
    pub fn max_capacity(mut self, max: u64) -> Self {
        self.max_capacity = max;
        self
    }

    /// Gives each entry a weight (e.g. its size in bytes); a weight of 0 counts as 1. Called once per
    /// insert, outside any lock. An entry heavier than its shard's capacity
    /// (`max_capacity / shards`) is refused and counted in [`CacheStats::rejections`](crate::CacheStats).
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// The number of shards (independently locked parts), rounded up to a power of two. More shards,
    /// less contention; fewer shards, larger entries fit (each shard holds `max_capacity / shards`).
    /// Never more shards than `max_capacity` (so that no shard has capacity 0), nor than 65,536.
    /// Default: four per available core, but no more than one per 64 units of capacity, so that a small
    /// cache is not split into shards too small to be useful.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards.max(1));
        self
    }

    /// The hash function for keys. Default: ahash's `RandomState`, keyed per cache, which resists hash
    /// flooding. [`FnvBuildHasher`](crate::FnvBuildHasher) is faster on short keys but not flood-resistant.
    pub fn hasher<S2>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            shards: self.shards,
            hasher,
            policy: self.policy,
            ttl: self.ttl,
            tti: self.tti,
            weigher: self.weigher,
            listener: self.listener,
            clock: self.clock,
            name: self.name,
            latency: self.latency,
            _types: PhantomData,
        }
    }

    /// Which entries leave first when the cache is full. Default [`Policy::Hybrid`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Every entry expires this long after it was inserted or last replaced (unless inserted with its own
    /// TTL by [`Cache::insert_with_ttl`]).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Every entry expires this long after it was last read or written.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Called with each entry that leaves the cache and why, after the shard's lock is released: the
    /// listener may use the cache. It runs on the thread whose call caused the removal.
    ///
    /// The listener gets clones of the key and the value (hence `K: Clone`): a reader may still be
    /// reading the departing entry, which is dropped once no reader can (see the cache's docs).
    pub fn eviction_listener(mut self, listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static) -> Self
    where
        K: Clone,
    {
        self.listener = Some(Listener { call: Arc::new(listener), clone_key: K::clone });
        self
    }

    /// Reads time from `clock` instead of the system's monotonic clock (for tests of expiry).
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// The cache's name: the `cache` label of its metrics. Default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records latency percentiles of `get` (hits and misses apart), `insert` and loader calls
    /// (see [`Cache::metrics`]). Off by default; see [`LatencyConfig`] for the cost.
    pub fn latency(mut self, config: LatencyConfig) -> Self {
        self.latency = Some(config);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<K, V, S>
    where
        K: Eq,
    {
        Cache::from_builder(self)
    }
}

/// The default shard count: four per core, so that threads rarely meet on one lock.
pub(crate) fn default_shards() -> usize {
    if cfg!(loom) {
        return 2;
    }
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4).next_power_of_two()
}

/// A randomly seeded hasher (flood-resistant), except under loom, whose models must take the same path
/// on every iteration (index positions depend on the hash).
fn default_hasher() -> ahash::RandomState {
    #[cfg(loom)]
    {
        ahash::RandomState::with_seeds(1, 2, 3, 4)
    }
    #[cfg(not(loom))]
    {
        ahash::RandomState::new()
    }
}

/// Most shards a cache is split into, whatever is requested.
pub(crate) const MAX_SHARDS: usize = 1 << 16;

/// The default shard count for `capacity`: [`default_shards`], at most one per 64 units of capacity.
pub(crate) fn default_shards_for(capacity: u64) -> usize {
    let by_capacity = usize::try_from(capacity / 64).unwrap_or(usize::MAX).max(1);
    default_shards().min(1 << (usize::BITS - 1 - by_capacity.leading_zeros()))
}

/// Shard count actually used: `requested` rounded *up* to a power of two, then lowered to the largest
/// power of two not above the capacity if it exceeds it (each shard gets at least 1).
pub(crate) fn effective_shards(requested: usize, capacity: u64) -> usize {
    // Capped first, so that rounding up cannot overflow (a request above 2^16 shards is never useful).
    let requested = requested.clamp(1, MAX_SHARDS).next_power_of_two();
    if capacity >= requested as u64 {
        return requested;
    }
    // Largest power of two <= capacity (and 1 for capacity 0).
    let cap = capacity.max(1);
    1usize << (63 - cap.leading_zeros())
}

/// Splits `capacity` over `shards` so that the shares add up exactly.
pub(crate) fn shard_capacity(capacity: u64, shards: usize, index: usize) -> u64 {
    let n = shards as u64;
    capacity / n + u64::from((index as u64) < capacity % n)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn shard_counts_respect_capacity() {
        assert_eq!(effective_shards(8, 1_000), 8);
        assert_eq!(effective_shards(6, 1_000), 8);
        assert_eq!(effective_shards(8, 5), 4);
        assert_eq!(effective_shards(8, 1), 1);
        assert_eq!(effective_shards(8, 0), 1);
        assert_eq!(effective_shards(usize::MAX, u64::MAX), MAX_SHARDS, "huge requests are capped");
        assert_eq!(effective_shards(usize::MAX / 2 + 2, 10), 8);
        assert!(default_shards().is_power_of_two());
        assert_eq!(default_shards_for(10), 1);
        assert_eq!(default_shards_for(200), 2);
        assert_eq!(default_shards_for(1 << 30), default_shards());
    }

    #[test]
    fn shares_add_up() {
        for (cap, n) in [(10u64, 4usize), (7, 8), (1_000_003, 16), (0, 1)] {
            let total: u64 = (0..n).map(|i| shard_capacity(cap, n, i)).sum();
            assert_eq!(total, cap);
        }
    }
}
