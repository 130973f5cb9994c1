//! The engine: a sharded, concurrent, weighted cache.
//!
//! # Design
//!
//! A key's hash picks one of a power-of-two number of shards. Each shard is a single-threaded
//! [`Shard`](shard::Shard) (map, slab, policy, timer wheel) behind a reader-writer lock, plus two things
//! outside that lock: a lossy [read buffer](read_buffer) and a table of [loads in flight](loader).
//!
//! - **Reads** (`get`) take the shard's lock *shared*: readers of one shard never wait for each other.
//!   Recency is recorded in the read buffer rather than by reordering queues; the buffer is replayed
//!   into the policy under the exclusive lock by the next writer, or by the reader that fills it if the
//!   lock is free. A hit clones the value and allocates nothing.
//! - **Writes** take the shard's lock exclusively, replay buffered reads, reclaim expired entries, apply
//!   the change and evict until the shard fits its share of the capacity. Departing entries are collected
//!   and handed to the eviction listener, and dropped, only after the lock is released.
//! - **Statistics** are striped by thread (see [`stats`]) and never take a lock.
//!
//! What each lock protects: a shard's `RwLock` guards all of that shard's structure (map, slab, queues,
//! wheel, weight); an entry's `accessed_at` is the one field written under the shared lock (atomic).
//! The read buffer's atomics protect only its own cells. A flight table's mutex guards its table; each
//! flight's mutex guards its outcome.

mod batch;
mod builder;
mod entry;
mod expiry;
mod iter;
mod list;
mod loader;
mod observe;
pub(crate) mod policy;
mod read_buffer;
mod removal;
mod shard;
mod slab;
mod stats;

#[cfg(all(test, not(loom)))]
mod tests;

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

pub use builder::{CacheBuilder, DEFAULT_MAX_CAPACITY};
pub use iter::Iter;
pub use policy::Policy;
pub use removal::RemovalCause;
pub use stats::CacheStats;

use crate::clock::{Clock, NEVER, deadline_after};
use crate::latency::LatencyRecorder;
use crate::sync::{Arc, AtomicU64, Ordering::Relaxed, RwLock};
use entry::Entry;
use loader::{Flights, Joined};
use read_buffer::{Pushed, ReadBuffer};
use removal::{Removal, Removals};
use shard::{Inserted, Shard};
use stats::{Counter, Counters};

// Immutable configuration shared by clones: std's `Arc` (loom's cannot hold a `dyn Fn`, and these
// order nothing).
pub(crate) type Weigher<K, V> = std::sync::Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;
pub(crate) type Listener<K, V> = std::sync::Arc<dyn Fn(K, V, RemovalCause) + Send + Sync>;

/// What a lookup under the shared lock found.
enum Read<V> {
    /// The value, and the slot and generation to record the read against (if it is to be recorded).
    Hit(V, Option<(u32, u32)>),
    Miss,
    /// Present but expired: the caller should reclaim it (under the write lock).
    Expired,
}

/// A shard with its lock and what lives beside the lock. Padded so neighbouring shards' lock words do
/// not share a cache line.
#[repr(align(128))]
struct LockedShard<K, V> {
    shard: RwLock<Shard<K, V>>,
    reads: ReadBuffer,
    flights: Flights<K, V>,
    /// Gauges published under the write lock after every write, so `len()` and `stats()` take no lock.
    /// Relaxed: each is one self-contained number. Loom's atomics under loom (unlike the striped
    /// counters): publishing them outside the lock would let a stale count overwrite a newer one, and
    /// the model should see that.
    len: AtomicU64,
    weight: AtomicU64,
}

struct Inner<K, V, S> {
    shards: Box<[LockedShard<K, V>]>,
    shard_mask: u64,
    hasher: S,
    clock: Clock,
    ttl: Option<Duration>,
    /// True when a TTL or time-to-idle is configured: every write must consult the clock.
    expiring: bool,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    counters: Counters,
    policy: Policy,
    capacity: u64,
    name: String,
    latency: Option<LatencyRecorder>,
}

