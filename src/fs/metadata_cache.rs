//! The metadata cache: file lengths and modification times with a TTL, read without locks.
//!
//! # Design
//! `stat` is the hottest call of a file cache and its answer is small, so it gets a structure of its own
//! rather than the general engine (whose shared lock costs two atomic read-modify-writes per lookup):
//! a set-associative table (4 ways) of fixed slots, each guarded by a sequence lock.
//!
//! - A slot holds the path's bytes inline (paths up to [`INLINE_KEY`] bytes), its hash, the metadata and
//!   an expiry time. Longer paths go to an engine [`Cache`] instead (`long`).
//! - **Readers** take no lock and write nothing: they load the slot's sequence number, the fields, and
//!   the sequence number again. An odd number (a write in progress) or a changed one means the read may
//!   be torn, and the way is treated as a miss (the caller then asks the slow path, which takes the
//!   path's stripe lock). All fields are atomics, so a torn read is a wrong value, never undefined
//!   behaviour, and it is always discarded.
//! - **Writers** (fills on a miss, writes, invalidations) hold the writer lock of the slot's set, so at
//!   most one writes a set at a time; each makes the sequence odd, stores the fields, and makes it even.
//! - **Orderings**: every slot access is `SeqCst`, so all of them fall in one total order consistent with
//!   each thread's program order. If a reader's field load saw a writer's store, the writer's odd store
//!   came before it, hence before the reader's second sequence load, which then differs from the first.
//!   On x86 a `SeqCst` load is a plain load, so readers pay nothing for it; only stores (writers) cost
//!   more. (The classic fence-based seqlock is equivalent but loom 0.7 cannot model its fences.)
//! - Replacement within a set: the path's own slot, else an empty or expired one, else the one expiring
//!   first. A hit is exact: the whole path is compared, not a fingerprint.

use std::sync::Arc;
use std::sync::atomic::AtomicU64 as ReportCounter;
use std::time::{Duration, UNIX_EPOCH};

use super::backend::Metadata;
use super::coarse_clock::CoarseClock;
use crate::Cache;
use crate::sync::{AtomicU64, Mutex, Ordering};

/// Every slot access is sequentially consistent (see the module docs).
const SC: Ordering = Ordering::SeqCst;

const WAYS: usize = 4;
/// Words of inline path; two under loom (the models' paths are short), so models stay small.
#[cfg(not(loom))]
const KEY_WORDS: usize = 8;
#[cfg(loom)]
const KEY_WORDS: usize = 2;
/// Longest path kept in the lock-free table; longer ones use the engine cache.
pub(crate) const INLINE_KEY: usize = KEY_WORDS * 8;
/// Writer locks, each covering every set whose index is congruent modulo this.
const WRITER_STRIPES: usize = 64;

/// One cached file's metadata: 120 bytes, all atomics (see the module docs). Deliberately not
/// over-aligned: the standard allocator hands out zeroed memory for alignments up to 16 with `calloc`,
/// whose large blocks are fresh zero pages that cost nothing until touched; a 64-byte alignment would
/// make it allocate and then zero (touch) the whole table.
struct Slot {
    /// Even: stable. Odd: a writer is changing the slot.
    seq: AtomicU64,
    hash: AtomicU64,
    /// 0: empty (paths are never empty).
    key_len: AtomicU64,
    len: AtomicU64,
    secs: AtomicU64,
    nanos: AtomicU64,
    expires_ms: AtomicU64,
    key: [AtomicU64; KEY_WORDS],
}

impl Slot {
    /// An empty slot. Outside loom tables are allocated zeroed instead (the same state); see `slots`.
    #[cfg_attr(not(loom), allow(dead_code))]
    fn new() -> Self {
        let z = || AtomicU64::new(0);
        Slot {
            seq: z(),
            hash: z(),
            key_len: z(),
            len: z(),
            secs: z(),
            nanos: z(),
            expires_ms: z(),
            key: std::array::from_fn(|_| z()),
        }
    }

