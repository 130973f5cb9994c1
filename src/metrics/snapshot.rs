//! A point-in-time view of a cache's metrics, serialisable and exportable.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::CacheStats;

/// Latency percentiles of one operation, in nanoseconds (1% precision).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// The operation: `get_hit`, `get_miss`, `insert` or `load` for a cache.
    pub op: String,
    /// Operations recorded (sampled ones only).
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 95th percentile.
    pub p95_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest recorded.
    pub max_ns: u64,
    /// Mean (0 when nothing was recorded).
    pub mean_ns: f64,
}

impl LatencySummary {
    pub(crate) fn from_histogram(op: &str, h: &Histogram<u64>) -> Self {
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        LatencySummary {
            op: op.to_string(),
            count: h.len(),
            p50_ns: q(0.5),
            p95_ns: q(0.95),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: if empty { 0 } else { h.max() },
            mean_ns: if empty { 0.0 } else { h.mean() },
        }
    }
}

/// Everything a cache reports: counters, gauges and latency percentiles, with its name and policy.
///
/// ```
/// use cachefs::Cache;
///
/// let cache: Cache<u32, u32> = Cache::builder().name("sessions").build();
/// cache.insert(1, 1);
/// cache.get(&1);
/// let m = cache.metrics();
/// assert_eq!((m.cache.as_str(), m.stats.hits, m.stats.entries), ("sessions", 1, 1));
/// assert!(m.to_prometheus().contains("cachefs_hits_total{cache=\"sessions\"} 1"));
/// assert!(m.to_json().contains("\"hits\": 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// The cache's name (its `cache` label).
    pub cache: String,
    /// The eviction policy's name.
    pub policy: String,
    /// Counters and gauges (serialised inline).
    #[serde(flatten)]
    pub stats: CacheStats,
    /// Latency per operation; empty unless latency recording is on.
    pub latency: Vec<LatencySummary>,
}

impl MetricsSnapshot {
    /// The snapshot as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Only strings, integers and finite floats: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// The snapshot in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        super::prometheus::render(self)
    }
}
