//! What a cache reports about itself: the metrics snapshot and latency recording.

use std::time::Instant;

use super::Cache;
use crate::metrics::MetricsSnapshot;

/// The operations a cache times, in the order of its latency recorder.
pub(crate) const OPS: &[&str] = &["get_hit", "get_miss", "insert", "load"];
pub(crate) const GET_HIT: usize = 0;
pub(crate) const GET_MISS: usize = 1;
pub(crate) const INSERT: usize = 2;
pub(crate) const LOAD: usize = 3;

impl<K, V, S> Cache<K, V, S> {
    pub(super) fn record_latency(&self, op: usize, started: Instant) {
        if let Some(l) = &self.inner.latency {
            l.record(op, started);
        }
    }

    /// The cache's name, as given to [`CacheBuilder::name`](crate::CacheBuilder::name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counters, gauges and (if recording) latency percentiles, labelled with the cache's name and
    /// policy; export with [`MetricsSnapshot::to_prometheus`] or [`MetricsSnapshot::to_json`].
    /// Takes no lock on the cache's shards.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            cache: self.inner.name.clone(),
            policy: self.inner.policy.name().to_string(),
            stats: self.stats(),
            latency: self.inner.latency.as_ref().map(|l| l.summaries()).unwrap_or_default(),
        }
    }

    /// Forgets the latency recorded so far (counters are cumulative and are not reset).
    pub fn reset_latency(&self) {
        if let Some(l) = &self.inner.latency {
            l.reset();
        }
    }

    /// Heap bytes used by latency recording (0 when off).
    pub fn latency_heap_bytes(&self) -> usize {
        self.inner.latency.as_ref().map_or(0, |l| l.heap_bytes())
    }
}