/// A concurrent cache from `K` to `V`, bounded by total weight, with LRU, LFU, TTL or W-TinyLFU eviction.
///
/// Cloning a `Cache` is cheap and gives another handle to the same cache. Values are returned as clones,
/// so store something cheap to clone: `Arc<T>`, `bytes::Bytes`, small `Copy` types.
///
/// ```
/// use cachefs::Cache;
///
/// let cache: Cache<String, u64> = Cache::builder().max_capacity(1_000).build();
/// cache.insert("answer".to_string(), 42);
/// assert_eq!(cache.get("answer"), Some(42)); // borrowed lookup: &str for String keys
/// let v = cache.get_with("other".to_string(), || 7); // loads once on a miss
/// assert_eq!(v, 7);
/// assert_eq!(cache.stats().hits, 1);
/// ```
///
/// # Concurrent calls on the same key
///
/// Operations on one key are linearizable: each takes effect atomically at some point during the call.
/// Concurrent `get_with` / `try_get_with` misses on one key run one loader; the others wait for it
/// and share its value. If it fails or panics, a waiter runs its own loader.
///
/// # Guarantees
///
/// - The weighted size never exceeds `max_capacity`; each shard holds at most its share.
/// - An expired entry is never returned, and expired entries are reclaimed before any live entry is
///   evicted for capacity.
/// - The eviction listener and the `Drop` of departing values run after the shard's lock is released.
/// - With one shard and [`Policy::Lru`], single-threaded use evicts in exact least-recently-used order.
///
/// # Panics
///
/// A panicking loader, weigher, listener, or key `Hash`/`Eq` propagates to the caller; the cache stays
/// usable and consistent (a loader's panic releases its waiters).
pub struct Cache<K, V, S = ahash::RandomState> {
    inner: Arc<Inner<K, V, S>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache { inner: self.inner.clone() }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("policy", &self.inner.policy)
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .field("entries", &self.len())
            .field("weighted_size", &self.weighted_size())
            .finish()
    }
}

impl<K, V> Cache<K, V> {
    /// A builder with the defaults: capacity [`DEFAULT_MAX_CAPACITY`], [`Policy::Hybrid`], ahash.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }

    /// A cache of at most `max_capacity` entries with every other setting at its default.
    pub fn new(max_capacity: u64) -> Self
    where
        K: Eq,
    {
        Self::builder().max_capacity(max_capacity).build()
    }
}

impl<K, V, S> Cache<K, V, S> {
    /// Entries held now (may include expired entries not yet reclaimed). Takes no lock.
    pub fn len(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.len.load(Relaxed)).sum()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sum of the weights of the entries held now. Takes no lock.
    pub fn weighted_size(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.weight.load(Relaxed)).sum()
    }

    /// The maximum weighted size.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// A snapshot of the counters and gauges. Takes no lock.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            entries: self.len(),
            weighted_size: self.weighted_size(),
            capacity: self.capacity(),
            ..CacheStats::default()
        };
        self.inner.counters.sum_into(&mut stats);
        stats
    }
}

