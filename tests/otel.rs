//! OpenTelemetry export: after a known workload, the values an in-memory exporter receives equal the
//! cache's own snapshot. Built with `--features otel` (the test command builds with all features).
#![cfg(feature = "otel")]

use std::collections::HashMap;

use cachefs::{Cache, LatencyConfig, RemovalCause};
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

/// (metric name, sorted attributes "k=v,...") -> value, from everything the exporter holds.
fn exported(exporter: &InMemoryMetricExporter) -> HashMap<(String, String), f64> {
    let mut out = HashMap::new();
    for rm in exporter.get_finished_metrics().expect("metrics") {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let mut put = |attrs: Vec<String>, v: f64| {
                    let mut attrs = attrs;
                    attrs.sort();
                    out.insert((m.name().to_string(), attrs.join(",")), v);
                };
                let kv = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                    it.map(|kv| format!("{}={}", kv.key, kv.value)).collect::<Vec<_>>()
                };
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        s.data_points().for_each(|p| put(kv(&mut p.attributes()), p.value() as f64))
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                        g.data_points().for_each(|p| put(kv(&mut p.attributes()), p.value() as f64))
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        g.data_points().for_each(|p| put(kv(&mut p.attributes()), p.value()))
                    }
                    other => panic!("unexpected data for {}: {other:?}", m.name()),
                }
            }
        }
    }
    out
}

#[test]
fn exported_values_equal_the_snapshot() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    let meter = provider.meter("cachefs-test");
    let cache: Cache<u32, u32> =
        Cache::builder().name("otel").max_capacity(4).shards(1).latency(LatencyConfig { sample_every: 1 }).build();
    let _registration = cachefs::otel::register(&meter, &cache);

    for k in 0..10 {
        cache.insert(k, k);
        cache.get(&k);
        cache.get(&(k + 100));
    }
    cache.insert(9, 90);
    cache.remove(&9);
    cache.get_with(50, || 5);
    let _ = cache.try_get_with(51, || Err::<u32, ()>(()));

    provider.force_flush().expect("flush");
    let m = cache.metrics();
    let s = &m.stats;
    let got = exported(&exporter);
    let get = |name: &str, attrs: &str| -> f64 {
        *got.get(&(name.to_string(), attrs.to_string()))
            .unwrap_or_else(|| panic!("{name} {{{attrs}}} missing: {got:?}"))
    };
    let c = "cache=otel";
    assert_eq!(get("cachefs.cache.hits", c), s.hits as f64);
    assert_eq!(get("cachefs.cache.misses", c), s.misses as f64);
    assert_eq!(get("cachefs.cache.inserts", c), s.inserts as f64);
    assert_eq!(get("cachefs.cache.updates", c), s.updates as f64);
    assert_eq!(get("cachefs.cache.rejections", c), s.rejections as f64);
    assert_eq!(get("cachefs.cache.loads", "cache=otel,result=ok"), s.loads_ok as f64);
    assert_eq!(get("cachefs.cache.loads", "cache=otel,result=failed"), s.loads_failed as f64);
    assert_eq!(get("cachefs.cache.removals", "cache=otel,cause=capacity"), s.removed(RemovalCause::Capacity) as f64);
    assert_eq!(get("cachefs.cache.removals", "cache=otel,cause=removed"), s.removed(RemovalCause::Removed) as f64);
    assert_eq!(get("cachefs.cache.removals", "cache=otel,cause=replaced"), s.removed(RemovalCause::Replaced) as f64);
    assert_eq!(get("cachefs.cache.entries", c), s.entries as f64);
    assert_eq!(get("cachefs.cache.weighted_size", c), s.weighted_size as f64);
    assert_eq!(get("cachefs.cache.capacity", c), 4.0);
    let hit = m.latency.iter().find(|l| l.op == "get_hit").expect("get_hit latency");
    let p99 = get("cachefs.cache.operation.duration", "cache=otel,op=get_hit,quantile=0.99");
    assert!((p99 - hit.p99_ns as f64 / 1e9).abs() < 1e-12, "p99 {p99}");
    // The workload's known shape, so that the equalities above are not of zeros.
    assert_eq!((s.hits, s.misses, s.loads_ok, s.loads_failed, s.removed(RemovalCause::Removed)), (10, 12, 1, 1, 1));
    provider.shutdown().expect("shutdown");
}

#[test]
fn cachefs_exported_values_equal_its_stats() {
    use cachefs::fs::{CacheFs, MemBackend, WriteMode};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder().with_reader(PeriodicReader::builder(exporter.clone()).build()).build();
    let meter = provider.meter("cachefs-test");
    let fs = CacheFs::builder(MemBackend::new())
        .name("files")
        .write_mode(WriteMode::WriteBack { delay: std::time::Duration::from_secs(3600), max_dirty_bytes: 1 << 20 })
        .latency(LatencyConfig { sample_every: 1 })
        .build();
    let _registration = cachefs::otel::register_fs(&meter, &fs);
    fs.write("a", vec![1; 100]).unwrap();
    fs.write("b", vec![2; 50]).unwrap();
    fs.read("a").unwrap();
    fs.stat("a").unwrap();
    fs.flush().unwrap();
    fs.write("c", vec![3; 10]).unwrap();

    provider.force_flush().expect("flush");
    let s = fs.stats();
    let got = exported(&exporter);
    let get = |name: &str| -> f64 {
        *got.get(&(name.to_string(), "cache=files".to_string())).unwrap_or_else(|| panic!("{name} missing: {got:?}"))
    };
    assert_eq!(get("cachefs.fs.read_hits"), s.read_hits as f64);
    assert_eq!(get("cachefs.fs.writes"), 3.0);
    assert_eq!(get("cachefs.fs.bytes_written"), 160.0);
    assert_eq!(get("cachefs.fs.flushes"), 2.0);
    assert_eq!(get("cachefs.fs.flushed_bytes"), 150.0);
    assert_eq!(get("cachefs.fs.dirty_entries"), 1.0);
    assert_eq!(get("cachefs.fs.dirty_bytes"), 10.0);
    assert_eq!(get("cachefs.fs.metadata_hits"), s.metadata_hits as f64);
    assert_eq!(get("cachefs.fs.capacity_bytes"), s.data.capacity as f64);
    let flush = s.latency.iter().find(|l| l.op == "flush").expect("flush latency");
    let p50 = *got
        .get(&("cachefs.fs.operation.duration".to_string(), "cache=files,op=flush,quantile=0.5".to_string()))
        .expect("flush latency exported");
    assert!((p50 - flush.p50_ns as f64 / 1e9).abs() < 1e-12);
    assert_eq!((s.read_hits, s.metadata_hits), (1, 1));
    provider.shutdown().expect("shutdown");
}
