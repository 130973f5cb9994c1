//! One test per operation and edge case.

use std::time::Duration;

use super::{check_stats, logging};
use crate::{Cache, FnvBuildHasher, ManualClock, Policy, RemovalCause};

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

#[test]
fn insert_get_remove_invalidate() {
    for policy in POLICIES {
        let cache: Cache<u32, &str> = Cache::builder().max_capacity(100).policy(policy).build();
        assert!(cache.is_empty());
        cache.insert(1, "one");
        cache.insert(2, "two");
        assert_eq!(cache.get(&1), Some("one"));
        assert!(cache.contains_key(&2));
        assert_eq!(cache.remove(&1), Some("one"));
        assert_eq!(cache.remove(&1), None);
        assert_eq!(cache.get(&1), None);
        assert!(cache.invalidate(&2));
        assert!(!cache.invalidate(&2));
        assert!(!cache.contains_key(&2));
        assert_eq!(cache.len(), 0);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.inserts), (1, 1, 2));
        assert_eq!((s.removed(RemovalCause::Removed), s.removed(RemovalCause::Invalidated)), (1, 1));
        assert_eq!(s.removals(), 2);
        cache.validate();
        check_stats(&cache);
    }
}

#[test]
fn borrowed_lookups() {
    let cache: Cache<String, u8> = Cache::new(10);
    cache.insert("key".to_string(), 1);
    assert_eq!(cache.get("key"), Some(1));
    assert!(cache.contains_key("key"));
    assert!(cache.invalidate("key"));
    let cache: Cache<Vec<u8>, u8> = Cache::new(10);
    cache.insert(b"k".to_vec(), 2);
    assert_eq!(cache.get(&b"k"[..]), Some(2));
}

#[test]
fn replacing_reports_the_old_value() {
    let (b, log) = logging(Cache::builder().max_capacity(10));
    let cache = b.build();
    cache.insert(1u32, 10u32);
    cache.insert(1, 11);
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(*log.lock().unwrap(), vec![(1, 10, RemovalCause::Replaced)]);
    assert_eq!(cache.stats().updates, 1);
    check_stats(&cache);
}

#[test]
fn capacity_evicts_with_cause() {
    for policy in POLICIES {
        let (b, log) = logging(Cache::builder().max_capacity(4).shards(1).policy(policy));
        let cache = b.build();
        for k in 0..10u32 {
            cache.insert(k, k);
        }
        assert_eq!(cache.len(), 4);
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 6);
        assert!(log.iter().all(|(_, _, c)| *c == RemovalCause::Capacity));
        assert_eq!(cache.stats().removed(RemovalCause::Capacity), 6);
        assert_eq!(cache.stats().evictions(), 6);
        cache.validate();
    }
}

#[test]
fn zero_capacity_caches_nothing() {
    let cache: Cache<u32, u32> = Cache::new(0);
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), None);
    let s = cache.stats();
    assert_eq!((s.entries, s.capacity, s.rejections, s.inserts), (0, 0, 1, 0));
    cache.validate();
}

#[test]
fn an_entry_heavier_than_capacity_is_rejected_alone() {
    let (b, log) = logging(Cache::builder().max_capacity(100).shards(1).weigher(|_: &u32, v: &u32| *v));
    let cache = b.build();
    for k in 0..5 {
        cache.insert(k, 10);
    }
    cache.insert(99, 101);
    assert_eq!(cache.get(&99), None);
    assert_eq!(cache.len(), 5, "nothing else was evicted for it");
    assert_eq!(cache.stats().rejections, 1);
    assert_eq!(*log.lock().unwrap(), vec![(99, 101, RemovalCause::Capacity)]);
    // Over an existing key, the stale value does not survive the refused replacement.
    cache.insert(0, 500);
    assert_eq!(cache.get(&0), None);
    assert_eq!(cache.weighted_size(), 40);
    cache.validate();
    check_stats(&cache);
}

#[test]
fn weights_are_counted_and_zero_counts_as_one() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(1_000).shards(1).weigher(|_, v: &u32| *v).build();
    cache.insert(1, 300);
    cache.insert(2, 0);
    assert_eq!(cache.weighted_size(), 301);
    cache.insert(1, 5);
    assert_eq!(cache.weighted_size(), 6);
    cache.validate();
}

#[test]
fn capacity_below_shard_count_still_caches() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(3).shards(64).build();
    for k in 0..1_000 {
        cache.insert(k, k);
        assert!(cache.get(&k).is_some(), "every key can be cached, key {k}");
    }
    assert_eq!(cache.len(), 3);
    cache.validate();
}

