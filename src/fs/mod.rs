//! A caching file layer over a slower [`Backend`]: whole files in memory under a byte budget, metadata
//! cached with a TTL, writes through, back or around the cache, batch operations and warming.
//!
//! ```
//! use cachefs::fs::{CacheFs, MemBackend, WriteMode};
//!
//! let fs = CacheFs::builder(MemBackend::new())
//!     .max_bytes(64 << 20)
//!     .write_mode(WriteMode::write_back())
//!     .build();
//! fs.write("models/v1/config.json", b"{}".to_vec())?;       // in memory now, on the backend soon
//! assert_eq!(&fs.read("models/v1/config.json")?[..], b"{}"); // served from memory
//! assert_eq!(fs.stat("models/v1/config.json")?.len, 2);
//! fs.flush()?;                                                // on the backend now
//! # Ok::<(), cachefs::fs::Error>(())
//! ```
//!
//! # Concurrent calls on the same path
//! Any number of threads may call any method at once. Readers that miss on the same path at the same time
//! cause one backend read; the rest wait for it and share the result. Operations on one path that touch
//! the backend (fill, write, flush, remove) are serialised per path (see `resident.rs`), so a read never
//! caches data older than a write that finished before it, and write-back never writes versions out of
//! order. Read hits take no lock of this layer.
//!
//! # Guarantees
//! - Write-back: a dirty file is never evicted before it is written; `flush()` returning `Ok` means every
//!   write acknowledged before the call is on the backend; a failed flush keeps the data dirty.
//! - Paths are checked before anything touches the backend ([`Error::InvalidPath`]).
//! - This layer assumes it is the backend's only writer; changes made by others are seen once the cached
//!   copy is evicted or invalidated, and in metadata after `metadata_ttl`.

mod backend;
mod batch;
mod buffer_pool;
mod builder;
mod coarse_clock;
mod dataset;
mod error;
mod file;
mod metadata_cache;
mod path;
mod read;
mod resident;
mod stats;
mod warm;
mod write;
mod write_back;

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::Bytes;

pub use backend::{Backend, BackendFile, MemBackend, Metadata, OsBackend, TEMP_MARKER};
pub use builder::{CacheFsBuilder, WriteMode};
pub use error::{Error, FlushFailure};
pub use file::{FileReader, FileWriter};
pub use stats::FsStats;
pub use warm::{ProgressFn, WarmHandle, WarmOptions, WarmPriority, WarmProgress, WarmReport};

use self::buffer_pool::BufferPool;
use self::coarse_clock::CoarseClock;
use self::metadata_cache::MetadataCache;
use self::resident::{Stripe, Stripes};
use self::stats::{Count, Counters, Gauges};
use self::write_back::DirtyBudget;
use crate::Cache;
use crate::metrics::LatencyRecorder;
use crate::sync::JoinHandle;

/// Operations whose latency is recorded, in this order.
const OPS: &[&str] = &["read", "write", "flush"];
const OP_READ: usize = 0;
const OP_WRITE: usize = 1;
const OP_FLUSH: usize = 2;

/// Bytes charged per cached entry on top of its content (key, slot, `Bytes` header).
const ENTRY_OVERHEAD: usize = 96;

/// Everything the public handle, file handles, the flusher and async warms share.
pub(crate) struct Inner {
    pub(crate) backend: Box<dyn Backend>,
    /// File content: whole files under their path, chunks of large files under `path\0index`.
    pub(crate) data: Cache<Arc<str>, Bytes>,
    pub(crate) meta: MetadataCache,
    pub(crate) stripes: Stripes,
    pub(crate) mode: WriteMode,
    pub(crate) threshold: u64,
    pub(crate) chunk_size: u64,
    pub(crate) flush_on_close: bool,
    pub(crate) flush_workers: usize,
    pub(crate) dirty: DirtyBudget,
    pub(crate) counters: Counters,
    latency: Option<LatencyRecorder>,
    pub(crate) pool: BufferPool,
    /// Source of chunk generations (see `resident::Chunked`).
    pub(crate) generations: AtomicU64,
    name: String,
}

