//! Multi-threaded tests: single flight, re-entrant listeners, and a bounded stress run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::Duration;

use super::check_stats;
use crate::{Cache, Policy, RemovalCause};

#[test]
fn thirty_two_concurrent_misses_run_the_loader_once() {
    let cache: Cache<u32, Arc<String>> = Cache::new(100);
    let calls = AtomicUsize::new(0);
    let barrier = Barrier::new(32);
    thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    cache.get_with(7, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(100));
                        Arc::new("loaded".to_string())
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(*h.join().unwrap(), "loaded");
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = cache.stats();
    assert_eq!((s.loads_ok, s.loads_failed, s.inserts), (1, 0, 1));
    assert_eq!(s.hits + s.misses, 32);
}

#[test]
fn a_failing_loader_releases_its_waiters() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let calls = AtomicUsize::new(0);
    let started = Barrier::new(2);
    thread::scope(|s| {
        let leader = s.spawn(|| {
            cache.try_get_with(1, || {
                calls.fetch_add(1, Ordering::SeqCst);
                started.wait();
                thread::sleep(Duration::from_millis(100));
                Err("backend down")
            })
        });
        started.wait();
        // The leader is now loading: these callers wait on it, then one of them loads itself.
        let followers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    cache.try_get_with(1, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, &str>(5)
                    })
                })
            })
            .collect();
        assert_eq!(leader.join().unwrap(), Err("backend down"));
        for f in followers {
            assert_eq!(f.join().unwrap(), Ok(5));
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one failed load, one successful retry");
    assert_eq!(cache.get(&1), Some(5));
    let s = cache.stats();
    assert_eq!((s.loads_ok, s.loads_failed), (1, 1));
}

#[test]
fn a_panicking_loader_leaves_the_cache_usable() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let started = Barrier::new(2);
    thread::scope(|s| {
        let leader = s.spawn(|| {
            cache.get_with(1, || {
                started.wait();
                thread::sleep(Duration::from_millis(50));
                panic!("loader blew up")
            })
        });
        started.wait();
        let follower = s.spawn(|| cache.get_with(1, || 9));
        assert!(leader.join().is_err());
        assert_eq!(follower.join().unwrap(), 9);
    });
    assert_eq!(cache.get(&1), Some(9));
    assert_eq!(cache.stats().loads_failed, 1);
    cache.validate();
}

#[test]
fn a_listener_may_call_back_into_the_cache() {
    let cell: Arc<OnceLock<Cache<u32, u32>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let (c, n) = (cell.clone(), seen.clone());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(8)
        .shards(1)
        .eviction_listener(move |k, v, cause| {
            let cache = c.get().expect("set before use");
            // Reads, writes and removals from inside the listener: none may deadlock.
            let _ = cache.get(&k);
            assert!(!cache.contains_key(&k) || cause == RemovalCause::Replaced);
            if k < 1_000 {
                cache.insert(k + 1_000, v);
            }
            cache.invalidate(&(k + 2_000));
            n.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    cell.set(cache.clone()).unwrap();
    // Fewer under Miri, where each insert that evicts takes most of a second (100 took it 88 s).
    let n = if cfg!(miri) { 24 } else { 100 };
    for k in 0..n {
        cache.insert(k, k);
    }
    assert!(seen.load(Ordering::SeqCst) >= n as usize - 8);
    cache.validate();
    check_stats(&cache);
}

#[test]
fn stress_keeps_invariants() {
    for policy in [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid] {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(200)
            .shards(4)
            .policy(policy)
            .weigher(|_, v: &u64| (*v % 5) as u32)
            .time_to_live(Duration::from_millis(20))
            .build();
        let loads = AtomicUsize::new(0);
        thread::scope(|s| {
            for t in 0..4u64 {
                let (cache, loads) = (&cache, &loads);
                s.spawn(move || {
                    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for i in 0..20_000u64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = x % 500;
                        match x % 10 {
                            0..=4 => {
                                if let Some(v) = cache.get(&key) {
                                    assert_eq!(v / 1_000_000, key, "a value stored under another key");
                                }
                            }
                            5..=7 => cache.insert(key, key * 1_000_000 + i),
                            8 => {
                                cache.get_with(key, || {
                                    loads.fetch_add(1, Ordering::Relaxed);
                                    key * 1_000_000
                                });
                            }
                            _ => {
                                cache.remove(&key);
                            }
                        }
                    }
                });
            }
        });
        cache.run_pending_tasks();
        cache.validate();
        check_stats(&cache);
        let s = cache.stats();
        assert_eq!(s.loads_ok, loads.load(Ordering::Relaxed) as u64);
        assert!(s.weighted_size <= 200);
    }
}

/// Capacity, TTL and time-to-idle changed over and over while other threads read and write: after
/// each shrink returns the cache fits it, every entry read is live, and the structure stays valid.
#[test]
fn reconfiguration_while_reading_and_writing() {
    for policy in [Policy::Lru, Policy::Hybrid] {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(2_000).shards(8).policy(policy).build();
        let stop = std::sync::atomic::AtomicBool::new(false);
        thread::scope(|s| {
            for t in 0..2u64 {
                let (cache, stop) = (&cache, &stop);
                s.spawn(move || {
                    let mut x = t + 1;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let k = (x >> 33) % 5_000;
                        match x % 5 {
                            0 => cache.insert(k, k),
                            1 => {
                                cache.remove(&k);
                            }
                            _ => {
                                if let Some(v) = cache.get(&k) {
                                    assert_eq!(v, k);
                                }
                            }
                        }
                    }
                });
            }
            for round in 0..60u64 {
                let capacity = [50, 2_000, 300, 1_000][round as usize % 4];
                cache.set_max_capacity(capacity);
                assert!(cache.weighted_size() <= capacity, "{policy:?}: {} over {capacity}", cache.weighted_size());
                cache.set_time_to_live((round % 3 == 0).then(|| Duration::from_secs(60)));
                cache.set_time_to_idle((round % 5 == 0).then(|| Duration::from_secs(60)));
            }
            stop.store(true, Ordering::Relaxed);
        });
        cache.validate();
        check_stats(&cache);
    }
}
