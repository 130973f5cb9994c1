//! The engine: a sharded, concurrent, weighted cache whose reads take no lock.
//!
//! # Design
//!
//! A key's hash picks one of a power-of-two number of shards. Each shard has a writer side, a
//! single-threaded [`Shard`](shard::Shard) (policy, timer wheel, the slab's free list and counts) behind a
//! mutex, and a [`Store`](slab::Store) that readers search without any lock: a lock-free hash index
//! over slots that never move. Beside them sit a lossy [read buffer](read_buffer) and a table of
//! [loads in flight](loader).
//!
//! - **Reads** (`get`) pin an epoch guard (`crossbeam-epoch`: a store to a per-thread word), search the
//!   index, and clone the value. They write no shared cache line on a hit: W-TinyLFU takes the read as
//!   a mark on the entry (stored only if not already set); the exact policies (LRU, LFU, TTL) record it in
//!   the read buffer, which the next writer replays. A hit allocates nothing.
//! - **Writes** pin a guard, lock the shard, replay buffered reads, reclaim expired entries, apply the
//!   change and evict until the shard fits its share of the capacity. A new value goes into a new slot
//!   and the index switches to it; a departing entry's slot is *retired*, never overwritten in place, and
//!   handed to the epoch, which drops the entry once no reader can still hold it (see `slab.rs`).
//!   Departures are handed to the eviction listener (clones, read from the retired slots under the
//!   guard) after the lock is released.
//! - **Statistics** are striped by thread (see [`stats`]) and never take a lock.
//!
//! What protects what: a shard's mutex guards its writer side (and so every slot's bookkeeping); the
//! index's cells, the slots' marks, generations and timers are atomics (orderings argued where they are
//! used); the epoch protects every slot and index table a reader may still hold. The read buffer's
//! atomics protect only its own cells. A flight table's mutex guards its table; each flight's mutex
//! guards its outcome.
//!
//! User code (loaders, weighers, listeners, `Clone` and `Drop` of keys and values) never runs under a lock of
//! ours: every guard is pinned before a lock is taken (the epoch runs deferred drops only in an
//! outermost pin), values are cloned out of the index without a lock (`iter` too: it clones after unlocking), and departures are dealt with
//! after unlocking. Two documented exceptions: key `Hash`/`Eq` run under the writer's lock (as they must
//! to find the key), and `invalidate_if`'s predicate runs under each shard's lock.

mod batch;
mod builder;
mod config;
mod entry;
mod expiry;
mod hot;
mod index;
mod iter;
mod list;
mod load_async;
mod loader;
mod observe;
pub(crate) mod policy;
mod read_buffer;
mod removal;
mod segments;
mod shard;
mod slab;
#[cfg(feature = "snapshot")]
pub mod snapshot;
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

use crossbeam_epoch::Guard;

/// How long [`Cache::run_pending_tasks`] waits at most for the epoch to drop what its cache let go.
const PENDING_TASKS_PATIENCE: Duration = Duration::from_millis(100);
use smallvec::SmallVec;

use crate::clock::{Clock, NEVER, expiry};
use crate::latency::LatencyRecorder;
use crate::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering::Relaxed};
use config::{Config, LiveConfig};
use loader::{Flights, Joined};
use policy::Adaptation;
use read_buffer::{Pushed, ReadBuffer};
use removal::Removals;
use shard::{Incoming, Inserted, Shard};
use slab::Store;
use stats::{Counter, Counters};

// Immutable configuration shared by clones: std's `Arc` (loom's cannot hold a `dyn Fn`, and these
// order nothing).
pub(crate) type Weigher<K, V> = std::sync::Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// The eviction listener, and how to clone a key for it (set where `K: Clone` is known).
pub(crate) struct Listener<K, V> {
    pub(crate) call: std::sync::Arc<dyn Fn(K, V, RemovalCause) + Send + Sync>,
    pub(crate) clone_key: fn(&K) -> K,
}