impl<K: Eq, V, S> Cache<K, V, S> {
    fn from_builder(b: CacheBuilder<K, V, S>) -> Self {
        let shards = builder::effective_shards(
            b.shards.unwrap_or_else(|| builder::default_shards_for(b.max_capacity)),
            b.max_capacity,
        );
        let tti = b.tti.map(|d| u64::try_from(d.as_nanos()).unwrap_or(NEVER));
        let shards: Box<[LockedShard<K, V>]> = (0..shards)
            .map(|i| LockedShard {
                shard: RwLock::new(Shard::new(b.policy, builder::shard_capacity(b.max_capacity, shards, i), tti)),
                reads: ReadBuffer::new(),
                flights: Flights::new(),
                len: AtomicU64::new(0),
                weight: AtomicU64::new(0),
            })
            .collect();
        let stripes = builder::default_shards();
        Cache {
            inner: Arc::new(Inner {
                shard_mask: shards.len() as u64 - 1,
                shards,
                hasher: b.hasher,
                clock: b.clock,
                ttl: b.ttl,
                expiring: b.ttl.is_some() || b.tti.is_some(),
                weigher: b.weigher,
                listener: b.listener,
                counters: Counters::new(stripes),
                policy: b.policy,
                capacity: b.max_capacity,
                name: b.name,
                latency: b.latency.map(|c| LatencyRecorder::new(observe::OPS, c)),
            }),
        }
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    fn shard_index(&self, hash: u64) -> usize {
        // Bits 32.. pick the shard; hashbrown uses the low bits and the top seven within a shard.
        ((hash >> 32) & self.inner.shard_mask) as usize
    }

    fn shard(&self, hash: u64) -> &LockedShard<K, V> {
        &self.inner.shards[self.shard_index(hash)]
    }

    /// Weight that could be inserted under `key` now without evicting anything: the free room in the
    /// shard `key` belongs to (each shard holds its share of the capacity). A hint, for callers that
    /// would rather not displace anything (low-priority prefetching): another writer may take the room
    /// first. Takes no lock.
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).shards(1).build();
    /// cache.insert(1, 1);
    /// assert_eq!(cache.room_for(&2), 9);
    /// ```
    pub fn room_for<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        let i = self.shard_index(self.hash(key));
        let capacity = builder::shard_capacity(self.inner.capacity, self.inner.shards.len(), i);
        capacity.saturating_sub(self.inner.shards[i].weight.load(Relaxed))
    }

    /// The value for `key`, if present and not expired.
    ///
    /// Takes the shard's lock shared; allocates nothing.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let started = self.inner.latency.as_ref().and_then(LatencyRecorder::start);
        let value = self.lookup(self.hash(key), key);
        let counter = if value.is_some() { Counter::Hit } else { Counter::Miss };
        self.inner.counters.add(counter, 1);
        if let Some(started) = started {
            self.record_latency(if value.is_some() { observe::GET_HIT } else { observe::GET_MISS }, started);
        }
        value
    }

    /// True if `key` is present and not expired. Does not count as a read.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash).shard.read();
        shard
            .find(hash, key)
            .is_some_and(|idx| !shard.may_expire(idx) || !shard.is_expired(idx, self.inner.clock.now()))
    }

    /// The lookup behind `get`, without counting. An expired entry found on the way is reclaimed (which
    /// runs the listener), so this must not be called under any lock of ours: see [`Cache::peek`].
    fn lookup<Q>(&self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (value, expired) = self.peek(hash, key);
        if expired {
            self.write(self.shard(hash), true, |_, _, _| ());
        }
        value
    }

    /// The live value for `key`, recording the read, and whether an expired entry was found instead.
    /// Runs no user code but `Eq` and `Clone`: it reclaims nothing and drops nothing, so callers holding
    /// a lock (single flight's re-check) may use it.
    fn peek<Q>(&self, hash: u64, key: &Q) -> (Option<V>, bool)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let locked = self.shard(hash);
        let read = self.read_entry(&locked.shard.read(), hash, key);
        match read {
            Read::Hit(value, record) => {
                if let Some((idx, generation)) = record {
                    self.record_read(locked, idx, generation);
                }
                (Some(value), false)
            }
            Read::Miss => (None, false),
            Read::Expired => (None, true),
        }
    }

    /// Looks `key` up in `shard`, whose shared lock the caller holds.
    fn read_entry<Q>(&self, shard: &Shard<K, V>, hash: u64, key: &Q) -> Read<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(idx) = shard.find(hash, key) else { return Read::Miss };
        if shard.may_expire(idx) {
            let now = self.inner.clock.now();
            if shard.is_expired(idx, now) {
                return Read::Expired;
            }
            shard.note_access(idx, now);
        }
        let entry = shard.entry(idx);
        let record = shard.note_read_of(entry);
        Read::Hit(entry.value.clone(), record.then(|| (idx, shard.generation(idx))))
    }

    /// Records a read of slot `idx` for the policy, with no lock held.
    fn record_read(&self, locked: &LockedShard<K, V>, idx: u32, generation: u32) {
        match locked.reads.push(idx, generation) {
            Pushed::Recorded => {}
            pushed => {
                // Full: replay the buffer now if nobody holds the lock; otherwise the next writer will.
                if let Some(mut shard) = locked.shard.try_write() {
                    locked.reads.drain(|i, g| shard.record_read(i, g));
                    if pushed == Pushed::Overflow {
                        shard.record_read(idx, generation);
                    }
                }
            }
        }
    }

    /// Runs `f` on the shard under its exclusive lock, after replaying buffered reads and, when `now` is
    /// needed, reclaiming expired entries; then publishes gauges, releases the lock and hands out
    /// whatever left the shard.
    fn write<R>(
        &self,
        locked: &LockedShard<K, V>,
        needs_clock: bool,
        f: impl FnOnce(&mut Shard<K, V>, Option<u64>, &mut Removals<K, V>) -> R,
    ) -> R {
        let (result, out) = self.write_collecting(locked, needs_clock, f);
        self.notify(out);
        result
    }

    /// [`write`](Self::write), handing back the departures for the caller to announce (with
    /// [`notify`](Self::notify)) when it is ready.
    fn write_collecting<R>(
        &self,
        locked: &LockedShard<K, V>,
        needs_clock: bool,
        f: impl FnOnce(&mut Shard<K, V>, Option<u64>, &mut Removals<K, V>) -> R,
    ) -> (R, Removals<K, V>) {
        let mut out = Removals::new();
        let result = {
            let mut shard = locked.shard.write();
            locked.reads.drain(|i, g| shard.record_read(i, g));
            let now = (needs_clock || self.inner.expiring || shard.has_timers()).then(|| self.inner.clock.now());
            if let Some(now) = now {
                shard.expire(now, &mut out);
            }
            let result = f(&mut shard, now, &mut out);
            if shard.observation_due() {
                let (hits, misses) = self.inner.counters.hits_and_misses();
                // Caffeine's sample: ten accesses per entry the cache can hold (at most 2^20 entries' worth).
                let sample = 10 * self.len().max(shard.len() as u64 * self.inner.shards.len() as u64).min(1 << 20);
                shard.observe(hits, misses, sample);
            }
            locked.len.store(shard.len() as u64, Relaxed);
            locked.weight.store(shard.weight(), Relaxed);
            result
        };
        (result, out)
    }

    /// Counts and announces departures; runs with no lock held.
    fn notify(&self, removals: impl IntoIterator<Item = Removal<K, V>>) {
        let Some(listener) = &self.inner.listener else {
            // No listener: count by cause, one counter update per cause, and drop the entries here.
            let mut by_cause = [0u64; RemovalCause::ALL.len()];
            for r in removals {
                by_cause[r.cause.index()] += 1;
            }
            for (cause, n) in RemovalCause::ALL.into_iter().zip(by_cause) {
                if n > 0 {
                    self.inner.counters.removed(cause, n);
                }
            }
            return;
        };
        for r in removals {
            // Counted before the listener runs, so that a listener reading the stats sees its own removal.
            self.inner.counters.removed(r.cause, 1);
            listener(r.key, r.value, r.cause);
        }
    }

    fn weigh(&self, key: &K, value: &V) -> u32 {
        self.inner.weigher.as_ref().map_or(1, |w| w(key, value).max(1))
    }

    /// Stores `value` under `key`, replacing any previous value (the listener sees the old one as
    /// [`RemovalCause::Replaced`]). The entry expires after the cache's TTL, if one is set.
    pub fn insert(&self, key: K, value: V) {
        self.insert_inner(key, value, self.inner.ttl, false);
    }

    /// Like [`insert`](Self::insert), but this entry expires `ttl` from now, whatever the cache's TTL.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_inner(key, value, Some(ttl), true);
    }

    fn insert_inner(&self, key: K, value: V, ttl: Option<Duration>, needs_clock: bool) {
        let started = self.inner.latency.as_ref().and_then(LatencyRecorder::start);
        let weight = self.weigh(&key, &value);
        let hash = self.hash(&key);
        let locked = self.shard(hash);
        let rejected = self.write(locked, needs_clock, |shard, now, out| {
            let expires_at = match (ttl, now) {
                (Some(ttl), Some(now)) => deadline_after(now, ttl),
                _ => NEVER,
            };
            match shard.insert(Entry::new(key, value, hash, weight), expires_at, now, out) {
                Inserted::New => {
                    self.inner.counters.add(Counter::Insert, 1);
                    None
                }
                Inserted::Updated => {
                    self.inner.counters.add(Counter::Update, 1);
                    None
                }
                Inserted::Rejected(k, v) => {
                    self.inner.counters.add(Counter::Rejection, 1);
                    Some((k, v))
                }
            }
        });
        if let Some(started) = started {
            self.record_latency(observe::INSERT, started);
        }
        if let (Some((k, v)), Some(listener)) = (rejected, &self.inner.listener) {
            listener(k, v, RemovalCause::Capacity);
        }
    }

    /// Removes `key` and returns its value, if present and not expired.
    /// The listener sees it as [`RemovalCause::Removed`] (with a clone of the value).
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let removed =
            self.write(self.shard(hash), false, |shard, _, _| shard.remove(hash, key, RemovalCause::Removed))?;
        let value = removed.value.clone();
        self.notify(Some(removed));
        Some(value)
    }

    /// Drops `key` if present ([`RemovalCause::Invalidated`]); returns whether it was.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.write(self.shard(hash), false, |shard, _, out| {
            shard.remove(hash, key, RemovalCause::Invalidated).map(|r| out.push(r)).is_some()
        })
    }

    /// Drops every entry for which `predicate` holds, shard by shard; returns how many.
    /// The predicate runs under each shard's lock: it must not call into this cache.
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) -> u64 {
        self.invalidate_where(|k, v| predicate(k, v))
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        self.invalidate_where(|_, _| true);
    }

    fn invalidate_where(&self, mut predicate: impl FnMut(&K, &V) -> bool) -> u64 {
        let mut total = 0;
        for locked in self.inner.shards.iter() {
            let mut gone = Vec::new();
            self.write(locked, false, |shard, _, _| {
                shard.remove_if(&mut predicate, RemovalCause::Invalidated, &mut gone)
            });
            total += gone.len() as u64;
            self.notify(gone);
        }
        total
    }

    /// Reclaims expired entries and replays buffered reads in every shard now, rather than on the next
    /// write to each. Never needed for correctness.
    pub fn run_pending_tasks(&self) {
        for locked in self.inner.shards.iter() {
            self.write(locked, false, |_, _, _| ());
        }
    }

    /// The value for `key`, loading it with `init` on a miss and storing it.
    ///
    /// Concurrent misses on one key run `init` once; the other callers wait and get its value. If `init`
    /// panics, the panic propagates to this caller, and a waiting caller runs its own `init`. If the key
    /// is inserted while `init` runs, that value is kept and returned (the load is discarded).
    /// `init` must not call `get_with` on the same key (it would wait for itself); the eviction listener
    /// may, as it runs after the waiters are released.
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// let v = cache.get_with(1, || "loaded".to_string());
    /// assert_eq!(v, "loaded");
    /// assert_eq!(cache.get_with(1, || unreachable!()), "loaded");
    /// ```
    pub fn get_with(&self, key: K, init: impl FnOnce() -> V) -> V
    where
        K: Clone,
    {
        match self.try_get_with(key, || Ok::<V, Infallible>(init())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`get_with`](Self::get_with) for a loader that can fail. An error goes to this caller only
    /// and stores nothing; callers that were waiting on this load then run their own loaders.
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::new(100);
    /// let err = cache.try_get_with(1, || Err::<u32, _>("backend down"));
    /// assert_eq!(err, Err("backend down"));
    /// assert_eq!(cache.try_get_with(1, || Ok::<_, &str>(5)), Ok(5));
    /// ```
    pub fn try_get_with<E>(&self, key: K, init: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        K: Clone,
    {
        let hash = self.hash(&key);
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let locked = self.shard(hash);
        loop {
            // The re-check runs under the flight table's lock: it must not reclaim (the listener would run
            // under that lock), so an expired entry counts as absent and is replaced by this load.
            match locked.flights.join(hash, &key, &self.inner.counters, || self.peek(hash, &key).0) {
                Joined::Found(v) => return Ok(v),
                Joined::Follower(flight) => {
                    if let Some(v) = flight.wait() {
                        return Ok(v);
                    }
                    // The leader failed: start over, perhaps as the leader.
                }
                Joined::Leader(leader) => {
                    let started = self.inner.latency.as_ref().map(|_| std::time::Instant::now());
                    let loaded = init();
                    if let Some(started) = started {
                        self.record_latency(observe::LOAD, started);
                    }
                    return match loaded {
                        Ok(v) => {
                            // Stored only if the key is still absent: a value inserted while this one
                            // loaded is newer, and is what this call returns (it takes effect after it).
                            // The waiters are released before the departures are announced, so that a
                            // listener may load this very key again.
                            let (v, departures, rejected) = self.store_loaded(locked, hash, key, v);
                            leader.settle(Some(v.clone()));
                            self.notify(departures);
                            if let (Some((k, r)), Some(listener)) = (rejected, &self.inner.listener) {
                                listener(k, r, RemovalCause::Capacity);
                            }
                            Ok(v)
                        }
                        Err(e) => {
                            leader.settle(None);
                            Err(e)
                        }
                    };
                }
            }
        }
    }

    /// Stores a loaded `value` under `key` unless a live value is there already (stored while it loaded).
    /// Returns the value the cache now answers with, the departures to announce, and the entry handed
    /// back if it was refused (too heavy).
    #[allow(clippy::type_complexity)]
    fn store_loaded(
        &self,
        locked: &LockedShard<K, V>,
        hash: u64,
        key: K,
        value: V,
    ) -> (V, Removals<K, V>, Option<(K, V)>) {
        let started = self.inner.latency.as_ref().and_then(LatencyRecorder::start);
        let weight = self.weigh(&key, &value);
        let ttl = self.inner.ttl;
        let ((v, rejected), out) = self.write_collecting(locked, false, |shard, now, out| {
            // `write` reclaimed what had expired by `now`: whatever is found is live.
            if let Some(idx) = shard.find(hash, &key) {
                return (shard.entry(idx).value.clone(), None);
            }
            let expires_at = match (ttl, now) {
                (Some(ttl), Some(now)) => deadline_after(now, ttl),
                _ => NEVER,
            };
            match shard.insert(Entry::new(key, value.clone(), hash, weight), expires_at, now, out) {
                Inserted::Rejected(k, v) => {
                    self.inner.counters.add(Counter::Rejection, 1);
                    (value, Some((k, v)))
                }
                _ => {
                    self.inner.counters.add(Counter::Insert, 1);
                    (value, None)
                }
            }
        });
        if let Some(started) = started {
            self.record_latency(observe::INSERT, started);
        }
        (v, out, rejected)
    }

    /// Iterates over clones of the live entries, one shard at a time: weakly consistent, each shard's
    /// part is a snapshot taken under its shared lock.
    pub fn iter(&self) -> Iter<'_, K, V, S>
    where
        K: Clone,
    {
        Iter::new(self)
    }

    /// Clones of one shard's live entries (for [`Iter`]).
    fn shard_snapshot(&self, index: usize) -> Option<Vec<(K, V)>>
    where
        K: Clone,
    {
        let locked = self.inner.shards.get(index)?;
        let shard = locked.shard.read();
        let now = (self.inner.expiring || shard.has_timers()).then(|| self.inner.clock.now());
        Some(shard.snapshot(now))
    }

    /// Checks every shard's invariants; panics on the first broken one. Built for tests and loom only.
    #[cfg(any(test, loom))]
    #[doc(hidden)]
    pub fn validate(&self) {
        let mut total = 0;
        for locked in self.inner.shards.iter() {
            let shard = locked.shard.read();
            shard.validate();
            total += shard.capacity();
        }
        assert_eq!(total, self.inner.capacity, "shard capacities add up to the cache's");
    }
}
