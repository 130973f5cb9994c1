//! File content in memory: the content cache, the chunk generations of large files, and the buffers
//! reads are filled into.
//!
//! # Design
//! Small files (up to the large-file threshold) are cached whole under their path. Large files are never
//! held whole: they are read in chunks, each cached under a key that names the file's *chunk generation*
//! (see `path.rs`). A generation is recorded per file (in its path's slot, see `locks.rs`) when its
//! chunks are first read, and a change to the file drops it, so:
//! - a reader that opened generation `g` only ever finds chunks of `g` in the cache, and when it must
//!   read a chunk from the backend it first checks, with the path locked, that `g` is still current;
//!   otherwise it gets [`Error::Modified`](super::Error::Modified). It never mixes two versions;
//! - chunks of an old generation are dropped with it, and could not be found again anyway.
//!
//! # Memory
//! The budget counts what an entry really holds ([`weight`]): the allocations of its bytes and its key as
//! the allocator sizes them, and [`ENTRY_OVERHEAD`] for its slot in the cache, the buffer's shared header
//! and its share of the hash table. A read is filled into an allocation of the file's size, or, for reads
//! of at least 64 KiB that fill at least three quarters of one, into a pooled buffer (chunks, which are
//! the chunk size exactly, always do), weighed at the buffer's size; the pool keeps reads of large files
//! from allocating and freeing a megabyte at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use super::buffer_pool::BufferPool;
use super::error::Error;
use super::locks::{Chunks, Slot};
use super::path;
use crate::{Cache, CacheStats, ManualClock, Policy};

/// Bytes charged per cached entry on top of the allocations of its content and key: its slot in the
/// engine's slab (80 bytes for these types), the buffer's shared header (an allocation of 32) and its
/// share of the hash table.
pub(crate) const ENTRY_OVERHEAD: usize = 128;

/// What an allocation of `n` bytes takes from the allocator: glibc's 8-byte header and 16-byte granules
/// (at least 32), or whole pages for the large allocations it maps.
fn allocation(n: usize) -> usize {
    if n >= 128 << 10 { (n + 16).next_multiple_of(4096) } else { (n + 8).next_multiple_of(16).max(32) }
}

/// The memory a cached entry of `len` content bytes under a `key_len`-byte key holds (see the module
/// docs); its weight in the content cache.
pub(crate) fn weight(key_len: usize, len: usize) -> u64 {
    let content = if pooled(len) { BufferPool::bucket_size(len) } else { allocation(len) };
    // The key is an `Arc<str>`: two counters ahead of the bytes.
    (content + allocation(16 + key_len) + ENTRY_OVERHEAD) as u64
}

/// Written data smaller than this is always copied into an allocation of its own length.
const COPY_BELOW: usize = 64 << 10;

/// `data` as the cache should hold it: an allocation of its own length, so that the budget (which
/// counts the length) counts what is held. A `Bytes` that keeps spare capacity (one built from a `Vec`
/// that grew) is copied; so is anything under 64 KiB (a copy costs less than the doubt). A larger `Bytes`
/// shared with the caller is kept as given: the caller holds that memory too.
pub(crate) fn compact(data: Bytes) -> Bytes {
    if data.len() < COPY_BELOW {
        return match data.try_into_mut() {
            Ok(m) if m.capacity() == m.len() => m.freeze(),
            Ok(m) => Bytes::copy_from_slice(&m),
            Err(shared) => Bytes::copy_from_slice(&shared),
        };
    }
    match data.try_into_mut() {
        Ok(m) if m.capacity() > m.len() + m.len() / 8 => Bytes::copy_from_slice(&m),
        Ok(m) => m.freeze(),
        Err(shared) => shared,
    }
}

/// Whether a read of `len` bytes is filled into a pooled buffer.
fn pooled(len: usize) -> bool {
    len >= POOL_MIN && len >= BufferPool::bucket_size(len) / 4 * 3
}

/// Shards of the content cache. Each holds `max_bytes / SHARDS`, so the large-file threshold never
/// exceeds that (an entry heavier than its shard would be refused).
pub(crate) const SHARDS: u64 = 8;

/// Reads smaller than this are never pooled: the allocator serves them well.
const POOL_MIN: usize = 64 << 10;

