//! What a [`CacheFs`](super::CacheFs) counts, and its report: JSON and Prometheus text.
//!
//! Counters are striped by thread (each stripe on its own cache lines) and only ever added to with
//! relaxed atomics: they report, they order nothing. Gauges (dirty bytes, entries) are read from the
//! structures that own them when a report is made.

use serde::Serialize;

use crate::CacheStats;
use crate::latency::LatencySummary;
use crate::metrics::prometheus;
use crate::stripe::{StripedCounters, default_stripes};

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    ReadHit,
    ReadMiss,
    BytesFromCache,
    BytesFromBackend,
    MetadataHit,
    MetadataMiss,
    Write,
    BytesWritten,
    Flush,
    FlushedBytes,
    FlushError,
    BackpressureWait,
    Invalidated,
    Removed,
    Warmed,
    WarmSkipped,
    AbandonedWriter,
}

const COUNTS: usize = 17;

/// The counters of one `CacheFs`, striped by thread (see `crate::stripe`).
#[derive(Debug)]
pub(crate) struct Counters {
    striped: StripedCounters<COUNTS>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters { striped: StripedCounters::new(default_stripes()) }
    }

    #[inline]
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.striped.add(count as usize, n);
    }

    fn total(&self, count: Count) -> u64 {
        self.striped.total(count as usize)
    }
}

/// A point-in-time report of a [`CacheFs`](super::CacheFs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsStats {
    /// The name given to the builder (the `cache` label).
    pub name: String,
    /// Reads (`read`, `read_range`, handle reads) answered from memory without the backend.
    pub read_hits: u64,
    /// Reads that went to the backend.
    pub read_misses: u64,
    /// Bytes handed to readers from memory.
    pub bytes_from_cache: u64,
    /// Bytes read from the backend.
    pub bytes_from_backend: u64,
    /// `stat`/`exists` calls answered from the metadata cache.
    pub metadata_hits: u64,
    /// `stat`/`exists` calls that went to the backend.
    pub metadata_misses: u64,
    /// Files written (`write`, closed writers, dataset stores).
    pub writes: u64,
    /// Bytes written by callers.
    pub bytes_written: u64,
    /// Dirty files written to the backend by write-back.
    pub flushes: u64,
    /// Bytes those flushes wrote.
    pub flushed_bytes: u64,
    /// Failed flush attempts (the data stayed dirty and is retried).
    pub flush_errors: u64,
    /// Times a writer waited because dirty bytes had reached `max_dirty_bytes`.
    pub backpressure_waits: u64,
    /// Files not yet written to the backend.
    pub dirty_entries: u64,
    /// Bytes not yet written to the backend.
    pub dirty_bytes: u64,
    /// Cache entries dropped by `invalidate*` and `clear`.
    pub invalidated: u64,
    /// Files removed by `remove`/`remove_all`.
    pub removed: u64,
    /// Files loaded by `warm*`/`prefetch`.
    pub warmed: u64,
    /// Files a low-priority warm skipped for lack of free space.
    pub warm_skipped: u64,
    /// Writers dropped without `close` or `abort`: what they held was discarded.
    pub abandoned_writers: u64,
    /// The file-content cache underneath (whole files and chunks; weights are bytes).
    pub data: CacheStats,
    /// Files whose metadata is cached (some may have expired).
    pub metadata_entries: u64,
    /// Latency of `read`, `write` and `flush`, when latency recording is on.
    pub latency: Vec<LatencySummary>,
}

/// Gauges and engine stats the counters do not hold.
pub(crate) struct Gauges {
    pub(crate) dirty_entries: u64,
    pub(crate) dirty_bytes: u64,
    pub(crate) data: CacheStats,
    pub(crate) metadata_entries: u64,
    pub(crate) latency: Vec<LatencySummary>,
}

