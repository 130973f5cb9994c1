//! A point-in-time view of a cache's metrics, serialisable and exportable.

use serde::Serialize;

use crate::CacheStats;
use crate::latency::LatencySummary;

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

impl<K, V, S> crate::Cache<K, V, S> {
    /// Counters, gauges and (if recording) latency percentiles, labelled with the cache's name and
    /// policy; export with [`MetricsSnapshot::to_prometheus`] or [`MetricsSnapshot::to_json`].
    /// Takes no lock on the cache's shards.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            cache: self.name().to_string(),
            policy: self.policy().name().to_string(),
            stats: self.stats(),
            latency: self.latency(),
        }
    }
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
