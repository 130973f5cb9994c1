//! The Prometheus text exposition format (0.0.4): `# HELP` and `# TYPE` for every family, `_total`
//! counters, base units (seconds), labels `cache`, `cause`, `op` and `quantile`.

use std::fmt::Write;

use super::snapshot::MetricsSnapshot;
use crate::RemovalCause;
use crate::latency::LatencySummary;

/// Escapes a label value: backslash, double quote and newline.
pub(crate) fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of `kind` with one sample labelled `cache` (already escaped).
pub(crate) fn single(out: &mut String, kind: &str, cache: &str, (name, help, value): (&str, &str, u64)) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name}{{cache=\"{cache}\"}} {value}");
}

pub(super) fn render(m: &MetricsSnapshot) -> String {
    let cache = label(&m.cache);
    let mut out = String::with_capacity(4096);
    family(&mut out, "cachefs_info", "gauge", "Cache identity: always 1, with the cache's policy as a label.");
    let _ = writeln!(out, "cachefs_info{{cache=\"{cache}\",policy=\"{}\"}} 1", label(&m.policy));
    let s = &m.stats;
    for (name, help, value) in [
        ("cachefs_hits_total", "Lookups that found a live entry.", s.hits),
        ("cachefs_misses_total", "Lookups that found no live entry.", s.misses),
        ("cachefs_inserts_total", "Entries stored under an absent key.", s.inserts),
        ("cachefs_updates_total", "Entries stored over a present key.", s.updates),
        ("cachefs_rejections_total", "Inserts refused because the entry outweighs its shard.", s.rejections),
        ("cachefs_loads_total", "Loader calls that produced a value.", s.loads_ok),
        ("cachefs_load_failures_total", "Loader calls that failed or panicked.", s.loads_failed),
    ] {
        single(&mut out, "counter", &cache, (name, help, value));
    }
    family(&mut out, "cachefs_removals_total", "counter", "Entries that left the cache, by cause.");
    for cause in RemovalCause::ALL {
        let (name, value) = (cause.name(), s.removed(cause));
        let _ = writeln!(out, "cachefs_removals_total{{cache=\"{cache}\",cause=\"{name}\"}} {value}");
    }
    for (name, help, value) in [
        ("cachefs_entries", "Entries held now.", s.entries),
        ("cachefs_weighted_size", "Sum of the weights of the entries held now.", s.weighted_size),
        ("cachefs_capacity", "Maximum weighted size.", s.capacity),
    ] {
        single(&mut out, "gauge", &cache, (name, help, value));
    }
    latency(&mut out, "cachefs", &cache, &m.latency);
    out
}

/// The latency families `{prefix}_operation_duration_seconds` (a summary) and `…_max_seconds` (a gauge);
/// nothing when `latency` is empty. `cache` is an escaped label value.
pub(crate) fn latency(out: &mut String, prefix: &str, cache: &str, latency: &[LatencySummary]) {
    if latency.is_empty() {
        return;
    }
    let name = format!("{prefix}_operation_duration_seconds");
    family(out, &name, "summary", "Latency of sampled operations, by operation.");
    for l in latency {
        let op = label(&l.op);
        for (q, ns) in [("0.5", l.p50_ns), ("0.95", l.p95_ns), ("0.99", l.p99_ns), ("0.999", l.p999_ns)] {
            let _ = writeln!(out, "{name}{{cache=\"{cache}\",op=\"{op}\",quantile=\"{q}\"}} {}", seconds(ns));
        }
        let sum = l.mean_ns * l.count as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{cache=\"{cache}\",op=\"{op}\"}} {sum:e}");
        let _ = writeln!(out, "{name}_count{{cache=\"{cache}\",op=\"{op}\"}} {}", l.count);
    }
    let name = format!("{prefix}_operation_duration_max_seconds");
    family(out, &name, "gauge", "Longest sampled operation, by operation.");
    for l in latency {
        let _ = writeln!(out, "{name}{{cache=\"{cache}\",op=\"{}\"}} {}", label(&l.op), seconds(l.max_ns));
    }
}

fn seconds(ns: u64) -> String {
    format!("{:e}", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CacheStats;

    fn snapshot(name: &str) -> MetricsSnapshot {
        let mut stats = CacheStats {
            hits: 3,
            misses: 1,
            inserts: 2,
            loads_ok: 1,
            entries: 2,
            weighted_size: 2,
            capacity: 10,
            ..CacheStats::default()
        };
        stats.removed_by_cause[RemovalCause::Capacity.index()] = 4;
        MetricsSnapshot {
            cache: name.into(),
            policy: "hybrid".into(),
            stats,
            latency: vec![LatencySummary {
                op: "get_hit".into(),
                count: 2,
                p50_ns: 100,
                p95_ns: 200,
                p99_ns: 200,
                p999_ns: 200,
                max_ns: 200,
                mean_ns: 150.0,
            }],
        }
    }

    #[test]
    fn renders_families_and_labels() {
        let text = render(&snapshot("a\"b\\c\nd"));
        assert!(text.contains("# TYPE cachefs_hits_total counter"));
        assert!(text.contains("cachefs_hits_total{cache=\"a\\\"b\\\\c\\nd\"} 3"), "{text}");
        assert!(text.contains("cause=\"capacity\"} 4"));
        assert!(text.contains("op=\"get_hit\",quantile=\"0.5\"} 1e-7"), "{text}");
        assert!(text.contains("cachefs_operation_duration_seconds_count{cache="));
        assert!(text.lines().all(|l| !l.is_empty()));
    }
}