impl Counters {
    pub(crate) fn report(&self, name: &str, g: Gauges) -> FsStats {
        let t = |c| self.total(c);
        FsStats {
            name: name.to_string(),
            read_hits: t(Count::ReadHit),
            read_misses: t(Count::ReadMiss),
            bytes_from_cache: t(Count::BytesFromCache),
            bytes_from_backend: t(Count::BytesFromBackend),
            metadata_hits: t(Count::MetadataHit),
            metadata_misses: t(Count::MetadataMiss),
            writes: t(Count::Write),
            bytes_written: t(Count::BytesWritten),
            flushes: t(Count::Flush),
            flushed_bytes: t(Count::FlushedBytes),
            flush_errors: t(Count::FlushError),
            backpressure_waits: t(Count::BackpressureWait),
            dirty_entries: g.dirty_entries,
            dirty_bytes: g.dirty_bytes,
            invalidated: t(Count::Invalidated),
            removed: t(Count::Removed),
            warmed: t(Count::Warmed),
            warm_skipped: t(Count::WarmSkipped),
            abandoned_writers: t(Count::AbandonedWriter),
            data: g.data,
            metadata_entries: g.metadata_entries,
            latency: g.latency,
        }
    }
}

impl FsStats {
    /// Fraction of reads answered from memory (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let total = self.read_hits + self.read_misses;
        if total == 0 { 0.0 } else { self.read_hits as f64 / total as f64 }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The report in the Prometheus text format: `cachefs_fs_*` families labelled `cache="<name>"`.
    pub fn to_prometheus(&self) -> String {
        let cache = prometheus::label(&self.name);
        let mut out = String::with_capacity(4096);
        for (name, help, value) in [
            ("cachefs_fs_read_hits_total", "Reads answered from memory.", self.read_hits),
            ("cachefs_fs_read_misses_total", "Reads that went to the backend.", self.read_misses),
            ("cachefs_fs_bytes_from_cache_total", "Bytes served from memory.", self.bytes_from_cache),
            ("cachefs_fs_bytes_from_backend_total", "Bytes read from the backend.", self.bytes_from_backend),
            ("cachefs_fs_metadata_hits_total", "Metadata lookups answered from memory.", self.metadata_hits),
            ("cachefs_fs_metadata_misses_total", "Metadata lookups that went to the backend.", self.metadata_misses),
            ("cachefs_fs_writes_total", "Files written by callers.", self.writes),
            ("cachefs_fs_bytes_written_total", "Bytes written by callers.", self.bytes_written),
            ("cachefs_fs_flushes_total", "Dirty files written to the backend.", self.flushes),
            ("cachefs_fs_flushed_bytes_total", "Bytes written to the backend by write-back.", self.flushed_bytes),
            ("cachefs_fs_flush_errors_total", "Failed flush attempts.", self.flush_errors),
            ("cachefs_fs_backpressure_waits_total", "Writes that waited for the flusher.", self.backpressure_waits),
            ("cachefs_fs_invalidated_total", "Cache entries dropped by invalidation.", self.invalidated),
            ("cachefs_fs_removed_total", "Files removed.", self.removed),
            ("cachefs_fs_warmed_total", "Files loaded by warming or prefetch.", self.warmed),
            ("cachefs_fs_warm_skipped_total", "Files a low-priority warm skipped.", self.warm_skipped),
            (
                "cachefs_fs_abandoned_writers_total",
                "Writers dropped without close (nothing stored).",
                self.abandoned_writers,
            ),
        ] {
            prometheus::single(&mut out, "counter", &cache, (name, help, value));
        }
        for (name, help, value) in [
            ("cachefs_fs_dirty_entries", "Files not yet written to the backend.", self.dirty_entries),
            ("cachefs_fs_dirty_bytes", "Bytes not yet written to the backend.", self.dirty_bytes),
            ("cachefs_fs_cached_bytes", "Bytes of file content held in the cache.", self.data.weighted_size),
            ("cachefs_fs_capacity_bytes", "Byte budget of the content cache.", self.data.capacity),
            ("cachefs_fs_cached_entries", "Files and chunks held in the cache.", self.data.entries),
            ("cachefs_fs_metadata_entries", "Files whose metadata is cached.", self.metadata_entries),
        ] {
            prometheus::single(&mut out, "gauge", &cache, (name, help, value));
        }
        prometheus::latency(&mut out, "cachefs_fs", &cache, &self.latency);
        out
    }
}
