//! What a ring handle counts, and its report: JSON and Prometheus text (and OpenTelemetry through
//! `cachefs::otel::register_ring`).
//!
//! Counters are striped by thread (`crate::stripe`) and only added to with relaxed atomics: they
//! report, they order nothing. The latest and flushed ids are read from the ring's control block when
//! a report is made, so a read-only handle reports the writer's progress.

use std::sync::Arc;

use serde::Serialize;

use super::header::Control;
use super::{Geometry, IoMode};
use crate::metrics::prometheus;
use crate::stripe::{StripedCounters, default_stripes};

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Read,
    Hit,
    Miss,
    CrcFailure,
    BytesRead,
    Write,
    BytesWritten,
    BytesStored,
    Flush,
    FlushError,
    PinWait,
    Retry,
}

const COUNTS: usize = 12;

/// A handle's counters and what its reports need besides them. Shared with exporters (`otel`), which
/// may outlive the handle: it holds no file descriptor and no lock, only the header page's mapping.
#[derive(Debug)]
pub(crate) struct Telemetry {
    striped: StripedCounters<COUNTS>,
    control: Arc<Control>,
    name: String,
    mode: IoMode,
    read_only: bool,
    geometry: Geometry,
    shards: u32,
}

impl Telemetry {
    pub(crate) fn new(
        name: String,
        control: Arc<Control>,
        mode: IoMode,
        read_only: bool,
        geometry: Geometry,
        shards: u32,
    ) -> Telemetry {
        Telemetry { striped: StripedCounters::new(default_stripes()), control, name, mode, read_only, geometry, shards }
    }

    #[inline]
    pub(crate) fn add(&self, count: Count, n: u64) {
        self.striped.add(count as usize, n);
    }

    /// A report of everything counted so far.
    pub(crate) fn report(&self) -> RingStats {
        let t = self.striped.totals();
        let at = |c: Count| t[c as usize];
        let latest = |v: u64| v.checked_sub(1);
        RingStats {
            name: self.name.clone(),
            mode: self.mode,
            read_only: self.read_only,
            geometry: self.geometry,
            shards: self.shards,
            latest_id: latest(self.control.published()),
            flushed_id: latest(self.control.flushed()),
            reads: at(Count::Read),
            hits: at(Count::Hit),
            misses: at(Count::Miss),
            crc_failures: at(Count::CrcFailure),
            bytes_read: at(Count::BytesRead),
            writes: at(Count::Write),
            bytes_written: at(Count::BytesWritten),
            bytes_stored: at(Count::BytesStored),
            flushes: at(Count::Flush),
            flush_errors: at(Count::FlushError),
            pin_waits: at(Count::PinWait),
            retries: at(Count::Retry),
        }
    }
}

/// A point-in-time report of a [`RingBuffer`](super::RingBuffer) handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RingStats {
    /// The name given in the options (the `cache` label).
    pub name: String,
    /// This handle's I/O mode.
    pub mode: IoMode,
    /// Whether this handle was opened read-only.
    pub read_only: bool,
    /// The ring's geometry.
    pub geometry: Geometry,
    /// Shard files.
    pub shards: u32,
    /// The latest id published by the writer (`None`: nothing written yet).
    pub latest_id: Option<u64>,
    /// The latest id the writer has made durable, as of its last flush.
    pub flushed_id: Option<u64>,
    /// Records asked for (`read`, `get`, each id of `read_many`).
    pub reads: u64,
    /// Records served.
    pub hits: u64,
    /// Records not in the ring (never written, not yet written, overwritten, or too far ahead).
    pub misses: u64,
    /// Records refused because their frame failed its checks (torn or damaged).
    pub crc_failures: u64,
    /// Payload bytes served.
    pub bytes_read: u64,
    /// Records written.
    pub writes: u64,
    /// Payload bytes written, before compression.
    pub bytes_written: u64,
    /// Payload bytes stored, after compression.
    pub bytes_stored: u64,
    /// Flushes that made records durable.
    pub flushes: u64,
    /// Flushes that failed (the records stay pending and are retried by the next flush).
    pub flush_errors: u64,
    /// Writes that had to wait for a reader's guard on the slot they overwrite.
    pub pin_waits: u64,
    /// Copies read again because the writer changed the ring during the copy (read-only handles).
    pub retries: u64,
}

