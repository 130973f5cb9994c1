//! Tests of the whole engine through its public operations: unit tests per operation, model-based
//! property tests per policy, and multi-threaded tests. They can call `Cache::validate`, which checks
//! every shard's invariants.

mod concurrency;
mod model;
mod ops;

use std::sync::{Arc, Mutex};

use super::{Cache, CacheBuilder, RemovalCause};

/// Everything the listener saw, in order.
type Log<K, V> = Arc<Mutex<Vec<(K, V, RemovalCause)>>>;

fn logging<K: Clone + Send + 'static, V: Send + 'static>(b: CacheBuilder<K, V>) -> (CacheBuilder<K, V>, Log<K, V>) {
    let log: Log<K, V> = Arc::default();
    let sink = log.clone();
    let b = b.eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)));
    (b, log)
}

/// Checks the counters against each other: every arrival is an insert or an update, every departure
/// has a cause, so what is held is what arrived minus what left.
fn check_stats<K: std::hash::Hash + Eq, V: Clone>(cache: &Cache<K, V>) {
    let s = cache.stats();
    let left: u64 = s.removed_by_cause.iter().sum();
    assert_eq!(s.entries, s.inserts + s.updates - left, "entries = arrivals - departures: {s:?}");
    assert!(s.weighted_size <= s.capacity);
}
