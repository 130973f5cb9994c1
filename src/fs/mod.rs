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
//! the backend (fill, write, flush, commit, remove, rename) are serialised per path, so a read never
//! caches data older than a write that finished before it, and write-back never writes versions out of
//! order. Read hits take no lock of this layer.
//!
//! # Guarantees
//! - Write-back: a write is acknowledged only if a flush can complete it (the backend's checks, and no
//!   other pending write that makes its path a directory or its parent a file), so only I/O faults can
//!   keep it from the backend. A dirty file is never evicted before it is written; `flush()` returning
//!   `Ok` means every write acknowledged before the call is on the backend; a failed flush keeps the data
//!   dirty.
//! - A reader never mixes two versions of a file: a small file is read whole, a large one in chunks of
//!   one version, failing with [`Error::Modified`] if the file changes under it.
//! - A [`FileWriter`] stores nothing until [`FileWriter::close`]; one whose write failed stores nothing
//!   at all.
//! - After a backend call that fails, cached copies of the paths it concerns are dropped: a call can fail
//!   after taking effect, and the next read asks the backend.
//! - Paths are checked before anything touches the backend ([`Error::InvalidPath`]).
//! - This layer assumes it is the backend's only writer; changes made by others are seen once the cached
//!   copy is evicted or invalidated, and in metadata after `metadata_ttl`.
//!
//! # Structure
//! [`CacheFs`] holds a few parts, each a type that owns its state: `PathLocks` (per-path locks and the
//! content that must stay in memory: dirty and pinned files, chunk generations), `Content` (the content
//! cache and read buffers), `MetadataCache`, `WriteBack` (budget, pending-write claims, flushing), the
//! backend and the counters. The files named for operations (`read.rs`, `write.rs`, `file.rs`,
//! `warm.rs`) sequence those parts; none reaches into another's state.

mod backend;
mod batch;
mod buffer_pool;
mod builder;
mod claims;
mod coarse_clock;
mod content;
mod dataset;
mod error;
mod file;
mod hot_list;
mod locks;
mod metadata_cache;
mod path;
mod read;
mod stats;
mod warm;
mod workers;
mod write;
mod write_back;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use backend::{Backend, BackendFile, MemBackend, Metadata, OsBackend, TEMP_MARKER};
pub use builder::{CacheFsBuilder, WriteMode};
pub use error::{Error, FlushFailure};
pub use file::{FileReader, FileWriter};
pub use stats::FsStats;
pub use warm::{ProgressFn, WarmHandle, WarmOptions, WarmPriority, WarmProgress, WarmReport};

use self::coarse_clock::CoarseClock;
use self::content::{Content, ContentConfig};
use self::locks::{PathLocks, Slot};
use self::metadata_cache::MetadataCache;
use self::path::checked;
use self::stats::{Count, Counters, Gauges};
use self::write_back::{Env, WriteBack};
use crate::latency::LatencyRecorder;
use crate::sync::JoinHandle;

/// Operations whose latency is recorded, in this order.
const OPS: &[&str] = &["read", "write", "flush"];
const OP_READ: usize = 0;
const OP_WRITE: usize = 1;
const OP_FLUSH: usize = 2;