/// A caching file system over a [`Backend`]. See the [module docs](self) for the guarantees.
///
/// Dropping it stops the flusher and writes every dirty file (errors are counted in
/// [`FsStats::flush_errors`]); call [`close`](Self::close) to see them instead.
pub struct CacheFs {
    inner: Arc<Inner>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CacheFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheFs").field("name", &self.inner.name).field("mode", &self.inner.mode).finish()
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CacheFs {
    /// Starts configuring a `CacheFs` over `backend`.
    pub fn builder(backend: impl Backend) -> CacheFsBuilder {
        CacheFsBuilder::new(Box::new(backend))
    }

    fn from_builder(b: CacheFsBuilder) -> Self {
        let threshold = b.threshold();
        let mut data = Cache::builder()
            .name(format!("{}_data", b.name))
            .max_capacity(b.max_bytes)
            .shards(builder::DATA_SHARDS as usize)
            .hasher(hasher())
            .policy(b.policy)
            .weigher(|k: &Arc<str>, v: &Bytes| u32::try_from(v.len() + k.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX));
        if let Some(ttl) = b.content_ttl {
            data = data.time_to_live(ttl);
        }
        if let Some(clock) = &b.clock {
            data = data.clock(clock.clone());
        }
        let data = data.build();
        let clock = b.clock.map_or(CoarseClock::System, CoarseClock::Manual);
        let ttl_ms = u64::try_from(b.metadata_ttl.as_millis()).unwrap_or(u64::MAX);
        let meta = MetadataCache::new(b.metadata_capacity, ttl_ms, clock, &b.name);
        let inner = Arc::new(Inner {
            backend: b.backend,
            data,
            meta,
            stripes: Stripes::new(),
            mode: b.write_mode,
            threshold,
            chunk_size: b.chunk_size.min(threshold.max(1)),
            flush_on_close: b.flush_on_close,
            flush_workers: b.flush_workers,
            dirty: DirtyBudget::new(match b.write_mode {
                WriteMode::WriteBack { max_dirty_bytes, .. } => max_dirty_bytes,
                _ => u64::MAX,
            }),
            counters: Counters::new(),
            latency: b.latency.map(|c| LatencyRecorder::new(OPS, c)),
            pool: BufferPool::new((b.max_bytes / 16).max(1 << 20) as usize),
            generations: AtomicU64::new(1),
            name: b.name,
        });
        let flusher = match b.write_mode {
            WriteMode::WriteBack { delay, .. } => Some(write_back::spawn_flusher(Arc::clone(&inner), delay)),
            _ => None,
        };
        CacheFs { inner, flusher }
    }

    /// The file's length and modification time, from the metadata cache when it is fresh. Dirty
    /// write-back files report their new length.
    pub fn stat(&self, path: impl AsRef<Path>) -> Result<Metadata, Error> {
        let path = path.as_ref();
        // Only canonical paths are stored, so the caller's bytes can be looked up before any check.
        if let Some(m) = self.inner.cached_meta(path.as_os_str().as_encoded_bytes()) {
            return Ok(m);
        }
        let key = checked(path)?;
        let stripe = self.inner.stripes.lock(&key);
        self.inner.metadata_locked(&stripe, &key)
    }

    /// True if a regular file exists at `path`. Backend failures other than "not found" are errors.
    pub fn exists(&self, path: impl AsRef<Path>) -> Result<bool, Error> {
        match self.stat(path) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. } | Error::NotAFile { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Drops the cached copy (content, chunks, metadata) of one file; the next read goes to the backend.
    /// Dirty write-back data is kept (it is the newest version). Returns whether anything was cached.
    pub fn invalidate(&self, path: impl AsRef<Path>) -> Result<bool, Error> {
        let key = checked(path.as_ref())?;
        let mut stripe = self.inner.stripes.lock(&key);
        Ok(self.inner.forget_locked(&mut stripe, &key, false) > 0)
    }

    /// Drops cached copies of every file in directory `dir` (by component: `a` covers `a/x`, not `ab`;
    /// `""` covers everything). Returns how many cache entries went.
    pub fn invalidate_prefix(&self, dir: impl AsRef<Path>) -> Result<u64, Error> {
        let dir = checked_dir(dir.as_ref())?;
        Ok(self.inner.invalidate_where(|p| path::is_within(p, &dir)))
    }

    /// Drops cached copies of every file whose path matches the glob `pattern` (`*` and `?` stay within
    /// one component, `**` crosses them). Returns how many cache entries went.
    pub fn invalidate_matching(&self, pattern: &str) -> Result<u64, Error> {
        let glob = warm::compile_glob(pattern)?;
        Ok(self.inner.invalidate_where(|p| glob.matches_with(p, warm::GLOB_OPTIONS)))
    }

    /// Drops every cached copy (dirty data stays until flushed).
    pub fn clear(&self) {
        let n = self.inner.data.len();
        self.inner.data.invalidate_all();
        self.inner.meta.invalidate_where(|_| true);
        self.inner.counters.add(Count::Invalidated, n);
    }

    /// Counters, gauges and latency percentiles.
    pub fn stats(&self) -> FsStats {
        self.inner.stats()
    }

    /// A handle that reports this `CacheFs`'s stats from anywhere (an exporter's callback), without
    /// keeping the flusher or the ability to write.
    #[cfg(feature = "otel")]
    pub(crate) fn stats_source(&self) -> StatsSource {
        StatsSource(Arc::clone(&self.inner))
    }

    /// The backend underneath.
    pub fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    /// Stops the flusher and writes every dirty file, reporting failures (the data of a failed file is
    /// still lost with the process; retry with [`flush`](Self::flush) before giving up on it).
    pub fn close(mut self) -> Result<(), Error> {
        self.stop_flusher();
        self.flush()
    }

    fn stop_flusher(&mut self) {
        if let Some(handle) = self.flusher.take() {
            self.inner.dirty.stop();
            // A panicking flusher has already reported itself; the final flush below still runs.
            let _ = handle.join();
        }
    }
}

impl Drop for CacheFs {
    fn drop(&mut self) {
        self.stop_flusher();
        // Failures are counted in stats; there is nobody left to return them to.
        let _ = self.flush();
    }
}

/// See `CacheFs::stats_source`.
#[cfg(feature = "otel")]
#[derive(Debug, Clone)]
pub(crate) struct StatsSource(Arc<Inner>);

#[cfg(feature = "otel")]
impl StatsSource {
    pub(crate) fn stats(&self) -> FsStats {
        self.0.stats()
    }
}

impl Inner {
    fn stats(&self) -> FsStats {
        let (dirty_entries, dirty_bytes) = self.dirty.usage();
        self.counters.report(
            &self.name,
            Gauges {
                dirty_entries,
                dirty_bytes,
                data: self.data.stats(),
                metadata_entries: self.meta.entries(),
                latency: self.latency.as_ref().map(LatencyRecorder::summaries).unwrap_or_default(),
            },
        )
    }

    #[inline]
    fn start(&self) -> Option<Instant> {
        self.latency.as_ref().and_then(LatencyRecorder::start)
    }

    #[inline]
    fn record(&self, op: usize, started: Option<Instant>) {
        if let (Some(l), Some(s)) = (&self.latency, started) {
            l.record(op, s);
        }
    }

    /// Fresh cached metadata for `key`, counting a hit.
    #[inline]
    fn cached_meta(&self, key: &[u8]) -> Option<Metadata> {
        let m = self.meta.get(key)?;
        self.counters.add(Count::MetadataHit, 1);
        Some(m)
    }

    /// Metadata of `key` (canonical) with its stripe locked: dirty data first, then the metadata cache,
    /// then the backend.
    pub(crate) fn metadata_locked(&self, stripe: &Stripe, key: &str) -> Result<Metadata, Error> {
        if let Some(r) = stripe.resident.get(key)
            && let Some(d) = &r.dirty
        {
            return Ok(Metadata { len: r.data.len() as u64, modified: d.modified });
        }
        if let Some(m) = self.cached_meta(key.as_bytes()) {
            return Ok(m);
        }
        self.counters.add(Count::MetadataMiss, 1);
        let meta = self.backend.stat(key)?;
        self.meta.put(key, meta);
        Ok(meta)
    }

    /// Drops the cached content, chunks and metadata of `key` (its stripe locked). With `changed` the
    /// file's content is changing: its chunk record goes too, so open readers see [`Error::Modified`].
    /// Returns how many cache entries went.
    pub(crate) fn forget_locked(&self, stripe: &mut Stripe, key: &str, changed: bool) -> u64 {
        let mut n = u64::from(self.data.invalidate(key));
        let chunked = if changed { stripe.chunked.remove(key) } else { stripe.chunked.get(key).copied() };
        if let Some(c) = chunked {
            let mut buf = String::with_capacity(key.len() + 21);
            for idx in 0..c.len.div_ceil(self.chunk_size) {
                n += u64::from(self.data.invalidate(read::chunk_key(&mut buf, key, idx)));
            }
        }
        n += u64::from(self.meta.invalidate(key));
        self.counters.add(Count::Invalidated, n);
        n
    }

    /// Drops every cached entry whose file path `matches`.
    fn invalidate_where(&self, mut matches: impl FnMut(&str) -> bool) -> u64 {
        let n = self.data.invalidate_if(|k, _| matches(read::file_of(k)));
        self.meta.invalidate_where(&mut matches);
        self.counters.add(Count::Invalidated, n);
        n
    }

    /// Caches `data` as the whole content of `key` if it is small enough.
    pub(crate) fn cache_whole(&self, key: &Arc<str>, data: &Bytes) {
        if data.len() as u64 <= self.threshold {
            self.data.insert(Arc::clone(key), data.clone());
        }
    }
}

/// The hasher for the caches and stripes: random per instance (flood-resistant), except under loom,
/// whose models must run the same way on every iteration.
pub(crate) fn hasher() -> ahash::RandomState {
    #[cfg(loom)]
    {
        ahash::RandomState::with_seeds(1, 2, 3, 4)
    }
    #[cfg(not(loom))]
    {
        ahash::RandomState::new()
    }
}

/// A path argument after checking: borrowed when the caller's string was already canonical.
pub(crate) fn checked(path: &Path) -> Result<Cow<'_, str>, Error> {
    path::canonical(path::as_str(path)?, false)
}

/// A directory argument after checking (the empty path, the root, is allowed).
pub(crate) fn checked_dir(dir: &Path) -> Result<Cow<'_, str>, Error> {
    path::canonical(path::as_str(dir)?, true)
}