impl<K, V> Clone for Listener<K, V> {
    fn clone(&self) -> Self {
        Listener { call: self.call.clone(), clone_key: self.clone_key }
    }
}

/// What a lock-free lookup found.
enum Read<V> {
    /// The value, and the slot and generation to record the read against (if it is to be recorded).
    Hit(V, Option<(u32, u32)>),
    Miss,
    /// Present but expired: the caller should reclaim it (under the writer's lock).
    Expired,
}

/// A shard: the store readers search, the writer side behind its mutex, and what lives beside them.
/// Padded so that neighbouring shards' hot words do not share a cache line.
#[repr(align(128))]
struct LockedShard<K, V> {
    /// Read by every `get`; written by nobody after construction (the `Arc`'s count is touched only when
    /// the shard's writer defers a reclamation).
    store: std::sync::Arc<Store<K, V>>,
    writer: Mutex<Shard<K, V>>,
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
    /// Capacity, TTL and time-to-idle: changeable while the cache runs.
    config: LiveConfig,
    /// W-TinyLFU: reads are marks on the entry, not records in the read buffer.
    marks_reads: bool,
    /// W-TinyLFU: the miniature simulation that chooses its window (readers record reads of sampled
    /// keys in the read buffer for it). None under loom, whose models do not cover it.
    adaptation: Option<Adaptation>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    counters: Counters,
    policy: Policy,
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
///   A departing value is dropped once no reader can still be reading it (a reader finds entries without
///   a lock): soon, on whichever thread next lets the epoch collect (any thread using a cache); before
///   [`run_pending_tasks`](Self::run_pending_tasks), `invalidate_all`, `invalidate_if` and
///   `invalidate_many` return, unless another thread is inside a cache call just then; or when the cache
///   itself is dropped.
/// - With one shard and [`Policy::Lru`], single-threaded use evicts in exact least-recently-used order.
/// - `get`, `contains_key` and `get_many` take no lock and, on a hit, write no cache line shared with
///   another thread (W-TinyLFU marks an entry only if it is not marked yet).
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
            .field("capacity", &self.capacity())
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
        self.inner.config.load().capacity
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
            .map(|i| {
                let shard = Shard::new(b.policy, builder::shard_capacity(b.max_capacity, shards, i), tti);
                LockedShard {
                    store: std::sync::Arc::clone(shard.store()),
                    writer: Mutex::new(shard),
                    reads: ReadBuffer::new(),
                    flights: Flights::new(),
                    len: AtomicU64::new(0),
                    weight: AtomicU64::new(0),
                }
            })
            .collect();
        let stripes = builder::default_shards();
        let shard_count = shards.len();
        Cache {
            inner: Arc::new(Inner {
                shard_mask: shards.len() as u64 - 1,
                shards,
                hasher: b.hasher,
                clock: b.clock,
                config: LiveConfig::new(Config { capacity: b.max_capacity, ttl: b.ttl, tti }),
                marks_reads: b.policy == Policy::Hybrid,
                adaptation: (b.policy == Policy::Hybrid && !cfg!(loom))
                    .then(|| Adaptation::new(b.max_capacity, shard_count, b.weigher.is_some())),
                weigher: b.weigher,
                listener: b.listener,
                counters: Counters::new(stripes),
                policy: b.policy,
                name: b.name,
                latency: b.latency.map(|c| LatencyRecorder::new(observe::OPS, c)),
            }),
        }
    }
}

impl<K, V> LockedShard<K, V> {
    /// The writer's lock. `_pinned` proves an epoch guard is held, so that no deferred drop (user code)
    /// can run under the lock: the epoch collects only in a thread's outermost pin.
    fn lock(&self, _pinned: &Guard) -> MutexGuard<'_, Shard<K, V>> {
        self.writer.lock()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    fn shard_index(&self, hash: u64) -> usize {
        // Bits 32.. pick the shard; the shard's index uses the low bits for positions and the top half
        // as a tag.
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
        let capacity = builder::shard_capacity(self.capacity(), self.inner.shards.len(), i);
        capacity.saturating_sub(self.inner.shards[i].weight.load(Relaxed))
    }