#[test]
fn time_to_live_and_per_entry_ttl() {
    let clock = ManualClock::new();
    let (b, log) =
        logging(Cache::builder().max_capacity(10).time_to_live(Duration::from_secs(10)).clock(clock.clone()));
    let cache = b.build();
    cache.insert(1u32, 1u32);
    cache.insert_with_ttl(2, 2, Duration::from_secs(2));
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&2), None, "expired exactly at its own TTL");
    assert!(!cache.contains_key(&2));
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(Duration::from_secs(8));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.len(), 0, "expired entries found by reads are reclaimed");
    assert_eq!(cache.stats().removed(RemovalCause::Expired), 2);
    assert!(log.lock().unwrap().iter().all(|(_, _, c)| *c == RemovalCause::Expired));
    cache.validate();
    check_stats(&cache);
}

#[test]
fn per_entry_ttl_without_a_cache_ttl() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).shards(1).clock(clock.clone()).build();
    cache.insert_with_ttl(1, 1, Duration::from_millis(5));
    cache.insert(2, 2);
    clock.advance(Duration::from_millis(5));
    assert_eq!(cache.iter().count(), 1, "iteration skips expired entries");
    cache.insert(3, 3);
    assert_eq!(cache.len(), 2, "the write reclaimed the expired entry");
    assert_eq!(cache.get(&2), Some(2));
}

#[test]
fn time_to_idle_extends_on_read() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> =
        Cache::builder().max_capacity(10).time_to_idle(Duration::from_secs(3)).clock(clock.clone()).build();
    cache.insert(1, 1);
    cache.insert(2, 2);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(2));
        assert_eq!(cache.get(&1), Some(1));
    }
    assert_eq!(cache.get(&2), None);
    cache.run_pending_tasks();
    assert_eq!(cache.len(), 1);
    clock.advance(Duration::from_secs(3));
    assert_eq!(cache.get(&1), None);
    cache.validate();
}

#[test]
fn expired_entries_go_before_live_ones() {
    for policy in POLICIES {
        let clock = ManualClock::new();
        let (b, log) = logging(Cache::builder().max_capacity(3).shards(1).policy(policy).clock(clock.clone()));
        let cache = b.build();
        cache.insert(1u32, 1u32);
        cache.insert_with_ttl(2, 2, Duration::from_secs(1));
        cache.insert(3, 3);
        for _ in 0..3 {
            assert_eq!(cache.get(&1), Some(1));
            assert_eq!(cache.get(&3), Some(3));
        }
        clock.advance(Duration::from_secs(1));
        cache.insert(4, 4);
        assert_eq!(*log.lock().unwrap(), vec![(2, 2, RemovalCause::Expired)], "{policy:?}");
        cache.validate();
    }
}

#[test]
fn ttl_policy_evicts_earliest_deadline_first() {
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(3).shards(1).policy(Policy::Ttl).clock(clock).build();
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, Duration::from_secs(3600));
    cache.insert_with_ttl(3, 3, Duration::from_secs(60));
    cache.insert(4, 4);
    assert!(!cache.contains_key(&3), "soonest deadline goes first");
    cache.insert(5, 5);
    assert!(!cache.contains_key(&2));
    cache.insert(6, 6);
    assert!(!cache.contains_key(&1), "then least recently used");
    cache.validate();
}

#[test]
fn lfu_keeps_the_frequent_key() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(3).shards(1).policy(Policy::Lfu).build();
    cache.insert(0, 0);
    for _ in 0..5 {
        cache.get(&0);
    }
    for k in 1..20 {
        cache.insert(k, k);
        cache.get(&k);
    }
    assert!(cache.contains_key(&0));
    cache.validate();
}

#[test]
fn invalidate_if_all_and_iter() {
    let (b, log) = logging(Cache::builder().max_capacity(100));
    let cache = b.build();
    for k in 0..20u32 {
        cache.insert(k, k * 2);
    }
    let mut all: Vec<(u32, u32)> = cache.iter().collect();
    all.sort();
    assert_eq!(all, (0..20).map(|k| (k, k * 2)).collect::<Vec<_>>());
    assert_eq!(cache.invalidate_if(|k, _| k % 2 == 0), 10);
    assert_eq!(cache.len(), 10);
    assert!(cache.iter().all(|(k, _)| k % 2 == 1));
    cache.invalidate_all();
    assert!(cache.is_empty());
    assert_eq!(log.lock().unwrap().len(), 20);
    assert!(log.lock().unwrap().iter().all(|(_, _, c)| *c == RemovalCause::Invalidated));
    cache.validate();
    check_stats(&cache);
}