    /// Whether the slot holds exactly `key`. Readers validate the answer with the sequence afterwards.
    #[inline]
    fn holds(&self, hash: u64, key: &[u8]) -> bool {
        if self.hash.load(SC) != hash || self.key_len.load(SC) != key.len() as u64 {
            return false;
        }
        let mut chunks = key.chunks_exact(8);
        for (word, chunk) in self.key.iter().zip(&mut chunks) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            if word.load(SC) != u64::from_le_bytes(b) {
                return false;
            }
        }
        let tail = chunks.remainder();
        tail.is_empty() || self.key[key.len() / 8].load(SC) == tail_word(tail)
    }

    /// The slot's key, read by a writer (which holds the set's lock, so it is stable).
    fn key_string(&self) -> Option<String> {
        let len = self.key_len.load(SC) as usize;
        if len == 0 {
            return None;
        }
        let mut bytes: Vec<u8> = self.key.iter().flat_map(|w| w.load(SC).to_le_bytes()).collect();
        bytes.truncate(len);
        String::from_utf8(bytes).ok()
    }

    /// Rewrites the slot under the seqlock protocol; the caller holds the set's writer lock.
    fn write(&self, f: impl FnOnce(&Slot)) {
        let s = self.seq.load(SC);
        self.seq.store(s.wrapping_add(1), SC);
        f(self);
        self.seq.store(s.wrapping_add(2), SC);
    }
}

/// `n` empty slots. Outside loom they come from zeroed memory (`calloc`), so a large table costs no
/// resident memory until its slots are used.
#[cfg(not(loom))]
fn slots(n: usize) -> Box<[Slot]> {
    let zeroed = Box::<[Slot]>::new_zeroed_slice(n);
    // SAFETY: a `Slot` is only `AtomicU64`s (and alignment padding), and an all-zero `AtomicU64` is a
    // valid value (0); an all-zero slot is exactly `Slot::new()`: empty, sequence 0.
    unsafe { zeroed.assume_init() }
}

/// Under loom every atomic must be created through loom.
#[cfg(loom)]
fn slots(n: usize) -> Box<[Slot]> {
    (0..n).map(|_| Slot::new()).collect()
}

/// The last, partial word of a key: its bytes little-endian, zero-padded (as `pack` stores it).
#[inline]
fn tail_word(tail: &[u8]) -> u64 {
    tail.iter().rev().fold(0, |w, &b| (w << 8) | u64::from(b))
}

/// `key` as little-endian words, zero-padded.
fn pack(key: &[u8]) -> [u64; KEY_WORDS] {
    let mut words = [0u64; KEY_WORDS];
    for (w, chunk) in words.iter_mut().zip(key.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
    words
}

/// A long path's entry in the engine cache.
#[derive(Debug, Clone, Copy)]
struct Long {
    meta: Metadata,
    expires_ms: u64,
}

pub(crate) struct MetadataCache {
    slots: Box<[Slot]>,
    set_mask: usize,
    writers: Box<[Mutex<()>]>,
    hasher: ahash::RandomState,
    long: Cache<Arc<str>, Long>,
    ttl_ms: u64,
    clock: CoarseClock,
    /// Slots in use (report-only).
    entries: ReportCounter,
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache").field("slots", &self.slots.len()).field("ttl_ms", &self.ttl_ms).finish()
    }
}

