//! The tiered store's metrics: the snapshot counts a known workload, the Prometheus text passes
//! `promtool check metrics`, the JSON parses and agrees, and (with `otel`) an in-memory OpenTelemetry
//! exporter receives the same values.
#![cfg(feature = "tier")]

mod tier_support;

use std::io::Write;
use std::process::{Command, Stdio};

use cachefs::tier::{BreakerState, Digest, DirOrigin, TieredStore};
use tier_support::{bytes, put_origin};

/// A store after a known workload: 2 origin fills, 3 disk hits, 1 failed fill, 1 eviction.
fn worked() -> (TieredStore, tempfile::TempDir, tempfile::TempDir) {
    let (origin, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put_origin(origin.path(), &bytes(1, 10_000));
    let b = put_origin(origin.path(), &bytes(2, 20_000));
    let store = TieredStore::builder()
        .name("layers \"prod\"")
        .disk_dir(disk.path())
        .disk_max_bytes(25_000)
        .origin(DirOrigin::new(origin.path()))
        .build()
        .unwrap();
    let mut buf = [0u8; 100];
    store.read_at(&a, 0, &mut buf).unwrap();
    store.read_at(&a, 100, &mut buf).unwrap();
    store.read_at(&b, 0, &mut buf).unwrap(); // 30k > 25k: a is evicted
    store.read_at(&b, 0, &mut buf).unwrap();
    store.read_at(&b, 19_950, &mut buf).unwrap();
    assert!(store.fill(&Digest::of(b"absent")).is_err());
    (store, origin, disk)
}

#[test]
fn the_snapshot_counts_the_workload() {
    let (store, _o, _d) = worked();
    let s = store.stats();
    assert_eq!((s.origin_fetches, s.fills, s.disk_hits, s.fill_errors, s.origin_errors), (3, 2, 3, 1, 1), "{s:?}");
    assert_eq!((s.origin_bytes, s.bytes_read), (30_000, 450));
    assert_eq!((s.evictions, s.evicted_bytes, s.disk_blobs, s.disk_bytes), (1, 10_000, 1, 20_000));
    assert_eq!((s.breaker, s.upload_queue, s.open_blobs, s.disk_max_bytes), (BreakerState::Closed, 0, 0, 25_000));
    let fills = s.latency.iter().find(|l| l.op == "fill_origin").unwrap();
    assert_eq!(fills.count, 2);
    assert!(fills.p50_ns > 0 && fills.p50_ns <= fills.max_ns);
}

#[test]
fn json_parses_and_agrees() {
    let (store, _o, _d) = worked();
    let s = store.stats();
    let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(v["name"], "layers \"prod\"");
    assert_eq!(v["origin_fetches"], 3);
    assert_eq!(v["breaker"], "closed");
    assert_eq!(v["latency"][1]["op"], "fill_origin");
}

#[test]
fn prometheus_text_passes_promtool() {
    let (store, _o, _d) = worked();
    let text = store.stats().to_prometheus();
    assert!(text.contains("cachefs_tier_origin_fetches_total{cache=\"layers \\\"prod\\\"\"} 3"), "{text}");
    assert!(text.contains("cachefs_tier_breaker_state{cache="));
    assert!(text.contains("cachefs_tier_operation_duration_seconds{cache="));
    let promtool = tier_support::require("promtool", "prometheus");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && complaints.trim().is_empty(), "promtool: {complaints}\n---\n{text}");
}

#[cfg(feature = "otel")]
#[test]
fn opentelemetry_receives_the_same_values() {
    use opentelemetry::metrics::MeterProvider;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    let (store, _o, _d) = worked();
    let _registration = cachefs::otel::register_tier(&provider.meter("tier-test"), &store);
    provider.force_flush().unwrap();
    let s = store.stats();
    let mut got = std::collections::HashMap::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let value = match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(x)) => x.data_points().next().map(|p| p.value() as f64),
                    AggregatedMetrics::U64(MetricData::Gauge(x)) => x.data_points().next().map(|p| p.value() as f64),
                    AggregatedMetrics::F64(MetricData::Gauge(x)) => x.data_points().next().map(|p| p.value()),
                    _ => None,
                };
                if let Some(v) = value {
                    got.insert(m.name().to_string(), v);
                }
            }
        }
    }
    let get = |n: &str| *got.get(n).unwrap_or_else(|| panic!("{n} missing: {got:?}"));
    assert_eq!(get("cachefs.tier.origin_fetches"), s.origin_fetches as f64);
    assert_eq!(get("cachefs.tier.disk_hits"), s.disk_hits as f64);
    assert_eq!(get("cachefs.tier.evicted_bytes"), s.evicted_bytes as f64);
    assert_eq!(get("cachefs.tier.disk_bytes"), s.disk_bytes as f64);
    assert_eq!(get("cachefs.tier.breaker_state"), 0.0);
    assert!(got.contains_key("cachefs.tier.operation.duration"));
    assert_eq!(s.origin_fetches, 3, "the values compared are not zeros");
    drop(store);
    provider.force_flush().unwrap(); // a dropped store reports nothing, and nothing panics
    provider.shutdown().unwrap();
}