/// Everything the public handle, file handles, the flusher and async warms share: the parts, each
/// owning its state (see the module docs).
struct Inner {
    backend: Box<dyn Backend>,
    content: Content,
    meta: MetadataCache,
    locks: PathLocks,
    write_back: WriteBack,
    mode: WriteMode,
    counters: Counters,
    latency: Option<LatencyRecorder>,
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
        let content = Content::new(ContentConfig {
            name: b.name.clone(),
            max_bytes: b.max_bytes,
            policy: b.policy,
            ttl: b.content_ttl,
            clock: b.clock.clone(),
            threshold,
            chunk_size: b.chunk_size,
        });
        let clock = b.clock.map_or(CoarseClock::System, CoarseClock::Manual);
        let ttl_ms = u64::try_from(b.metadata_ttl.as_millis()).unwrap_or(u64::MAX);
        let write_back = match b.write_mode {
            WriteMode::WriteBack { delay, max_dirty_bytes } => Some((delay, max_dirty_bytes)),
            _ => None,
        };
        let inner = Arc::new(Inner {
            backend: b.backend,
            content,
            meta: MetadataCache::new(b.metadata_capacity, ttl_ms, clock, &b.name),
            locks: PathLocks::new(),
            write_back: WriteBack::new(write_back, b.flush_workers, b.flush_on_close),
            mode: b.write_mode,
            counters: Counters::new(),
            latency: b.latency.map(|c| LatencyRecorder::new(OPS, c)),
            name: b.name,
        });
        let flusher = write_back.map(|_| {
            let inner = Arc::clone(&inner);
            crate::sync::spawn_named("cachefs-flusher", move || inner.with_env(|env| inner.write_back.run_flusher(env)))
        });
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
        let mut guard = self.inner.locks.lock(&key);
        self.inner.metadata(&guard.slot())
    }

    /// True if a regular file exists at `path`. Backend failures other than "not found" are errors.
    pub fn exists(&self, path: impl AsRef<Path>) -> Result<bool, Error> {
        match self.stat(path) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. } | Error::NotAFile { .. } | Error::NotADirectory { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Files below directory `dir` (recursively; `""`: everywhere) holding write-back data the backend
    /// does not have yet, sorted. Each stripe of the path locks is taken in turn, briefly.
    ///
    /// ```
    /// use cachefs::fs::{CacheFs, MemBackend, WriteMode};
    ///
    /// let fs = CacheFs::builder(MemBackend::new()).write_mode(WriteMode::write_back()).build();
    /// fs.write("a/b.txt", b"x".to_vec())?;
    /// assert_eq!(fs.dirty_files("a")?, ["a/b.txt"]);
    /// fs.flush()?;
    /// assert!(fs.dirty_files("")?.is_empty());
    /// # Ok::<(), cachefs::fs::Error>(())
    /// ```
    pub fn dirty_files(&self, dir: impl AsRef<Path>) -> Result<Vec<String>, Error> {
        let dir = path::checked_dir(dir.as_ref())?;
        let dirty = self.inner.locks.dirty_paths(|_| true);
        let mut files: Vec<String> = dirty.iter().filter(|p| path::is_within(p, &dir)).map(|p| p.to_string()).collect();
        files.sort_unstable();
        Ok(files)
    }

    /// Drops the cached copy (content, chunks, metadata) of one file; the next read goes to the backend.
    /// Dirty write-back data is kept (it is the newest version). Returns whether anything was cached.
    pub fn invalidate(&self, path: impl AsRef<Path>) -> Result<bool, Error> {
        let key = checked(path.as_ref())?;
        let mut guard = self.inner.locks.lock(&key);
        Ok(self.inner.forget(&mut guard.slot(), false) > 0)
    }

    /// Drops cached copies of every file in directory `dir` (by component: `a` covers `a/x`, not `ab`;
    /// `""` covers everything). Returns how many cache entries went.
    pub fn invalidate_prefix(&self, dir: impl AsRef<Path>) -> Result<u64, Error> {
        let dir = path::checked_dir(dir.as_ref())?;
        Ok(self.inner.forget_where(|p| path::is_within(p, &dir)))
    }

    /// Drops cached copies of every file whose path matches the glob `pattern` (`*` and `?` stay within
    /// one component, `**` crosses them). Returns how many cache entries went.
    pub fn invalidate_matching(&self, pattern: &str) -> Result<u64, Error> {
        let glob = path::Glob::new(pattern)?;
        Ok(self.inner.forget_where(|p| glob.matches(p)))
    }

    /// Drops every cached copy (dirty data stays until flushed).
    pub fn clear(&self) {
        let n = self.inner.content.clear();
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
            self.inner.write_back.stop();
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
        let (dirty_entries, dirty_bytes) = self.write_back.usage();
        self.counters.report(
            &self.name,
            Gauges {
                dirty_entries,
                dirty_bytes,
                data: self.content.stats(),
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

    /// Runs `f` with what flushing needs: the locks, the counters, and a timed backend write.
    fn with_env<R>(&self, f: impl FnOnce(&Env<'_>) -> R) -> R {
        let store = |path: &str, data: &[u8], modified| {
            let started = self.start();
            let result = self.backend.write_modified(path, data, modified);
            self.record(OP_FLUSH, started);
            result
        };
        f(&Env { locks: &self.locks, counters: &self.counters, store: &store })
    }

    /// Fresh cached metadata for `key`, counting a hit.
    #[inline]
    fn cached_meta(&self, key: &[u8]) -> Option<Metadata> {
        let m = self.meta.get(key)?;
        self.counters.add(Count::MetadataHit, 1);
        Some(m)
    }

    /// Metadata of the slot's path (locked): dirty data first, then the metadata cache, then the backend.
    fn metadata(&self, slot: &Slot<'_>) -> Result<Metadata, Error> {
        let key = slot.path();
        if let Some((data, d)) = slot.dirty() {
            return Ok(Metadata { len: data.len() as u64, modified: d.modified });
        }
        if let Some(m) = self.cached_meta(key.as_bytes()) {
            return Ok(m);
        }
        self.counters.add(Count::MetadataMiss, 1);
        let meta = self.backend.stat(key)?;
        self.meta.put(key, meta);
        Ok(meta)
    }

    /// Drops the cached content and metadata of the slot's path (locked). With `changed` the content is
    /// changing: the chunk generation goes too, so open readers see [`Error::Modified`]. Returns how many
    /// cache entries went.
    fn forget(&self, slot: &mut Slot<'_>, changed: bool) -> u64 {
        let n = self.content.forget(slot, changed) + u64::from(self.meta.invalidate(slot.path()));
        self.counters.add(Count::Invalidated, n);
        n
    }

    /// The slot's path (locked) now has content this layer did not write, or unknown content: everything
    /// held or cached for it goes, dirty data included (callers flush first what must survive).
    fn replaced(&self, slot: &mut Slot<'_>) {
        self.write_back.drop_held(slot);
        self.forget(slot, true);
    }

    /// Drops every cached entry whose file path `matches`.
    fn forget_where(&self, mut matches: impl FnMut(&str) -> bool) -> u64 {
        let n = self.content.forget_where(&mut matches);
        self.meta.invalidate_where(&mut matches);
        self.counters.add(Count::Invalidated, n);
        n
    }
}

/// The hasher for the caches and locks: random per instance (flood-resistant), except under loom,
/// whose models must run the same way on every iteration.
fn hasher() -> ahash::RandomState {
    #[cfg(loom)]
    {
        ahash::RandomState::with_seeds(1, 2, 3, 4)
    }
    #[cfg(not(loom))]
    {
        ahash::RandomState::new()
    }
}
