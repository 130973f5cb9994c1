//! What a [`TieredStore`](super::TieredStore) counts, and its report: JSON and Prometheus text.
//!
//! Counters are striped by thread and added to with relaxed atomics (`crate::stripe`): they report,
//! they order nothing. Gauges (blobs and bytes on disk, open blobs, queued uploads, the breaker) are
//! read from the parts that own them when a report is made. Fill latency is recorded for every fill
//! (fills are rare next to reads) in the crate's HDR recorder.

use serde::Serialize;

use super::BreakerState;
use crate::latency::LatencySummary;
use crate::metrics::prometheus;
use crate::stripe::{StripedCounters, default_stripes};

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    DiskHit,
    BytesRead,
    RemoteHit,
    RemoteBytes,
    RemoteMiss,
    RemoteError,
    RemoteInvalid,
    RemoteSkipped,
    OriginFetch,
    OriginBytes,
    OriginError,
    Fill,
    FillError,
    Verified,
    Corrupt,
    Eviction,
    EvictedBytes,
    Upload,
    UploadBytes,
    UploadError,
    UploadDropped,
    BreakerOpened,
}

const COUNTS: usize = 22;

/// Latency operations recorded.
pub(crate) const OPS: &[&str] = &["fill_remote", "fill_origin"];

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
}

/// A point-in-time report of a [`TieredStore`](super::TieredStore).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    /// The name given to the builder (the `cache` label).
    pub name: String,
    /// Reads and opens answered from the disk tier without filling (a thread that waited for another
    /// thread's fill of the same blob counts here too).
    pub disk_hits: u64,
    /// Bytes handed to readers (`read_at` and handle reads; all come from the disk tier).
    pub bytes_read: u64,
    /// Fills served by the remote tier.
    pub remote_hits: u64,
    /// Bytes filled from the remote tier.
    pub remote_bytes: u64,
    /// Remote lookups that found nothing.
    pub remote_misses: u64,
    /// Remote calls that failed (connection, time budget, protocol, an error reply such as `-ERR` or
    /// `-NOAUTH`): each also counts towards the breaker.
    pub remote_errors: u64,
    /// Remote copies found incomplete or wrong (bad manifest, missing or short chunk, a key of the wrong
    /// type, digest mismatch): treated as absent; the server itself is fine.
    pub remote_invalid: u64,
    /// Remote calls skipped because the breaker was open.
    pub remote_skipped: u64,
    /// Fetches from the origin (successful or not).
    pub origin_fetches: u64,
    /// Bytes received from the origin (compressed, for a gzip origin).
    pub origin_bytes: u64,
    /// Origin fetches that failed (including digest mismatches).
    pub origin_errors: u64,
    /// Blobs written to the disk tier (from either tier).
    pub fills: u64,
    /// Fills that failed.
    pub fill_errors: u64,
    /// Blobs on disk hashed again (after a restart, or by `verify`) and found good.
    pub verified: u64,
    /// Blobs on disk found corrupt when verified: deleted, never served.
    pub corrupt: u64,
    /// Blobs evicted from the disk tier (LRU, or `evict`).
    pub evictions: u64,
    /// Bytes those evictions freed.
    pub evicted_bytes: u64,
    /// Blobs uploaded to the remote tier.
    pub uploads: u64,
    /// Bytes uploaded.
    pub upload_bytes: u64,
    /// Uploads that failed.
    pub upload_errors: u64,
    /// Uploads dropped: the queue was full, or the breaker was open.
    pub uploads_dropped: u64,
    /// Uploads waiting in the queue now.
    pub upload_queue: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// The breaker now (`closed` when there is no remote tier).
    pub breaker: BreakerState,
    /// Blobs on disk now.
    pub disk_blobs: u64,
    /// Bytes of blobs on disk now.
    pub disk_bytes: u64,
    /// The disk bound.
    pub disk_max_bytes: u64,
    /// Blobs open now (handles, reads in progress).
    pub open_blobs: u64,
    /// Fill latency: `fill_remote` and `fill_origin`, every fill recorded.
    pub latency: Vec<LatencySummary>,
}

/// Gauges the counters do not hold.
pub(crate) struct Gauges {
    pub(crate) upload_queue: u64,
    pub(crate) breaker: BreakerState,
    pub(crate) disk_blobs: u64,
    pub(crate) disk_bytes: u64,
    pub(crate) disk_max_bytes: u64,
    pub(crate) open_blobs: u64,
    pub(crate) latency: Vec<LatencySummary>,
}