#[test]
fn fnv_hasher_and_debug() {
    let cache: Cache<&str, u32, FnvBuildHasher> = Cache::builder().max_capacity(10).hasher(FnvBuildHasher).build();
    cache.insert("a", 1);
    assert_eq!(cache.get("a"), Some(1));
    let shown = format!("{cache:?}");
    assert!(shown.contains("Hybrid") && shown.contains("entries: 1"), "{shown}");
    assert_eq!(cache.policy().name(), "hybrid");
    let builder = format!("{:?}", Cache::<u8, u8>::builder().max_capacity(5));
    assert!(builder.contains("max_capacity: 5"), "{builder}");
}

#[test]
fn clones_share_one_cache() {
    let a: Cache<u8, u8> = Cache::new(10);
    let b = a.clone();
    a.insert(1, 1);
    assert_eq!(b.get(&1), Some(1));
    assert_eq!(b.capacity(), 10);
}

/// Defect 1 (issue 11): LFU made room for a newcomer by evicting the newcomer itself.
#[test]
fn lfu_newcomer_evicts_the_least_frequent_resident() {
    let (b, log) = logging(Cache::builder().max_capacity(3).shards(1).policy(Policy::Lfu));
    let cache = b.build();
    for k in 1..=3 {
        cache.insert(k, k * 10);
    }
    for (k, reads) in [(1, 5), (2, 3), (3, 1)] {
        for _ in 0..reads {
            assert_eq!(cache.get(&k), Some(k * 10));
        }
    }
    cache.insert(4, 40);
    assert_eq!(cache.get(&4), Some(40), "the newcomer is stored");
    assert_eq!(
        log.lock().unwrap().as_slice(),
        &[(3, 30, RemovalCause::Capacity)],
        "the least frequent resident leaves"
    );
    for k in [1, 2] {
        assert!(cache.contains_key(&k));
    }
    // A full LFU cache keeps what `get_with` loads.
    let loads = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..3 {
        cache.get_with(5, || {
            loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            50
        });
    }
    assert_eq!(loads.into_inner(), 1, "loaded once, then kept");
    // The same holds when an update makes an entry heavier than the room left.
    let cache: Cache<u32, u32> =
        Cache::builder().max_capacity(4).shards(1).policy(Policy::Lfu).weigher(|_, v| *v).build();
    cache.insert(1, 1);
    cache.insert(2, 1);
    cache.get(&1);
    cache.insert(2, 2);
    cache.insert(2, 3);
    assert_eq!(cache.get(&2), Some(3), "the updated entry stays; others made room");
    cache.validate();
}

/// Defect 2 (issue 11): a listener that loads through the same cache hung when single-flight's re-check
/// reclaimed an expired entry under the flight table's lock.
#[test]
fn listener_may_load_through_the_cache_while_a_flight_rechecks() {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::{Arc, OnceLock};

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let clock = ManualClock::new();
        let slot: Arc<OnceLock<Cache<u32, u32>>> = Arc::default();
        let expirations = Arc::new(AtomicU32::new(0));
        let (for_listener, seen, listener_clock) = (slot.clone(), expirations.clone(), clock.clone());
        let cache = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .clock(clock.clone())
            .time_to_live(Duration::from_secs(1))
            .eviction_listener(move |k: u32, _v: u32, cause| {
                if k != 1 || cause != RemovalCause::Expired {
                    return;
                }
                let cache = for_listener.get().expect("set before use");
                // A listener may call back into the cache, loading included.
                cache.get_with(2, || 2);
                if seen.fetch_add(1, SeqCst) == 0 {
                    // Between the caller's miss and its flight's re-check, key 1 comes back and expires
                    // (and so does 2, so that the next listener call must load it).
                    cache.insert(1, 11);
                    listener_clock.advance(Duration::from_secs(2));
                }
            })
            .build();
        let _ = slot.set(cache.clone());
        cache.insert(1, 10);
        clock.advance(Duration::from_secs(2));
        let v = cache.get_with(1, || 12);
        let _ = tx.send((v, expirations.load(SeqCst)));
    });
    let (v, expirations) =
        rx.recv_timeout(Duration::from_secs(10)).expect("get_with hung: the listener ran under an internal lock");
    assert_eq!(v, 12);
    assert!(expirations >= 1);
}

