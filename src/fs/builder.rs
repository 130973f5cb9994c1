//! Configuration of a [`CacheFs`]: budgets, policy, write mode, metadata caching, metrics.

use std::fmt;
use std::time::Duration;

use super::CacheFs;
use super::backend::Backend;
use crate::{LatencyConfig, ManualClock, Policy};

/// When a write reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The backend first, then the cache: `write` returns once the backend has the data.
    WriteThrough,
    /// The cache now, the backend later. A background flusher writes each dirty file `delay` after its
    /// last write; `flush()`, closing a writer (with flush-on-close) and dropping the `CacheFs` write
    /// everything. When dirty bytes reach `max_dirty_bytes`, writers wait for the flusher.
    WriteBack {
        /// How long a file stays dirty before the flusher writes it.
        delay: Duration,
        /// Most bytes held dirty at once (a single larger file is still accepted when nothing else is
        /// dirty).
        max_dirty_bytes: u64,
    },
    /// The backend only: the write drops any cached copy instead of caching the new content (for data
    /// written once and rarely read back).
    WriteAround,
}

impl WriteMode {
    /// Write-back with a 1 s delay and 64 MiB of dirty data at most.
    pub const fn write_back() -> Self {
        WriteMode::WriteBack { delay: Duration::from_secs(1), max_dirty_bytes: 64 << 20 }
    }
}

/// Builds a [`CacheFs`]; from [`CacheFs::builder`].
pub struct CacheFsBuilder {
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) max_bytes: u64,
    pub(crate) policy: Policy,
    pub(crate) write_mode: WriteMode,
    pub(crate) metadata_ttl: Duration,
    pub(crate) content_ttl: Option<Duration>,
    pub(crate) metadata_capacity: u64,
    pub(crate) flush_on_close: bool,
    pub(crate) flush_workers: usize,
    pub(crate) large_file_threshold: Option<u64>,
    pub(crate) chunk_size: u64,
    pub(crate) latency: Option<LatencyConfig>,
    pub(crate) name: String,
    pub(crate) clock: Option<ManualClock>,
}

impl fmt::Debug for CacheFsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheFsBuilder")
            .field("max_bytes", &self.max_bytes)
            .field("policy", &self.policy)
            .field("write_mode", &self.write_mode)
            .field("metadata_ttl", &self.metadata_ttl)
            .field("content_ttl", &self.content_ttl)
            .field("metadata_capacity", &self.metadata_capacity)
            .field("flush_on_close", &self.flush_on_close)
            .field("flush_workers", &self.flush_workers)
            .field("large_file_threshold", &self.large_file_threshold)
            .field("chunk_size", &self.chunk_size)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CacheFsBuilder {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        CacheFsBuilder {
            backend,
            max_bytes: 256 << 20,
            policy: Policy::Hybrid,
            write_mode: WriteMode::WriteThrough,
            metadata_ttl: Duration::from_secs(5),
            content_ttl: None,
            metadata_capacity: 100_000,
            flush_on_close: true,
            flush_workers: 4,
            large_file_threshold: None,
            chunk_size: 1 << 20,
            latency: None,
            name: "cachefs".to_string(),
            clock: None,
        }
    }

    /// RAM budget for cached file content, in bytes (dirty write-back data is bounded separately by
    /// `max_dirty_bytes`). Default 256 MiB.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Which cached files leave first when the budget is reached. Default [`Policy::Hybrid`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// When writes reach the backend. Default [`WriteMode::WriteThrough`].
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// How long a file's metadata is trusted before `stat` asks the backend again. Default 5 s.
    /// Writes through this `CacheFs` update it at once; the TTL bounds how stale changes made by others
    /// can look.
    pub fn metadata_ttl(mut self, ttl: Duration) -> Self {
        self.metadata_ttl = ttl;
        self
    }

    /// How long cached file content is served before it is read from the backend again (for backends
    /// that others write to; with [`Policy::Ttl`] the entries closest to expiry also go first when space
    /// is needed). Default: no limit. Dirty write-back data is never dropped by this.
    pub fn content_ttl(mut self, ttl: Duration) -> Self {
        self.content_ttl = Some(ttl);
        self
    }

    /// How many files' metadata is kept (4-way set-associative, so a little less in practice). The table
    /// takes 120 bytes a slot of address space, but memory only for the slots used. Default 100,000.
    pub fn metadata_capacity(mut self, entries: u64) -> Self {
        self.metadata_capacity = entries;
        self
    }

    /// Whether closing a writer handle in write-back mode also flushes that file to the backend.
    /// Default true.
    pub fn flush_on_close(mut self, on: bool) -> Self {
        self.flush_on_close = on;
        self
    }

    /// Threads `flush()` and urgent background passes use to write dirty files in parallel (each file
    /// still by one thread at a time). Backends whose writes wait on the disk (fsync) gain the most.
    /// Default 4; at least 1.
    pub fn flush_workers(mut self, workers: usize) -> Self {
        self.flush_workers = workers.max(1);
        self
    }

    /// Files larger than this are never held whole: they are read in chunks (which are cached).
    /// Default and maximum `max_bytes / 8`.
    pub fn large_file_threshold(mut self, bytes: u64) -> Self {
        self.large_file_threshold = Some(bytes);
        self
    }

    /// Chunk size for large files. Default 1 MiB; at most the large-file threshold.
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Records latency percentiles of `read`, `write` and `flush` (see [`LatencyConfig`]).
    pub fn latency(mut self, config: LatencyConfig) -> Self {
        self.latency = Some(config);
        self
    }

    /// The name reported in stats and metric labels. Default `cachefs`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Measures metadata and content expiry on a clock the caller advances (for tests).
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The large-file threshold in effect.
    pub(crate) fn threshold(&self) -> u64 {
        let cap = self.max_bytes / super::content::SHARDS;
        self.large_file_threshold.map_or(cap, |t| t.min(cap))
    }

    /// Builds the `CacheFs` (and, in write-back mode, starts its flusher thread).
    pub fn build(self) -> CacheFs {
        CacheFs::from_builder(self)
    }
}
