//! The ring's statistics through the crate's metrics machinery: after a known workload the snapshot
//! counts exactly what happened, its Prometheus text passes `promtool check metrics`, its JSON agrees,
//! and (feature `otel`) an in-memory OpenTelemetry exporter receives the same values.
#![cfg(feature = "ring")]

mod common;
mod ring_common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use cachefs::ring::{Compression, IoMode, RingBuffer, RingOptions, RingStats};

/// A ring after a known workload: 10 writes (3 bytes each), 4 hits, 3 misses (one too far ahead), one
/// corrupt record, one flush. Returns the ring and its directory.
fn worked(mode: IoMode) -> (RingBuffer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let opts =
        RingOptions { mode, name: "ticks \"eu\"".into(), compression: Compression::None, ..RingOptions::new(8, 64) };
    let ring = RingBuffer::open(&path, opts).unwrap();
    for id in 0..10u64 {
        ring.write(id, b"abc").unwrap();
    }
    ring.flush().unwrap();
    let mut buf = Vec::new();
    for id in [9, 8, 7] {
        ring.read(id, &mut buf).unwrap();
    }
    assert_eq!(&*ring.get(6).unwrap(), b"abc");
    assert!(ring.read(0, &mut buf).is_err()); // overwritten
    assert!(ring.read(12, &mut buf).is_err()); // not yet written
    assert!(ring.read(100, &mut buf).is_err()); // too far ahead
    // Damage record 5 under the open ring (its slot is 5 in a one-shard ring of 64-byte slots).
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xFF], 4096 + 5 * 64 + 25).unwrap(); // a payload byte
    assert!(ring.read(5, &mut buf).is_err());
    (ring, dir)
}

fn check_counts(s: &RingStats) {
    assert_eq!((s.writes, s.bytes_written, s.bytes_stored, s.flushes), (10, 30, 30, 1));
    assert_eq!((s.reads, s.hits, s.misses, s.crc_failures, s.bytes_read), (8, 4, 3, 1, 12));
    assert_eq!((s.latest_id, s.flushed_id), (Some(9), Some(9)));
    assert_eq!((s.geometry.records, s.geometry.record_size, s.shards), (8, 64, 1));
}

/// Runs `promtool check metrics` on `text` and fails the test on any complaint.
fn promtool_accepts(text: &str) {
    let promtool = common::require("promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let complaints = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && complaints.trim().is_empty(), "promtool: {complaints}\n---\n{text}");
}

#[test]
fn stats_count_the_workload_and_export_as_prometheus_and_json() {
    for mode in ring_common::MODES {
        let (ring, _dir) = worked(mode);
        let s = ring.stats();
        check_counts(&s);
        assert_eq!(s.mode, mode);
        let text = s.to_prometheus();
        assert!(text.contains("cachefs_ring_crc_failures_total{cache=\"ticks \\\"eu\\\"\"} 1"), "{text}");
        assert!(text.contains("cachefs_ring_latest_id{cache=\"ticks \\\"eu\\\"\"} 9"), "{text}");
        promtool_accepts(&text);
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(
            (v["hits"].as_u64(), v["crc_failures"].as_u64(), v["latest_id"].as_u64()),
            (Some(4), Some(1), Some(9))
        );
        assert_eq!(v["mode"], mode.name());
        // A fresh ring has no latest id: the gauge is absent and the text still valid.
        let dir = tempfile::tempdir().unwrap();
        let empty = RingBuffer::open(dir.path().join("e.ring"), RingOptions::new(4, 64)).unwrap();
        let text = empty.stats().to_prometheus();
        assert!(!text.contains("latest_id"));
        promtool_accepts(&text);
    }
}

#[cfg(feature = "otel")]
#[test]
fn opentelemetry_receives_the_same_values() {
    use std::collections::HashMap;

    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    let (ring, _dir) = worked(IoMode::Mmap);
    let _registration = cachefs::otel::register_ring(&provider.meter("ring-test"), &ring);
    provider.force_flush().expect("flush");
    let mut got: HashMap<String, u64> = HashMap::new();
    for rm in exporter.get_finished_metrics().expect("metrics") {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let mut put = |attrs: Vec<String>, v: u64| {
                    assert_eq!(attrs, ["cache=ticks \"eu\""], "{}", m.name());
                    got.insert(m.name().to_string(), v);
                };
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => s.data_points().for_each(|p| {
                        put(p.attributes().map(|kv| format!("{}={}", kv.key, kv.value)).collect(), p.value())
                    }),
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => g.data_points().for_each(|p| {
                        put(p.attributes().map(|kv| format!("{}={}", kv.key, kv.value)).collect(), p.value())
                    }),
                    other => panic!("unexpected data for {}: {other:?}", m.name()),
                }
            }
        }
    }
    let s = ring.stats();
    check_counts(&s);
    for (name, want) in [
        ("cachefs.ring.reads", s.reads),
        ("cachefs.ring.hits", s.hits),
        ("cachefs.ring.misses", s.misses),
        ("cachefs.ring.crc_failures", s.crc_failures),
        ("cachefs.ring.read_bytes", s.bytes_read),
        ("cachefs.ring.writes", s.writes),
        ("cachefs.ring.written_bytes", s.bytes_written),
        ("cachefs.ring.flushes", s.flushes),
        ("cachefs.ring.records", 8),
        ("cachefs.ring.record_size", 64),
        ("cachefs.ring.latest_id", 9),
        ("cachefs.ring.flushed_id", 9),
    ] {
        assert_eq!(got.get(name), Some(&want), "{name}: {got:?}");
    }
    provider.shutdown().expect("shutdown");
}
