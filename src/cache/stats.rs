//! Lock-free statistics: counters striped by thread, summed on demand.
//!
//! Each thread uses one of the cache's stripes (cache-line padded; see `stripe.rs`), so threads on
//! different cores increment different lines; `stats()` adds the stripes up. A
//! snapshot taken while other threads work is consistent enough: each counter is exact at some instant
//! during the sum, not all at the same one.
//!
//! These counters only report, so they are plain `std` atomics even under loom (see `sync.rs`).
//! Relaxed ordering throughout: no counter orders any other memory.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::removal::RemovalCause;
use crate::stripe::StripedCounters;

/// A snapshot of a cache's counters and gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired entry).
    pub misses: u64,
    /// Entries stored under a key that was absent.
    pub inserts: u64,
    /// Entries stored over a present key.
    pub updates: u64,
    /// Inserts refused because the entry alone outweighs its shard's capacity.
    pub rejections: u64,
    /// Loader calls of `get_with` / `try_get_with` that produced a value.
    pub loads_ok: u64,
    /// Loader calls that failed or panicked.
    pub loads_failed: u64,
    /// Departures by cause, indexed as [`RemovalCause::ALL`]; see [`CacheStats::removed`].
    /// Serialised as `"removals": {"capacity": n, "expired": n, ...}`.
    #[serde(rename = "removals", serialize_with = "by_cause")]
    pub removed_by_cause: [u64; 5],
    /// Entries held now (may include expired entries not yet reclaimed).
    pub entries: u64,
    /// Sum of the weights of the entries held now.
    pub weighted_size: u64,
    /// The cache's maximum weighted size.
    pub capacity: u64,
}

impl CacheStats {
    /// Departures with `cause`.
    pub fn removed(&self, cause: RemovalCause) -> u64 {
        self.removed_by_cause[cause.index()]
    }

    /// Entries the cache evicted on its own (capacity and expiry).
    pub fn evictions(&self) -> u64 {
        self.removed(RemovalCause::Capacity) + self.removed(RemovalCause::Expired)
    }

    /// Entries taken out by the caller (`remove` and the `invalidate` family).
    pub fn removals(&self) -> u64 {
        self.removed(RemovalCause::Removed) + self.removed(RemovalCause::Invalidated)
    }

    /// `hits / (hits + misses)`, or 0 before any lookup.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }
}

fn by_cause<S: Serializer>(counts: &[u64; 5], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(counts.len()))?;
    for (cause, n) in RemovalCause::ALL.iter().zip(counts) {
        map.serialize_entry(cause.name(), n)?;
    }
    map.end()
}

/// Which counter to bump: an index into a stripe's counters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Hit,
    Miss,
    Insert,
    Update,
    Rejection,
    LoadOk,
    LoadFailed,
}

const COUNTERS: usize = 7;

/// The counters of one cache: the seven above, then one per removal cause, striped by thread.
#[derive(Debug)]
pub(crate) struct Counters {
    striped: StripedCounters<{ COUNTERS + 5 }>,
}

impl Counters {
    pub(crate) fn new(stripes: usize) -> Self {
        Counters { striped: StripedCounters::new(stripes) }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.striped.add(counter as usize, n);
    }

    pub(crate) fn removed(&self, cause: RemovalCause, n: u64) {
        self.striped.add(COUNTERS + cause.index(), n);
    }

    /// Sums the stripes into `stats` (gauges are the caller's).
    pub(crate) fn sum_into(&self, stats: &mut CacheStats) {
        let total = self.striped.totals();
        let at = |c: Counter| total[c as usize];
        stats.hits += at(Counter::Hit);
        stats.misses += at(Counter::Miss);
        stats.inserts += at(Counter::Insert);
        stats.updates += at(Counter::Update);
        stats.rejections += at(Counter::Rejection);
        stats.loads_ok += at(Counter::LoadOk);
        stats.loads_failed += at(Counter::LoadFailed);
        for (i, r) in stats.removed_by_cause.iter_mut().enumerate() {
            *r += total[COUNTERS + i];
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stripes_sum_across_threads() {
        let c = Counters::new(4);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.add(Counter::Hit, 1);
                    }
                    c.add(Counter::Miss, 2);
                    c.removed(RemovalCause::Expired, 3);
                });
            }
        });
        let mut st = CacheStats::default();
        c.sum_into(&mut st);
        assert_eq!((st.hits, st.misses), (8000, 16));
        assert_eq!(st.removed(RemovalCause::Expired), 24);
        assert_eq!(st.evictions(), 24);
        assert_eq!(st.removals(), 0);
        assert!((st.hit_rate() - 8000.0 / 8016.0).abs() < 1e-12);
        assert_eq!(CacheStats::default().hit_rate(), 0.0);
    }
}
