//! What a cache reports about itself: its name and latency recording. (The metrics layer builds its
//! snapshot from these and [`Cache::stats`]; this layer does not know it.)

use std::time::Instant;

use super::Cache;
use crate::latency::LatencySummary;

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

    /// Latency percentiles per operation (`get_hit`, `get_miss`, `insert`, `load`); empty unless latency
    /// recording is on ([`CacheBuilder::latency`](crate::CacheBuilder::latency)).
    pub fn latency(&self) -> Vec<LatencySummary> {
        self.inner.latency.as_ref().map(|l| l.summaries()).unwrap_or_default()
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