impl Counters {
    pub(crate) fn report(&self, name: &str, g: Gauges) -> TierStats {
        let t = self.striped.totals();
        let c = |count: Count| t[count as usize];
        TierStats {
            name: name.to_string(),
            disk_hits: c(Count::DiskHit),
            bytes_read: c(Count::BytesRead),
            remote_hits: c(Count::RemoteHit),
            remote_bytes: c(Count::RemoteBytes),
            remote_misses: c(Count::RemoteMiss),
            remote_errors: c(Count::RemoteError),
            remote_invalid: c(Count::RemoteInvalid),
            remote_skipped: c(Count::RemoteSkipped),
            origin_fetches: c(Count::OriginFetch),
            origin_bytes: c(Count::OriginBytes),
            origin_errors: c(Count::OriginError),
            fills: c(Count::Fill),
            fill_errors: c(Count::FillError),
            verified: c(Count::Verified),
            corrupt: c(Count::Corrupt),
            evictions: c(Count::Eviction),
            evicted_bytes: c(Count::EvictedBytes),
            uploads: c(Count::Upload),
            upload_bytes: c(Count::UploadBytes),
            upload_errors: c(Count::UploadError),
            uploads_dropped: c(Count::UploadDropped),
            upload_queue: g.upload_queue,
            breaker_opened: c(Count::BreakerOpened),
            breaker: g.breaker,
            disk_blobs: g.disk_blobs,
            disk_bytes: g.disk_bytes,
            disk_max_bytes: g.disk_max_bytes,
            open_blobs: g.open_blobs,
            latency: g.latency,
        }
    }
}

impl TierStats {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The report in the Prometheus text format: `cachefs_tier_*` families labelled `cache="<name>"`.
    pub fn to_prometheus(&self) -> String {
        let cache = prometheus::label(&self.name);
        let mut out = String::with_capacity(4096);
        for (name, help, value) in [
            ("cachefs_tier_disk_hits_total", "Reads answered from the disk tier without a fill.", self.disk_hits),
            ("cachefs_tier_bytes_read_total", "Bytes handed to readers.", self.bytes_read),
            ("cachefs_tier_remote_hits_total", "Fills served by the remote tier.", self.remote_hits),
            ("cachefs_tier_remote_bytes_total", "Bytes filled from the remote tier.", self.remote_bytes),
            ("cachefs_tier_remote_misses_total", "Remote lookups that found nothing.", self.remote_misses),
            ("cachefs_tier_remote_errors_total", "Remote calls that failed.", self.remote_errors),
            ("cachefs_tier_remote_invalid_total", "Remote copies found incomplete or wrong.", self.remote_invalid),
            ("cachefs_tier_remote_skipped_total", "Remote calls skipped by the open breaker.", self.remote_skipped),
            ("cachefs_tier_origin_fetches_total", "Fetches from the origin.", self.origin_fetches),
            ("cachefs_tier_origin_bytes_total", "Bytes received from the origin.", self.origin_bytes),
            ("cachefs_tier_origin_errors_total", "Origin fetches that failed.", self.origin_errors),
            ("cachefs_tier_fills_total", "Blobs written to the disk tier.", self.fills),
            ("cachefs_tier_fill_errors_total", "Fills that failed.", self.fill_errors),
            ("cachefs_tier_verified_total", "Blobs on disk re-verified and found good.", self.verified),
            ("cachefs_tier_corrupt_total", "Blobs on disk found corrupt and deleted.", self.corrupt),
            ("cachefs_tier_evictions_total", "Blobs evicted from the disk tier.", self.evictions),
            ("cachefs_tier_evicted_bytes_total", "Bytes freed by evictions.", self.evicted_bytes),
            ("cachefs_tier_uploads_total", "Blobs uploaded to the remote tier.", self.uploads),
            ("cachefs_tier_upload_bytes_total", "Bytes uploaded to the remote tier.", self.upload_bytes),
            ("cachefs_tier_upload_errors_total", "Uploads that failed.", self.upload_errors),
            ("cachefs_tier_uploads_dropped_total", "Uploads dropped (queue full, breaker open).", self.uploads_dropped),
            ("cachefs_tier_breaker_opened_total", "Times the remote tier's breaker opened.", self.breaker_opened),
        ] {
            prometheus::single(&mut out, "counter", &cache, (name, help, value));
        }
        for (name, help, value) in [
            ("cachefs_tier_upload_queue", "Uploads waiting in the queue.", self.upload_queue),
            (
                "cachefs_tier_breaker_state",
                "The remote tier's breaker: 0 closed, 1 open, 2 half-open.",
                self.breaker.code(),
            ),
            ("cachefs_tier_disk_blobs", "Blobs on the disk tier.", self.disk_blobs),
            ("cachefs_tier_disk_bytes", "Bytes of blobs on the disk tier.", self.disk_bytes),
            ("cachefs_tier_disk_max_bytes", "The disk tier's bound.", self.disk_max_bytes),
            ("cachefs_tier_open_blobs", "Blobs open now.", self.open_blobs),
        ] {
            prometheus::single(&mut out, "gauge", &cache, (name, help, value));
        }
        prometheus::latency(&mut out, "cachefs_tier", &cache, &self.latency);
        out
    }
}