impl RingStats {
    /// Fraction of reads served (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        if self.reads == 0 { 0.0 } else { self.hits as f64 / self.reads as f64 }
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The report in the Prometheus text format: `cachefs_ring_*` families labelled `cache="<name>"`.
    /// The latest and flushed ids are present once there is one.
    pub fn to_prometheus(&self) -> String {
        let cache = prometheus::label(&self.name);
        let mut out = String::with_capacity(2048);
        for (name, help, value) in [
            ("cachefs_ring_reads_total", "Records asked for.", self.reads),
            ("cachefs_ring_hits_total", "Records served.", self.hits),
            ("cachefs_ring_misses_total", "Records not in the ring.", self.misses),
            ("cachefs_ring_crc_failures_total", "Records refused as torn or damaged.", self.crc_failures),
            ("cachefs_ring_read_bytes_total", "Payload bytes served.", self.bytes_read),
            ("cachefs_ring_writes_total", "Records written.", self.writes),
            ("cachefs_ring_written_bytes_total", "Payload bytes written, before compression.", self.bytes_written),
            ("cachefs_ring_stored_bytes_total", "Payload bytes stored, after compression.", self.bytes_stored),
            ("cachefs_ring_flushes_total", "Flushes that made records durable.", self.flushes),
            ("cachefs_ring_flush_errors_total", "Flushes that failed.", self.flush_errors),
            ("cachefs_ring_pin_waits_total", "Writes that waited for a reader's guard.", self.pin_waits),
            ("cachefs_ring_retries_total", "Copies retried because the writer changed the ring.", self.retries),
        ] {
            prometheus::single(&mut out, "counter", &cache, (name, help, value));
        }
        let g = &self.geometry;
        let mut gauges = vec![
            ("cachefs_ring_records", "Slots in the ring.", g.records),
            ("cachefs_ring_record_size_bytes", "Bytes per slot, frame header included.", u64::from(g.record_size)),
            ("cachefs_ring_shards", "Shard files.", u64::from(self.shards)),
        ];
        if let Some(id) = self.latest_id {
            gauges.push(("cachefs_ring_latest_id", "The latest id published by the writer.", id));
        }
        if let Some(id) = self.flushed_id {
            gauges.push(("cachefs_ring_flushed_id", "The latest id made durable.", id));
        }
        for family in gauges {
            prometheus::single(&mut out, "gauge", &cache, family);
        }
        out
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn stats() -> RingStats {
        RingStats {
            name: "ticks \"a\"".into(),
            mode: IoMode::Pread,
            read_only: false,
            geometry: Geometry { records: 8, record_size: 64, shard_bytes: 1 << 20 },
            shards: 1,
            latest_id: Some(41),
            flushed_id: None,
            reads: 5,
            hits: 3,
            misses: 1,
            crc_failures: 1,
            bytes_read: 30,
            writes: 42,
            bytes_written: 420,
            bytes_stored: 400,
            flushes: 2,
            flush_errors: 0,
            pin_waits: 0,
            retries: 0,
        }
    }

    #[test]
    fn json_and_prometheus_carry_every_counter() {
        let s = stats();
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!((v["hits"].as_u64(), v["mode"].as_str(), v["flushed_id"].is_null()), (Some(3), Some("pread"), true));
        assert_eq!(v["geometry"]["records"], 8);
        let text = s.to_prometheus();
        assert!(text.contains("cachefs_ring_crc_failures_total{cache=\"ticks \\\"a\\\"\"} 1"), "{text}");
        assert!(text.contains("cachefs_ring_latest_id{cache="));
        assert!(!text.contains("cachefs_ring_flushed_id"), "no flushed id yet");
        assert!((s.hit_rate() - 0.6).abs() < 1e-12);
    }
}