/// How the content cache is configured.
#[derive(Debug)]
pub(crate) struct ContentConfig {
    pub(crate) name: String,
    pub(crate) max_bytes: u64,
    pub(crate) policy: Policy,
    pub(crate) ttl: Option<std::time::Duration>,
    pub(crate) clock: Option<ManualClock>,
    pub(crate) threshold: u64,
    pub(crate) chunk_size: u64,
}

/// File content held in memory (see the module docs).
#[derive(Debug)]
pub(crate) struct Content {
    cache: Cache<Arc<str>, Bytes>,
    pool: BufferPool,
    /// Source of chunk generations, unique within this instance.
    generations: AtomicU64,
    threshold: u64,
    chunk_size: u64,
}

impl Content {
    pub(crate) fn new(c: ContentConfig) -> Self {
        let weigher = |k: &Arc<str>, v: &Bytes| u32::try_from(weight(k.len(), v.len())).unwrap_or(u32::MAX);
        let mut b = Cache::builder()
            .name(format!("{}_data", c.name))
            .max_capacity(c.max_bytes)
            .shards(SHARDS as usize)
            .hasher(super::hasher())
            .policy(c.policy)
            .weigher(weigher);
        if let Some(ttl) = c.ttl {
            b = b.time_to_live(ttl);
        }
        if let Some(clock) = c.clock {
            b = b.clock(clock);
        }
        Content {
            cache: b.build(),
            pool: BufferPool::new((c.max_bytes / 16).max(1 << 20) as usize),
            generations: AtomicU64::new(1),
            threshold: c.threshold,
            chunk_size: c.chunk_size.min(c.threshold.max(1)),
        }
    }

    /// The content cache's capacity in bytes.
    pub(crate) fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    pub(crate) fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Whether a file of `len` bytes is read in chunks.
    pub(crate) fn is_large(&self, len: u64) -> bool {
        len > self.threshold
    }

    /// The cached whole content of `raw`, the caller's path string. Only canonical paths are keys, so a
    /// hit means `raw` was valid; NUL is refused first because chunk keys contain it.
    #[inline]
    pub(crate) fn get(&self, raw: &str) -> Option<Bytes> {
        if raw.as_bytes().contains(&0) {
            return None;
        }
        self.cache.get(raw)
    }

    /// Whether `path`'s whole content is cached; not counted as a read.
    pub(crate) fn contains(&self, path: &str) -> bool {
        self.cache.contains_key(path)
    }

    /// Caches `data` as the whole content of `path` if it is small enough.
    pub(crate) fn store(&self, path: &str, data: &Bytes) {
        if !self.is_large(data.len() as u64) {
            self.cache.insert(Arc::from(path), data.clone());
        }
    }

    /// Whether `len` bytes of `path` would fit in its part of the cache without evicting anything (a
    /// hint: another writer may take the room first).
    pub(crate) fn has_room(&self, path: &str, len: u64) -> bool {
        weight(path.len(), usize::try_from(len).unwrap_or(usize::MAX)) <= self.cache.room_for(path)
    }

    /// The chunk generation of `path` (locked) for a file of `len` bytes: the recorded one, or a new one
    /// if there is none or the recorded length is stale (whose chunks are dropped).
    pub(crate) fn generation(&self, slot: &mut Slot<'_>, len: u64) -> Chunks {
        if let Some(c) = slot.chunks() {
            if c.len == len {
                return c;
            }
            self.drop_chunks(slot.path(), c);
        }
        let chunks = Chunks { generation: self.generations.fetch_add(1, Relaxed), len };
        slot.set_chunks(chunks);
        chunks
    }

    /// Chunk `idx` of `path` under `chunks`, if cached. `buf` holds the key (reused across calls).
    #[inline]
    pub(crate) fn chunk(&self, buf: &mut String, path: &str, chunks: Chunks, idx: u64) -> Option<Bytes> {
        self.cache.get(path::chunk_key(buf, path, chunks.generation, idx))
    }

    /// Caches chunk `idx` of `path` under `chunks` (the path locked, its generation checked).
    pub(crate) fn store_chunk(&self, buf: &mut String, path: &str, chunks: Chunks, idx: u64, data: &Bytes) {
        self.cache.insert(Arc::from(path::chunk_key(buf, path, chunks.generation, idx)), data.clone());
    }

