//! Metrics export: the Prometheus text passes `promtool check metrics`, the JSON parses and agrees with
//! the counters, and latency is recorded for every operation kind.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use cachefs::{Cache, LatencyConfig, ManualClock, RemovalCause};

/// A cache after a known workload: 3 hits, 4 misses, 7 inserts, 1 update, 1 removal, 1 invalidation,
/// 1 expiry, 1 capacity eviction, 1 successful and 1 failed load.
fn worked_cache() -> Cache<u32, u32> {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .name("worked \"cache\"")
        .max_capacity(3)
        .shards(1)
        .clock(clock.clone())
        .latency(LatencyConfig { sample_every: 1 })
        .build();
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.insert(1, 10);
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.get(&2), Some(2));
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.get(&9), None);
    cache.remove(&2);
    cache.insert_with_ttl(3, 3, Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&3), None);
    cache.invalidate(&1);
    assert_eq!(cache.get_with(4, || 4), 4);
    assert_eq!(cache.try_get_with(5, || Err::<u32, _>("no")), Err("no"));
    for k in 10..13 {
        cache.insert(k, k);
    }
    cache
}

#[test]
fn snapshot_counts_the_workload() {
    let cache = worked_cache();
    let m = cache.metrics();
    let s = &m.stats;
    assert_eq!((s.hits, s.misses), (3, 4), "get_with and try_get_with miss too");
    assert_eq!((s.inserts, s.updates, s.loads_ok, s.loads_failed), (7, 1, 1, 1));
    for cause in [RemovalCause::Replaced, RemovalCause::Removed, RemovalCause::Expired, RemovalCause::Invalidated] {
        assert_eq!(s.removed(cause), 1, "{cause:?}");
    }
    assert!(s.removed(RemovalCause::Capacity) >= 1);
    assert_eq!((s.entries, s.capacity, m.policy.as_str()), (3, 3, "hybrid"));
    let ops: Vec<(&str, u64)> = m.latency.iter().map(|l| (l.op.as_str(), l.count)).collect();
    assert_eq!(ops, vec![("get_hit", 3), ("get_miss", 4), ("insert", 8), ("load", 2)]);
    assert!(m.latency.iter().all(|l| l.count == 0 || (l.p50_ns <= l.p99_ns && l.p99_ns <= l.max_ns)));
    cache.reset_latency();
    assert!(cache.metrics().latency.iter().all(|l| l.count == 0));
    assert!(cache.latency_heap_bytes() > 0);
}

#[test]
fn json_parses_and_agrees() {
    let m = worked_cache().metrics();
    let v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("valid JSON");
    assert_eq!(v["cache"], "worked \"cache\"");
    assert_eq!(v["hits"], m.stats.hits);
    assert_eq!(v["removals"]["expired"], 1);
    assert_eq!(v["removals"]["replaced"], 1);
    assert_eq!(v["policy"], "hybrid");
    assert_eq!(v["latency"][0]["op"], "get_hit");
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
fn prometheus_text_passes_promtool() {
    for cache in [worked_cache(), Cache::builder().name("plain").build()] {
        promtool_accepts(&cache.metrics().to_prometheus());
    }
}

#[test]
fn cachefs_stats_pass_promtool() {
    use cachefs::fs::{CacheFs, MemBackend, WriteMode};
    let fs = CacheFs::builder(MemBackend::new())
        .name("files")
        .write_mode(WriteMode::write_back())
        .latency(cachefs::LatencyConfig { sample_every: 1 })
        .build();
    fs.write("a", vec![1; 100]).unwrap();
    fs.read("a").unwrap();
    fs.flush().unwrap();
    let stats = fs.stats();
    let ops: Vec<&str> = stats.latency.iter().filter(|l| l.count > 0).map(|l| l.op.as_str()).collect();
    assert_eq!(ops, ["read", "write", "flush"]);
    let text = stats.to_prometheus();
    assert!(text.contains("cachefs_fs_operation_duration_seconds_count{cache=\"files\",op=\"flush\"} 1"), "{text}");
    promtool_accepts(&text);
}