/// Every key and value is dropped exactly once, whatever path it leaves by (replaced, evicted, removed,
/// invalidated, refused, or still held when the cache goes), even though departed entries are dropped
/// later, by the epoch. Under Miri a double drop or a use after free is also an error.
#[test]
fn every_key_and_value_is_dropped_exactly_once() {
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};
    static LIVE: AtomicI64 = AtomicI64::new(0);
    #[derive(Debug, PartialEq, Eq, Hash)]
    struct Counted(u64);
    impl Counted {
        fn new(v: u64) -> Self {
            LIVE.fetch_add(1, SeqCst);
            Counted(v)
        }
    }
    impl Clone for Counted {
        fn clone(&self) -> Self {
            Counted::new(self.0)
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, SeqCst);
        }
    }
    // Under Miri (about 0.1 s a write) 24 steps: still past the capacity of 16, with removals,
    // invalidations and the rejected heavy key 0.
    let n = if cfg!(miri) { 24 } else { 2_000 };
    for policy in POLICIES {
        {
            let cache: Cache<Counted, std::sync::Arc<Counted>> = Cache::builder()
                .max_capacity(16)
                .policy(policy)
                .weigher(|k: &Counted, _| if k.0.is_multiple_of(97) { 1_000 } else { 1 })
                .eviction_listener(|_, _, _| {})
                .build();
            for i in 0..n {
                let k = i % 40;
                cache.insert(Counted::new(k), std::sync::Arc::new(Counted::new(i)));
                if i % 7 == 0 {
                    cache.remove(&Counted::new(k + 1));
                }
                if i % 11 == 0 {
                    cache.invalidate(&Counted::new(k + 2));
                }
                let _ = cache.get(&Counted::new(k));
            }
            cache.invalidate_if(|k, _| k.0 % 3 == 0);
            cache.validate();
        }
        // Entries the epoch still held when the cache went were dropped with it.
        assert_eq!(LIVE.load(SeqCst), 0, "{policy:?}: keys and values alive after the cache was dropped");
    }
}

#[test]
fn capacity_ttl_tti_and_sampling_change_while_running() {
    for policy in POLICIES {
        let (b, log) = logging(Cache::builder().max_capacity(100).policy(policy));
        let cache = b.build();
        for k in 0..100u32 {
            cache.insert(k, k);
        }
        cache.set_max_capacity(10);
        assert!(cache.weighted_size() <= 10, "{policy:?}: {}", cache.weighted_size());
        assert_eq!(cache.capacity(), 10);
        let evicted = log.lock().unwrap().iter().filter(|e| e.2 == RemovalCause::Capacity).count() as u64;
        assert_eq!(evicted, 100 - cache.len(), "{policy:?}: shrinking evicts, cause Capacity");
        cache.set_max_capacity(1_000);
        for k in 100..600u32 {
            cache.insert(k, k);
        }
        assert!(cache.len() > 400, "{policy:?}: growing makes room ({})", cache.len());
        cache.validate();
    }
    let clock = ManualClock::new();
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(100).clock(clock.clone()).build();
    cache.insert(1, 1);
    cache.set_time_to_live(Some(Duration::from_secs(10)));
    cache.insert(2, 2);
    clock.advance(Duration::from_secs(11));
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(1), None), "the TTL applies to later inserts only");
    cache.set_time_to_live(None);
    cache.insert(3, 3);
    cache.set_time_to_idle(Some(Duration::from_secs(5)));
    clock.advance(Duration::from_secs(3));
    assert_eq!(cache.get(&3), Some(3), "read within the idle time");
    clock.advance(Duration::from_secs(4));
    assert_eq!(cache.get(&1), None, "idle for 7 s: expired");
    assert_eq!(cache.get(&3), Some(3), "read 4 s ago");
    cache.set_time_to_idle(None);
    clock.advance(Duration::from_secs(60));
    assert_eq!(cache.get(&3), Some(3), "no idle limit any more");
    cache.validate();
    assert!(!cache.set_latency_sampling(crate::LatencyConfig { sample_every: 1 }), "built without recording");
    let timed: Cache<u32, u32> = Cache::builder().latency(crate::LatencyConfig { sample_every: 1_000_000 }).build();
    timed.insert(1, 1);
    assert!(timed.set_latency_sampling(crate::LatencyConfig { sample_every: 1 }));
    for _ in 0..10 {
        timed.get(&1);
    }
    let hits = timed.latency().into_iter().find(|l| l.op == "get_hit").map_or(0, |l| l.count);
    assert!(hits >= 9, "every read timed after the change: {hits}");
}