    /// The value for `key`, if present and not expired.
    ///
    /// Takes no lock and allocates nothing; the value is cloned. (The `crossbeam-epoch` guard it pins may,
    /// about once in 100,000 hits while other threads write, let the epoch collect, and its own
    /// bookkeeping then allocates; nothing of cachefs's does.)
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let started = self.inner.latency.as_ref().and_then(LatencyRecorder::start);
        let hash = self.hash(key);
        let guard = crossbeam_epoch::pin();
        let value = self.lookup(hash, key, &guard);
        drop(guard);
        let counter = if value.is_some() { Counter::Hit } else { Counter::Miss };
        self.inner.counters.add(counter, 1);
        if let Some(started) = started {
            self.record_latency(if value.is_some() { observe::GET_HIT } else { observe::GET_MISS }, started);
        }
        value
    }

    /// True if `key` is present and not expired. Does not count as a read. Takes no lock.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let guard = crossbeam_epoch::pin();
        let store = &self.shard(hash).store;
        store.find(hash, key, &guard).is_some_and(|found| match self.deadline_check(store, found.idx) {
            Some((timer, tti)) => !timer.is_expired(tti, self.inner.clock.now()),
            None => true,
        })
    }

    /// Slot `idx`'s timer, if its entry may expire (with the time-to-idle in force).
    #[inline]
    fn deadline_check<'g>(&self, store: &'g Store<K, V>, idx: u32) -> Option<(&'g entry::Timer, Option<u64>)> {
        let timer = store.timer(idx)?;
        let tti = self.inner.config.load().tti;
        (tti.is_some() || timer.expires_at() != NEVER).then_some((timer, tti))
    }

    /// The lookup behind `get`, without counting. An expired entry found on the way is reclaimed (which
    /// runs the listener), so this must not be called under any lock of ours: see [`Cache::peek`].
    fn lookup<Q>(&self, hash: u64, key: &Q, guard: &Guard) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let (value, expired) = self.peek(hash, key, guard);
        if expired {
            self.write(self.shard(hash), true, |_, _, _, _| ());
        }
        value
    }

    /// The live value for `key`, recording the read, and whether an expired entry was found instead.
    /// Runs no user code but `Eq` and `Clone`: it reclaims nothing and drops nothing, so callers holding
    /// a lock (single flight's re-check) may use it.
    fn peek<Q>(&self, hash: u64, key: &Q, guard: &Guard) -> (Option<V>, bool)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let locked = self.shard(hash);
        match self.read_entry(&locked.store, hash, key, guard) {
            Read::Hit(value, record) => {
                if let Some((idx, generation)) = record {
                    self.record_read(locked, idx, generation, guard);
                }
                (Some(value), false)
            }
            Read::Miss => (None, false),
            Read::Expired => (None, true),
        }
    }

    /// Looks `key` up in `store`, without a lock.
    #[inline]
    fn read_entry<Q>(&self, store: &Store<K, V>, hash: u64, key: &Q, guard: &Guard) -> Read<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(found) = store.find(hash, key, guard) else { return Read::Miss };
        if let Some((timer, tti)) = self.deadline_check(store, found.idx) {
            let now = self.inner.clock.now();
            if timer.is_expired(tti, now) {
                return Read::Expired;
            }
            timer.touch(now);
        }
        let record = if self.inner.marks_reads {
            // Stored only if not already set, so hot entries cost readers no write at all.
            let mark = &found.slot.mark;
            if mark.load(Relaxed) != policy::READ {
                mark.store(policy::READ, Relaxed);
            }
            // A sampled key's read is recorded too: the miniature simulation needs every access of it.
            let sampled = self.inner.adaptation.as_ref().is_some_and(|a| a.samples(hash));
            sampled.then(|| (found.idx, found.slot.generation()))
        } else {
            Some((found.idx, found.slot.generation()))
        };
        Read::Hit(found.entry.value.clone(), record)
    }

    /// Records a read of slot `idx` for the policy. Takes the writer's lock only if the buffer is full
    /// and the lock is free.
    fn record_read(&self, locked: &LockedShard<K, V>, idx: u32, generation: u32, _pinned: &Guard) {
        match locked.reads.push(idx, generation) {
            Pushed::Recorded => {}
            pushed => {
                // Full: replay the buffer now if nobody holds the lock; otherwise the next writer will.
                // (The sampled reads it holds wait in the shard for the next write to hand them to the
                // miniature simulation: a reader does no simulation work under the shard's lock.)
                if let Some(mut shard) = locked.writer.try_lock() {
                    locked.reads.drain(|i, g| shard.record_read(i, g));
                    if pushed == Pushed::Overflow {
                        shard.record_read(idx, generation);
                    }
                }
            }
        }
    }

    /// Runs `f` on the shard under its writer's lock (with a guard pinned first), after replaying
    /// buffered reads and, when `now` is needed, reclaiming expired entries; then publishes gauges,
    /// releases the lock and hands out whatever left the shard.
    fn write<R>(
        &self,
        locked: &LockedShard<K, V>,
        needs_clock: bool,
        f: impl FnOnce(&mut Shard<K, V>, Option<u64>, &mut Removals, &Guard) -> R,
    ) -> R {
        self.write_then(locked, needs_clock, false, f)
    }

    /// [`write`](Self::write), handing retired slots to the epoch at once with `flush` (explicit removals,
    /// so that removed values are dropped promptly).
    fn write_then<R>(
        &self,
        locked: &LockedShard<K, V>,
        needs_clock: bool,
        flush: bool,
        f: impl FnOnce(&mut Shard<K, V>, Option<u64>, &mut Removals, &Guard) -> R,
    ) -> R {
        let guard = crossbeam_epoch::pin();
        let (result, out, heavy) = self.write_with(locked, needs_clock, flush, &guard, f);
        self.announce(&locked.store, &out, heavy, guard);
        result
    }

    /// Counts and announces departures, with no lock held: the listener gets clones made under `guard`
    /// (the guard their write ran under, so the slots are still readable), and runs after `guard` is
    /// dropped, so that a slow listener holds back no thread's reclamation. If the departures were
    /// heavy, lets the epoch collect first.
    fn announce(&self, store: &Store<K, V>, out: &Removals, heavy: bool, guard: Guard) {
        let Some(listener) = &self.inner.listener else {
            // No listener: count by cause, one counter update per run of equal causes (a write's
            // departures are nearly always one cause).
            for run in out.chunk_by(|a, b| a.cause == b.cause) {
                self.inner.counters.removed(run[0].cause, run.len() as u64);
            }
            Self::flush_if_heavy(&guard, heavy);
            return;
        };
        let departed: SmallVec<[(K, V, RemovalCause); 2]> = out
            .iter()
            .map(|r| {
                // SAFETY: the slot was retired under `guard`, which is still pinned, so its entry has not
                // been handed back or dropped.
                let entry = unsafe { store.slot_entry(r.idx) };
                ((listener.clone_key)(&entry.key), entry.value.clone(), r.cause)
            })
            .collect();
        Self::flush_if_heavy(&guard, heavy);
        drop(guard);
        for (key, value, cause) in departed {
            // Counted before the listener runs, so that a listener reading the stats sees its own removal.
            self.inner.counters.removed(cause, 1);
            (listener.call)(key, value, cause);
        }
    }

    /// Large departed values: moves them to the epoch's global queue and collects now, with no lock held
    /// (collecting runs deferred drops), rather than at this thread's next 128th pin.
    fn flush_if_heavy(guard: &Guard, heavy: bool) {
        if heavy {
            guard.flush();
        }
    }

    /// The body of [`write_then`](Self::write_then), under the caller's `guard` (pinned before any lock),
    /// handing back the departures, still readable under `guard`, for the caller to announce.
    fn write_with<R>(
        &self,
        locked: &LockedShard<K, V>,
        needs_clock: bool,
        flush: bool,
        guard: &Guard,
        f: impl FnOnce(&mut Shard<K, V>, Option<u64>, &mut Removals, &Guard) -> R,
    ) -> (R, Removals, bool) {
        let mut out = Removals::new();
        let heavy;
        let result = {
            let mut shard = locked.lock(guard);
            locked.reads.drain(|i, g| shard.record_read(i, g));
            let expiring = self.inner.config.expiring();
            let now = (needs_clock || expiring || shard.has_timers()).then(|| self.inner.clock.now());
            if let Some(now) = now {
                shard.expire(now, &mut out, guard);
            }
            let result = f(&mut shard, now, &mut out, guard);
            self.adapt(&mut shard);
            heavy = shard.publish_retired(guard, flush);
            locked.len.store(shard.len() as u64, Relaxed);
            locked.weight.store(shard.weight(), Relaxed);
            result
        };
        (result, out, heavy)
    }

    /// A turn of the policy's adaptation, after a write: the shard hands its sampled accesses to the
    /// miniature simulation when it has enough, and a weighted cache now and then re-estimates how many
    /// entries it holds, which sizes the sample.
    fn adapt(&self, shard: &mut Shard<K, V>) {
        if let Some(adaptation) = &self.inner.adaptation
            && shard.adapt(adaptation)
        {
            adaptation.resize(self.entries_at_capacity());
        }
    }

    /// How many entries the capacity holds at the mean weight of those held now (the capacity itself
    /// while the cache is empty).
    fn entries_at_capacity(&self) -> u64 {
        let capacity = self.inner.config.load().capacity;
        let (len, weight) = (self.len(), self.weighted_size());
        if weight == 0 { capacity } else { (u128::from(capacity) * u128::from(len) / u128::from(weight)) as u64 }
    }

    fn weigh(&self, key: &K, value: &V) -> u32 {
        self.inner.weigher.as_ref().map_or(1, |w| w(key, value).max(1))
    }

    /// Stores `value` under `key`, replacing any previous value (the listener sees the old one as
    /// [`RemovalCause::Replaced`]). The entry expires after the cache's TTL, if one is set.
    pub fn insert(&self, key: K, value: V) {
        let ttl = if self.inner.config.expiring() { self.inner.config.load().ttl } else { None };
        self.insert_inner(key, value, ttl, false);
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
        let outcome = self.write(locked, needs_clock, |shard, now, out, guard| {
            shard.insert(Incoming { key, value, hash, weight, expires_at: expiry(ttl, now) }, now, out, guard)
        });
        // Handed back by the shard so that their `Drop` runs here, outside the lock.
        match outcome {
            Inserted::New => self.inner.counters.add(Counter::Insert, 1),
            Inserted::Updated(_duplicate_key) => self.inner.counters.add(Counter::Update, 1),
            Inserted::Rejected(k, v) => {
                self.inner.counters.add(Counter::Rejection, 1);
                if let Some(listener) = &self.inner.listener {
                    (listener.call)(k, v, RemovalCause::Capacity);
                }
            }
        }
        if let Some(started) = started {
            self.record_latency(observe::INSERT, started);
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
        let locked = self.shard(hash);
        let guard = crossbeam_epoch::pin();
        let removed = self.write_then(locked, false, true, |shard, _, out, guard| {
            let r = shard.remove(hash, key, RemovalCause::Removed, guard)?;
            out.push(r);
            Some(r.idx)
        })?;
        // SAFETY: retired during the write above, under a guard pinned inside `write_then` after `guard`
        // here was pinned: the epoch cannot hand the slot back while `guard` is held.
        let value = unsafe { locked.store.slot_entry(removed) }.value.clone();
        drop(guard);
        Some(value)
    }

    /// Drops `key` if present ([`RemovalCause::Invalidated`]); returns whether it was.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.write_then(self.shard(hash), false, true, |shard, _, out, guard| {
            shard.remove(hash, key, RemovalCause::Invalidated, guard).map(|r| out.push(r)).is_some()
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
            total += self.write_then(locked, false, true, |shard, _, out, guard| {
                let before = out.len();
                shard.remove_if(&mut predicate, RemovalCause::Invalidated, out, guard);
                (out.len() - before) as u64
            });
        }
        self.collect_departed(Duration::ZERO);
        total
    }

    /// Reclaims expired entries, replays buffered reads and hands departed entries to the epoch in
    /// every shard now, rather than on the next write to each, then lets the epoch collect: departed
    /// values are dropped before it returns, unless another thread stays inside a cache call (of any
    /// cache) for the 100 ms this waits at most; they are then dropped soon after, by whichever thread
    /// collects next. Never needed for correctness.
    pub fn run_pending_tasks(&self) {
        for locked in self.inner.shards.iter() {
            self.write_then(locked, false, true, |_, _, _, _| ());
        }
        self.collect_departed(PENDING_TASKS_PATIENCE);
    }

    /// Moves this thread's queued reclamations to the epoch's global queue and lets it advance and
    /// collect until none of this cache's departed entries is waiting (they are dropped two epochs after
    /// they were queued, and each collection takes a few batches off a queue all caches share): a few
    /// quick attempts, then, for up to `patience`, attempts that let other threads run. A thread pinned
    /// elsewhere (inside a cache call, or preempted there) holds the epoch back; what it protects is then
    /// dropped later, by whichever thread collects. Called by the bulk removals (no patience) and by
    /// [`run_pending_tasks`](Self::run_pending_tasks): after them, a thread that only reads would
    /// otherwise keep its last batches queued (its pins collect only the global queue).
    fn collect_departed(&self, patience: Duration) {
        if crossbeam_epoch::is_pinned() {
            // A listener calling back: the epoch cannot pass this thread's own pin.
            crossbeam_epoch::pin().flush();
            return;
        }
        let patience = if cfg!(loom) { Duration::ZERO } else { patience };
        let mut started = None;
        for attempt in 0.. {
            // The first attempts run regardless: they also let the epoch free what else this thread
            // queued (replaced index tables).
            if attempt >= 4 && !self.inner.shards.iter().any(|locked| locked.store.reclaiming()) {
                return;
            }
            crossbeam_epoch::pin().flush();
            if attempt < 4 {
                continue;
            }
            let since = *started.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= patience {
                return;
            }
            std::thread::yield_now();
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
            // Pinned before the flight table's lock, so that no deferred drop runs under it.
            let guard = crossbeam_epoch::pin();
            // The re-check runs under the flight table's lock: it must not reclaim (the listener would run
            // under that lock), so an expired entry counts as absent and is replaced by this load.
            let joined = locked.flights.join(hash, &key, &self.inner.counters, || self.peek(hash, &key, &guard).0);
            drop(guard);
            match joined {
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
                    return self.finish_load(locked, hash, key, loaded, leader);
                }
            }
        }
    }

    /// Ends a load this caller led: stores the value and settles the flight with it, or settles the flight
    /// as failed and hands the error back.
    fn finish_load<E>(
        &self,
        locked: &LockedShard<K, V>,
        hash: u64,
        key: K,
        loaded: Result<V, E>,
        leader: loader::Leader<'_, K, V>,
    ) -> Result<V, E> {
        match loaded {
            Ok(v) => {
                // Stored only if the key is still absent: a value inserted while this one loaded is
                // newer, and is what this call returns (it takes effect after it). The waiters are
                // released before the departures are announced, so that a listener may load this very
                // key again.
                let guard = crossbeam_epoch::pin();
                let (v, departures, heavy, rejected) = self.store_loaded(locked, hash, key, v, &guard);
                leader.settle(Some(v.clone()));
                self.announce(&locked.store, &departures, heavy, guard);
                if let (Some((k, r)), Some(listener)) = (rejected, &self.inner.listener) {
                    (listener.call)(k, r, RemovalCause::Capacity);
                }
                Ok(v)
            }
            Err(e) => {
                leader.settle(None);
                Err(e)
            }
        }
    }

    /// Stores a loaded `value` under `key` unless a live value is there already (stored while it loaded),
    /// under the caller's `guard`. Returns the value the cache now answers with, the departures to
    /// announce (readable under `guard`), whether they were heavy, and the entry handed back if it was
    /// refused (too heavy).
    #[allow(clippy::type_complexity)]
    fn store_loaded(
        &self,
        locked: &LockedShard<K, V>,
        hash: u64,
        key: K,
        value: V,
        guard: &Guard,
    ) -> (V, Removals, bool, Option<(K, V)>) {
        let started = self.inner.latency.as_ref().and_then(LatencyRecorder::start);
        let weight = self.weigh(&key, &value);
        let ttl = if self.inner.config.expiring() { self.inner.config.load().ttl } else { None };
        let loaded = value.clone();
        let ((present, handed_back), out, heavy) =
            self.write_with(locked, false, false, guard, |shard, now, out, guard| {
                // `write_with` reclaimed what had expired by `now`: whatever is found is live.
                if let Some(idx) = shard.find(hash, &key, guard) {
                    return (Some(idx), None);
                }
                let incoming = Incoming { key, value, hash, weight, expires_at: expiry(ttl, now) };
                match shard.insert(incoming, now, out, guard) {
                    Inserted::Rejected(k, v) => {
                        self.inner.counters.add(Counter::Rejection, 1);
                        (None, Some(Err((k, v))))
                    }
                    Inserted::Updated(k) => {
                        self.inner.counters.add(Counter::Update, 1);
                        (None, Some(Ok(k)))
                    }
                    Inserted::New => {
                        self.inner.counters.add(Counter::Insert, 1);
                        (None, None)
                    }
                }
            });
        if let Some(started) = started {
            self.record_latency(observe::INSERT, started);
        }
        let v = match present {
            // SAFETY: found occupied under `guard`, pinned before the lock: even if it has been retired
            // since, it is not reclaimed while `guard` lives.
            Some(idx) => unsafe { locked.store.slot_entry(idx) }.value.clone(),
            None => loaded,
        };
        // A duplicate key handed back is dropped here, outside the lock.
        let rejected = match handed_back {
            Some(Err(kv)) => Some(kv),
            _ => None,
        };
        (v, out, heavy, rejected)
    }

    /// Changes the maximum weighted size while the cache runs. Shrinking evicts, shard by shard, down to
    /// the new capacity (the listener sees [`RemovalCause::Capacity`]); growing makes room at once. The
    /// shard count stays as built: each shard holds its share of the new capacity (a capacity below the
    /// shard count leaves some shards with none).
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).build();
    /// for k in 0..100 {
    ///     cache.insert(k, k);
    /// }
    /// cache.set_max_capacity(10);
    /// assert!(cache.weighted_size() <= 10);
    /// ```
    pub fn set_max_capacity(&self, capacity: u64) {
        {
            let changing = self.inner.config.change();
            self.inner.config.publish(&changing, |c| c.capacity = capacity);
        }
        // The change lock is released before any shard evicts, so the listener runs under no lock of ours
        // (it may reconfigure the cache). Each shard takes its share of the capacity in force when it
        // applies it, under its own lock: a shard's last update comes after the last change's publish, so
        // concurrent changes leave every shard at the share of the last one.
        if let Some(adaptation) = &self.inner.adaptation {
            adaptation.resize(self.entries_at_capacity());
        }
        let shards = self.inner.shards.len();
        for (i, locked) in self.inner.shards.iter().enumerate() {
            self.write_then(locked, false, true, |shard, _, out, guard| {
                let share = builder::shard_capacity(self.inner.config.load().capacity, shards, i);
                shard.set_capacity(share, out, guard);
            });
        }
    }

    /// Changes the time-to-live of entries inserted from now on (`None`: no TTL). Entries already held
    /// keep the deadline they were given.
    pub fn set_time_to_live(&self, ttl: Option<Duration>) {
        let changing = self.inner.config.change();
        self.inner.config.publish(&changing, |c| c.ttl = ttl);
    }

    /// Changes the time-to-idle (`None`: none) of every entry, held or future: an entry expires once it
    /// has not been read for `tti`. Reads judge by the new setting at once; each shard re-files its
    /// entries' deadlines before this returns. Turning it on counts every held entry as read now.
    pub fn set_time_to_idle(&self, tti: Option<Duration>) {
        let nanos = tti.map(|d| u64::try_from(d.as_nanos()).unwrap_or(NEVER));
        {
            let changing = self.inner.config.change();
            self.inner.config.publish(&changing, |c| c.tti = nanos);
        }
        // As in `set_max_capacity`: no lock of ours is held while departures are announced, and each
        // shard applies the setting in force when it takes its lock.
        for locked in self.inner.shards.iter() {
            self.write(locked, true, |shard, now, _, _| shard.set_tti(self.inner.config.load().tti, now.unwrap_or(0)));
        }
    }

    /// Changes how often latency is sampled (see [`LatencyConfig`](crate::LatencyConfig)). Returns false,
    /// changing nothing, if the cache was built without latency recording.
    pub fn set_latency_sampling(&self, config: crate::LatencyConfig) -> bool {
        match &self.inner.latency {
            Some(l) => {
                l.set_sample_every(config);
                true
            }
            None => false,
        }
    }

    /// Iterates over clones of the live entries, one shard at a time: weakly consistent, each shard's
    /// part is the entries live when it was visited (the clones are made after its lock is released).
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
        let guard = crossbeam_epoch::pin();
        let live = {
            let shard = locked.lock(&guard);
            let now = (self.inner.config.load().expiring() || shard.has_timers()).then(|| self.inner.clock.now());
            shard.live_slots(now)
        };
        // The clones (user code) run after the lock is released, under `guard`.
        let entries = live.into_iter().map(|idx| {
            // SAFETY: the slot was occupied under the lock, with `guard` pinned before it was taken: even if
            // it has been retired since, it is not reclaimed while `guard` lives.
            let entry = unsafe { locked.store.slot_entry(idx) };
            (entry.key.clone(), entry.value.clone())
        });
        Some(entries.collect())
    }

    /// Heap bytes of the cache's own structures (slots, timers, indices), without what keys and values
    /// own. For memory accounting.
    pub fn heap_bytes(&self) -> usize {
        let guard = crossbeam_epoch::pin();
        self.inner.shards.iter().map(|locked| locked.lock(&guard).heap_bytes()).sum()
    }

    /// Checks every shard's invariants; panics on the first broken one. Built for tests, loom and fuzzing only.
    #[cfg(any(test, loom, fuzzing))]
    #[doc(hidden)]
    pub fn validate(&self) {
        let guard = crossbeam_epoch::pin();
        let mut total = 0;
        for locked in self.inner.shards.iter() {
            let shard = locked.lock(&guard);
            shard.validate(&guard);
            total += shard.capacity();
        }
        assert_eq!(total, self.capacity(), "shard capacities add up to the cache's");
    }
}