    /// Where chunk `idx` of a file of `len` bytes starts, and its length.
    pub(crate) fn chunk_span(&self, len: u64, idx: u64) -> (u64, usize) {
        let offset = idx * self.chunk_size;
        (offset, self.chunk_size.min(len.saturating_sub(offset)) as usize)
    }

    fn drop_chunks(&self, path: &str, c: Chunks) -> u64 {
        let mut buf = String::with_capacity(path.len() + path::CHUNK_SUFFIX);
        (0..c.len.div_ceil(self.chunk_size))
            .map(|idx| u64::from(self.cache.invalidate(path::chunk_key(&mut buf, path, c.generation, idx))))
            .sum()
    }

    /// Drops the cached copies of `path` (locked): its whole content and its chunks. With `changed` the
    /// content is changing, so the chunk generation goes too and open readers get `Modified`. Returns
    /// how many entries went.
    pub(crate) fn forget(&self, slot: &mut Slot<'_>, changed: bool) -> u64 {
        let path = slot.path();
        let mut n = u64::from(self.cache.invalidate(path));
        let chunks = if changed { slot.take_chunks() } else { slot.chunks() };
        if let Some(c) = chunks {
            n += self.drop_chunks(path, c);
        }
        n
    }

    /// Drops every cached entry whose file `matches`; returns how many.
    pub(crate) fn forget_where(&self, mut matches: impl FnMut(&str) -> bool) -> u64 {
        self.cache.invalidate_if(|k, _| matches(path::file_of(k)))
    }

    /// The files with cached content, most valuable first (the content cache's policy order; a file's
    /// place is that of its most valuable entry, whole or chunk), each with the bytes cached of it.
    pub(crate) fn hot_files(&self) -> Vec<(String, u64)> {
        let entries = self.cache.hot_map(usize::MAX, |key, value| (Arc::clone(key), value.len() as u64));
        let mut files: Vec<(String, u64)> = Vec::new();
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (key, len) in &entries {
            let file = path::file_of(key);
            match seen.get(file) {
                Some(&i) => files[i].1 += len,
                None => {
                    seen.insert(file, files.len());
                    files.push((file.to_string(), *len));
                }
            }
        }
        files
    }

    /// Drops every cached entry; returns how many there were.
    pub(crate) fn clear(&self) -> u64 {
        let n = self.cache.len();
        self.cache.invalidate_all();
        n
    }