impl MetadataCache {
    /// Room for about `capacity` files' metadata, each trusted for `ttl_ms`.
    pub(crate) fn new(capacity: u64, ttl_ms: u64, clock: CoarseClock, name: &str) -> Self {
        let sets = (usize::try_from(capacity).unwrap_or(usize::MAX) / WAYS).max(1).next_power_of_two();
        MetadataCache {
            slots: slots(sets * WAYS),
            set_mask: sets - 1,
            writers: (0..WRITER_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: super::hasher(),
            long: Cache::builder()
                .name(format!("{name}_metadata"))
                .max_capacity(capacity.max(1))
                .hasher(super::hasher())
                .build(),
            ttl_ms,
            clock,
            entries: ReportCounter::new(0),
        }
    }

    fn set(&self, hash: u64) -> (usize, &[Slot]) {
        let set = hash as usize & self.set_mask;
        (set, &self.slots[set * WAYS..set * WAYS + WAYS])
    }

    /// Fresh metadata for `key`, if cached. `key` need not be a valid path: only valid paths are stored,
    /// so a hit proves it was one.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Metadata> {
        if self.ttl_ms == 0 {
            return None;
        }
        if key.len() > INLINE_KEY {
            let long = self.long.get(std::str::from_utf8(key).ok()?)?;
            return (long.expires_ms > self.clock.now_ms()).then_some(long.meta);
        }
        let hash = self.hasher.hash_one(key);
        for slot in self.set(hash).1 {
            let s1 = slot.seq.load(SC);
            if s1 & 1 == 1 || !slot.holds(hash, key) {
                continue;
            }
            let len = slot.len.load(SC);
            let secs = slot.secs.load(SC);
            let nanos = slot.nanos.load(SC);
            let expires_ms = slot.expires_ms.load(SC);
            // Unchanged: no write overlapped the loads above (see the module docs).
            if slot.seq.load(SC) != s1 {
                continue;
            }
            if expires_ms <= self.clock.now_ms() {
                return None;
            }
            let modified = UNIX_EPOCH + Duration::new(secs, nanos as u32);
            return Some(Metadata { len, modified });
        }
        None
    }