    /// Reads `len` bytes (a length hint for whole files) through `fill` into a buffer sized as the module
    /// docs say.
    pub(crate) fn fill(
        &self,
        len: usize,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<Bytes, Error> {
        if !pooled(len) {
            let mut v = Vec::with_capacity(len);
            fill(&mut v)?;
            // A file that grew since its length was known: give back what the growth over-allocated.
            if v.capacity() > v.len() + v.len() / 4 {
                v.shrink_to_fit();
            }
            return Ok(Bytes::from(v));
        }
        let mut buf = self.pool.take(len);
        fill(buf.vec())?;
        Ok(buf.freeze())
    }

    /// Counters and gauges of the content cache.
    pub(crate) fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::fs::locks::PathLocks;

    fn content(max_bytes: u64, threshold: u64, chunk_size: u64) -> Content {
        Content::new(ContentConfig {
            name: "t".into(),
            max_bytes,
            policy: Policy::Lru,
            ttl: None,
            clock: None,
            threshold,
            chunk_size,
        })
    }

    #[test]
    fn chunks_of_one_generation_are_invisible_to_another() {
        let c = content(1 << 20, 100, 10);
        let locks = PathLocks::new();
        let mut g = locks.lock("f");
        let one = c.generation(&mut g.slot(), 1000);
        assert_eq!(c.generation(&mut g.slot(), 1000), one, "recorded until the file changes");
        let mut buf = String::new();
        c.store_chunk(&mut buf, "f", one, 0, &Bytes::from_static(b"v1"));
        assert_eq!(c.forget(&mut g.slot(), true), 1);
        let two = c.generation(&mut g.slot(), 1000);
        assert_ne!(one.generation, two.generation);
        c.store_chunk(&mut buf, "f", two, 0, &Bytes::from_static(b"v2"));
        assert_eq!(c.chunk(&mut buf, "f", one, 0), None, "a reader of version 1 never sees version 2");
        assert_eq!(c.chunk(&mut buf, "f", two, 0).as_deref(), Some(&b"v2"[..]));
        let three = c.generation(&mut g.slot(), 2000);
        assert_ne!(three.generation, two.generation, "a new length is a new generation");
        assert_eq!(c.chunk(&mut buf, "f", two, 0), None, "and the old one's chunks went");
        assert_eq!(c.chunk_span(25, 2), (20, 5));
    }

    #[test]
    fn small_reads_get_exact_allocations_large_ones_pooled_buffers() {
        let c = content(64 << 20, 8 << 20, 1 << 20);
        let small = c
            .fill(100, |v| {
                v.extend_from_slice(&[1; 100]);
                Ok(())
            })
            .unwrap();
        assert_eq!(small.len(), 100);
        // A file that grew: the over-allocation is given back.
        let grown = c
            .fill(10, |v| {
                v.extend_from_slice(&[2; 5000]);
                Ok(())
            })
            .unwrap();
        assert_eq!(grown.len(), 5000);
        let chunk = c
            .fill(1 << 20, |v| {
                v.resize(1 << 20, 3);
                Ok(())
            })
            .unwrap();
        drop(chunk);
        assert_eq!(c.pool.idle_bytes(), 1 << 20, "the chunk's buffer went back to the pool");
        let odd = c
            .fill(600 << 10, |v| {
                v.resize(600 << 10, 4);
                Ok(())
            })
            .unwrap();
        drop(odd);
        assert_eq!(c.pool.idle_bytes(), 1 << 20, "a 600 KiB read would waste 40% of a 1 MiB buffer");
        assert!(c.fill(5, |_| Err(Error::NotFound { path: "x".into() })).is_err());
    }

    #[test]
    fn written_data_is_held_without_spare_capacity() {
        let mut v = Vec::with_capacity(64 << 10);
        v.extend_from_slice(&[1; 100]);
        let compacted = compact(Bytes::from(v));
        assert_eq!(compacted.len(), 100);
        assert_eq!(compacted.try_into_mut().map(|m| m.capacity()).ok(), Some(100), "an exact copy");
        let big = Bytes::from(vec![2u8; 1 << 20]);
        let ptr = big.as_ptr();
        assert_eq!(compact(big).as_ptr(), ptr, "an exact large buffer is kept, not copied");
        let mut grown = Vec::with_capacity(4 << 20);
        grown.extend_from_slice(&[3; 1 << 20]);
        let grown = compact(Bytes::from(grown));
        assert_eq!(grown.try_into_mut().map(|m| m.capacity()).ok(), Some(1 << 20));
        let shared = Bytes::from(vec![4u8; 1 << 20]);
        let keep = shared.clone();
        assert_eq!(compact(shared).as_ptr(), keep.as_ptr(), "shared with the caller: kept");
        assert_eq!(&compact(Bytes::from_static(b"static"))[..], b"static");
    }

    #[test]
    fn weights_count_what_the_allocator_hands_out() {
        assert_eq!(weight(10, 100), 112 + 48 + ENTRY_OVERHEAD as u64);
        assert_eq!(weight(0, 0), 32 + 32 + ENTRY_OVERHEAD as u64);
        assert_eq!(weight(1, 1 << 20), (1 << 20) + 32 + ENTRY_OVERHEAD as u64, "a pooled chunk: its buffer");
        let unpooled = 600 << 10;
        assert!(weight(1, unpooled) >= unpooled as u64 && weight(1, unpooled) < unpooled as u64 + 8192);
    }

    #[test]
    fn room_and_forgetting() {
        let c = content(8 * 1000, 500, 100);
        assert!(c.has_room("a", 500));
        assert!(!c.has_room("a", 900), "a shard holds 1000 bytes, overheads included");
        c.store("a", &Bytes::from(vec![0; 400]));
        c.store("big", &Bytes::from(vec![0; 600]));
        assert!(c.contains("a") && !c.contains("big"), "large files are never cached whole");
        assert_eq!(c.get("a\0x"), None);
        assert_eq!(c.forget_where(|p| p == "a"), 1);
        c.store("b", &Bytes::from_static(b"b"));
        assert_eq!(c.clear(), 1);
        assert_eq!(c.stats().entries, 0);
    }
}