    /// Caches `meta` for `key` (a canonical path) for the TTL.
    pub(crate) fn put(&self, key: &str, meta: Metadata) {
        if self.ttl_ms == 0 {
            return;
        }
        let expires_ms = self.clock.now_ms().saturating_add(self.ttl_ms);
        // Times before 1970 are not representable here; such a file is simply not cached.
        let Ok(since) = meta.modified.duration_since(UNIX_EPOCH) else { return };
        if key.len() > INLINE_KEY {
            self.long.insert(Arc::from(key), Long { meta, expires_ms });
            return;
        }
        let hash = self.hasher.hash_one(key.as_bytes());
        let words = pack(key.as_bytes());
        let (set, slots) = self.set(hash);
        let _writer = self.writers[set % WRITER_STRIPES].lock();
        let now = self.clock.now_ms();
        let slot = slots
            .iter()
            .find(|s| s.holds(hash, key.as_bytes()))
            .or_else(|| slots.iter().find(|s| s.key_len.load(SC) == 0))
            .or_else(|| slots.iter().find(|s| s.expires_ms.load(SC) <= now))
            .unwrap_or_else(|| slots.iter().min_by_key(|s| s.expires_ms.load(SC)).unwrap_or(&slots[0]));
        if slot.key_len.load(SC) == 0 {
            self.entries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        slot.write(|s| {
            s.hash.store(hash, SC);
            s.key_len.store(key.len() as u64, SC);
            for (k, w) in s.key.iter().zip(words) {
                k.store(w, SC);
            }
            s.len.store(meta.len, SC);
            s.secs.store(since.as_secs(), SC);
            s.nanos.store(u64::from(since.subsec_nanos()), SC);
            s.expires_ms.store(expires_ms, SC);
        });
    }

    /// Forgets `key`; true if it was cached.
    pub(crate) fn invalidate(&self, key: &str) -> bool {
        if self.ttl_ms == 0 {
            return false; // nothing is ever cached
        }
        if key.len() > INLINE_KEY {
            return self.long.invalidate(key);
        }
        let hash = self.hasher.hash_one(key.as_bytes());
        let (set, slots) = self.set(hash);
        let _writer = self.writers[set % WRITER_STRIPES].lock();
        let Some(slot) = slots.iter().find(|s| s.holds(hash, key.as_bytes())) else { return false };
        self.clear_slot(slot);
        true
    }

    fn clear_slot(&self, slot: &Slot) {
        slot.write(|s| s.key_len.store(0, SC));
        self.entries.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets every path for which `matches` holds; returns how many.
    pub(crate) fn invalidate_where(&self, mut matches: impl FnMut(&str) -> bool) -> u64 {
        if self.ttl_ms == 0 {
            return 0;
        }
        let mut n = self.long.invalidate_if(|k, _| matches(k));
        for (set, slots) in self.slots.chunks(WAYS).enumerate() {
            let _writer = self.writers[set % WRITER_STRIPES].lock();
            for slot in slots {
                if slot.key_string().is_some_and(|k| matches(&k)) {
                    self.clear_slot(slot);
                    n += 1;
                }
            }
        }
        n
    }

    /// Files whose metadata is held (some may have expired).
    pub(crate) fn entries(&self) -> u64 {
        self.entries.load(std::sync::atomic::Ordering::Relaxed) + self.long.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn meta(len: u64) -> Metadata {
        Metadata { len, modified: UNIX_EPOCH + Duration::new(1_700_000_000, 123) }
    }

    #[test]
    fn short_and_long_paths_round_trip_and_expire() {
        let clock = ManualClock::new();
        let c = MetadataCache::new(64, 1000, CoarseClock::Manual(clock.clone()), "t");
        let long = "l/".repeat(40);
        for (i, k) in ["a", "exactly/eight", &"x".repeat(INLINE_KEY), &long].into_iter().enumerate() {
            c.put(k, meta(i as u64));
            assert_eq!(c.get(k.as_bytes()), Some(meta(i as u64)), "{k}");
        }
        assert_eq!(c.entries(), 4);
        assert_eq!(c.get(b"b"), None);
        assert_eq!(c.get(b"exactly/eigh"), None, "a prefix is another key");
        clock.advance(Duration::from_millis(1000));
        assert_eq!(c.get(b"a"), None, "expired");
        assert_eq!(c.get(long.as_bytes()), None, "expired");
        c.put("a", meta(9));
        assert_eq!(c.get(b"a"), Some(meta(9)));
    }

    #[test]
    fn invalidation_by_key_and_predicate() {
        let c = MetadataCache::new(64, 1000, CoarseClock::Manual(ManualClock::new()), "t");
        for k in ["d/1", "d/2", "e/1"] {
            c.put(k, meta(1));
        }
        c.put(&format!("d/{}", "y".repeat(80)), meta(1));
        assert!(c.invalidate("d/1") && !c.invalidate("d/1"));
        assert_eq!(c.invalidate_where(|k| k.starts_with("d/")), 2);
        assert_eq!(c.get(b"d/2"), None);
        assert_eq!(c.get(b"e/1"), Some(meta(1)));
        assert_eq!(c.entries(), 1);
    }

    #[test]
    fn a_full_set_replaces_the_entry_expiring_first() {
        let clock = ManualClock::new();
        // One set of four ways.
        let c = MetadataCache::new(4, 10_000, CoarseClock::Manual(clock.clone()), "t");
        for i in 0..4 {
            c.put(&format!("f{i}"), meta(i));
            clock.advance(Duration::from_millis(10));
        }
        c.put("f4", meta(4));
        assert_eq!(c.get(b"f0"), None, "the oldest went");
        for i in 1..5 {
            assert_eq!(c.get(format!("f{i}").as_bytes()), Some(meta(i)));
        }
        assert_eq!(c.entries(), 4);
    }

    #[test]
    fn zero_ttl_caches_nothing_and_pre_1970_times_are_skipped() {
        let c = MetadataCache::new(8, 0, CoarseClock::System, "t");
        c.put("a", meta(1));
        assert_eq!(c.get(b"a"), None);
        let c = MetadataCache::new(8, 1000, CoarseClock::System, "t");
        c.put("old", Metadata { len: 1, modified: UNIX_EPOCH - Duration::from_secs(1) });
        assert_eq!(c.get(b"old"), None);
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_entry() {
        let c = MetadataCache::new(4, 1_000_000, CoarseClock::System, "t");
        c.put("k", meta(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..20_000u64 {
                    // len and the time's seconds always agree: a torn read would break that.
                    c.put("k", Metadata { len: i, modified: UNIX_EPOCH + Duration::from_secs(i) });
                }
            });
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..50_000 {
                        if let Some(m) = c.get(b"k") {
                            let secs = m.modified.duration_since(UNIX_EPOCH).unwrap().as_secs();
                            assert!(secs == m.len || (m.len == 0 && secs == 1_700_000_000), "torn: {m:?}");
                        }
                    }
                });
            }
        });
    }
}
