//! Hostile tests of the lock-free read path of `cachefs::Cache` (`get`, `get_many`, `contains_key`,
//! and the lock-free gauges), of read-your-writes while the index is busy, and of the statistics
//! under concurrency. Written from the public documentation only.

mod hostile_engine_util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use cachefs::{Cache, ManualClock, Policy};
use hostile_engine_util::{Budget, finishes_within, watchdog};

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

/// Holds the lock of the cache's only shard: `invalidate_if`'s predicate "runs under each shard's
/// lock"; it waits until told to go. Returns the thread and the channel that releases it.
fn hold_the_shard_lock(cache: &Cache<u64, u64>) -> (std::thread::JoinHandle<()>, mpsc::Sender<()>) {
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let c = cache.clone();
    let h = std::thread::spawn(move || {
        let mut first = true;
        c.invalidate_if(move |_, _| {
            if first {
                first = false;
                held_tx.send(()).unwrap();
                let _ = go_rx.recv_timeout(Duration::from_secs(15));
            }
            false
        });
    });
    held_rx.recv_timeout(Duration::from_secs(5)).expect("predicate never ran");
    (h, go_tx)
}

/// Docs (`Cache`, Guarantees): "`get`, `contains_key` and `get_many` take no lock"; `get`: "Takes no lock
/// and allocates nothing"; `contains_key`: "Takes no lock"; `len`, `weighted_size`, `stats`, `room_for`:
/// "Takes no lock"; `metrics`: "Takes no lock on the cache's shards"; `get_many`: "Takes no lock (but to
/// reclaim expired entries it finds)".
///
/// While another thread holds the shard's lock (inside `invalidate_if`'s predicate), every one of these
/// calls must return: hits, misses, entries past their deadline (for `get`/`contains_key`), a burst of
/// 100,000 reads (exact policies buffer reads for the next writer), with a TTL and time-to-idle set.
#[test]
fn holds_reads_complete_while_the_shard_lock_is_held() {
    let mut blocked = Vec::new();
    for policy in POLICIES {
        let clock = ManualClock::new();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1_000)
            .shards(1)
            .policy(policy)
            .time_to_idle(Duration::from_secs(100))
            .clock(clock.clone())
            .build();
        for i in 0..100 {
            cache.insert(i, i);
        }
        cache.insert_with_ttl(500, 500, Duration::from_secs(1));
        clock.advance(Duration::from_secs(2)); // 500 is expired now, not reclaimed
        let (h, go) = hold_the_shard_lock(&cache);
        type Check = (&'static str, Box<dyn FnOnce(Cache<u64, u64>) + Send>);
        let checks: Vec<Check> = vec![
            ("get hit", Box::new(|c| assert_eq!(c.get(&1), Some(1)))),
            ("get miss", Box::new(|c| assert_eq!(c.get(&10_000), None))),
            ("get expired", Box::new(|c| assert_eq!(c.get(&500), None))),
            ("contains_key hit", Box::new(|c| assert!(c.contains_key(&2)))),
            ("contains_key expired", Box::new(|c| assert!(!c.contains_key(&500)))),
            (
                "get_many hits and misses",
                Box::new(|c| assert_eq!(c.get_many(&[&3, &4, &9_999]), vec![Some(3), Some(4), None])),
            ),
            (
                "100,000 gets",
                Box::new(|c| {
                    for i in 0..100_000u64 {
                        let _ = c.get(&(i % 100));
                    }
                }),
            ),
            (
                "gauges",
                Box::new(|c| {
                    let _ = (
                        c.len(),
                        c.weighted_size(),
                        c.stats(),
                        c.room_for(&7),
                        c.metrics(),
                        c.capacity(),
                        c.is_empty(),
                    );
                }),
            ),
        ];
        for (name, check) in checks {
            let c = cache.clone();
            if finishes_within(2.0, move || check(c)).is_none() {
                blocked.push(format!("{policy:?}: {name}"));
            }
        }
        go.send(()).unwrap();
        h.join().unwrap();
    }
    assert!(blocked.is_empty(), "blocked behind the shard lock: {blocked:#?}");
}

/// A value that proves it was not torn or freed: a heap vector whose every word names its key.
#[derive(Clone)]
struct Proof(Vec<u64>);

impl Proof {
    fn new(k: u64, version: u64) -> Self {
        let mut v = vec![k; 16];
        v[15] = version;
        Proof(v)
    }
    fn check(&self, k: u64) -> bool {
        self.0.len() == 16 && self.0[..15].iter().all(|w| *w == k)
    }
}

/// Lock-free readers never see another key's value, a torn value or freed memory, whatever the
/// writers do (replace, remove, invalidate, batch calls, capacity evictions, shrinking). Docs:
/// "Operations on one key are linearizable"; "A departing value is dropped once no reader can still be
/// reading it".
#[test]
fn holds_lock_free_reads_never_see_torn_or_foreign_values() {
    for policy in POLICIES {
        let cache: Cache<u64, Proof> = Cache::builder().max_capacity(256).shards(4).policy(policy).build();
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let writer = {
            let (cache, stop) = (cache.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut x: u64 = 1;
                let mut n = 0u64;
                while !stop.load(SeqCst) && n < 3_000_000 {
                    n += 1;
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let k = (x >> 33) % 1_024;
                    match (x >> 12) % 9 {
                        0..=3 => cache.insert(k, Proof::new(k, n)),
                        4 => {
                            let _ = cache.remove(&k);
                        }
                        5 => {
                            cache.invalidate(&k);
                        }
                        6 => cache.insert_many((0..8).map(|i| ((k + i) % 1_024, Proof::new((k + i) % 1_024, n)))),
                        7 => {
                            cache.invalidate_many(&[&k, &((k + 1) % 1_024)]);
                        }
                        _ => {
                            if n.is_multiple_of(1_000) {
                                cache.set_max_capacity(if n.is_multiple_of(2_000) { 16 } else { 256 });
                            }
                        }
                    }
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (cache, stop, bad, reads) =
                    (cache.clone(), Arc::clone(&stop), Arc::clone(&bad), Arc::clone(&reads));
                std::thread::spawn(move || {
                    let mut x: u64 = t + 99;
                    let mut n = 0u64;
                    while !stop.load(SeqCst) && n < 20_000_000 {
                        n += 1;
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let k = (x >> 33) % 1_024;
                        if n.is_multiple_of(16) {
                            let ks = [k, (k + 1) % 1_024, (k + 2) % 1_024];
                            let out = cache.get_many(&[&ks[0], &ks[1], &ks[2]]);
                            for (k, v) in ks.iter().zip(out) {
                                if v.is_some_and(|v| !v.check(*k)) {
                                    bad.fetch_add(1, SeqCst);
                                }
                            }
                        } else if let Some(v) = cache.get(&k)
                            && !v.check(k)
                        {
                            bad.fetch_add(1, SeqCst);
                        }
                        if n.is_multiple_of(50_000) {
                            for (k, v) in cache.iter() {
                                if !v.check(k) {
                                    bad.fetch_add(1, SeqCst);
                                }
                            }
                        }
                    }
                    reads.fetch_add(n, SeqCst);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1_000));
        stop.store(true, SeqCst);
        writer.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(bad.load(SeqCst), 0, "{policy:?}: torn or foreign values read");
        assert!(reads.load(SeqCst) > 10_000);
    }
}

/// Read-your-writes while other threads grow the cache's index: each thread inserts its own keys (the
/// capacity is large, nothing is evicted) and checks that every key it inserted is still there, and
/// every key it removed is gone. Docs: "Operations on one key are linearizable: each takes effect
/// atomically at some point during the call."
#[test]
fn holds_own_writes_stay_visible_while_the_index_grows() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(10_000_000).shards(4).policy(policy).build();
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let (cache, errors) = (cache.clone(), Arc::clone(&errors));
                std::thread::spawn(move || {
                    let budget = Budget::new(Duration::from_millis(1_500));
                    let mut mine = Vec::new();
                    let mut i = 0u64;
                    while budget.left() && i < 60_000 {
                        let k = (i << 2) | t;
                        if i.is_multiple_of(3) {
                            cache.insert_many([(k, k + 1)]);
                        } else {
                            cache.insert(k, k + 1);
                        }
                        if cache.get(&k) != Some(k + 1) {
                            errors.lock().unwrap().push(format!("t{t}: {k} invisible right after insert"));
                        }
                        mine.push(k);
                        if i % 10 == 9 {
                            let gone = mine.swap_remove((i as usize * 7) % mine.len());
                            match i % 20 {
                                9 => {
                                    cache.remove(&gone);
                                }
                                _ => {
                                    cache.invalidate_many(&[&gone]);
                                }
                            }
                            if cache.contains_key(&gone) || cache.get(&gone).is_some() {
                                errors.lock().unwrap().push(format!("t{t}: {gone} visible after removal"));
                            }
                        }
                        if i.is_multiple_of(4_096) {
                            let refs: Vec<&u64> = mine.iter().collect();
                            for (k, v) in mine.iter().zip(cache.get_many(&refs)) {
                                if v != Some(k + 1) {
                                    errors.lock().unwrap().push(format!("t{t}: own key {k} lost (got {v:?})"));
                                }
                            }
                        }
                        i += 1;
                    }
                    for k in &mine {
                        if cache.get(k) != Some(k + 1) {
                            errors.lock().unwrap().push(format!("t{t}: own key {k} lost at the end"));
                        }
                    }
                    mine.len() as u64
                })
            })
            .collect();
        let held: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let errors = errors.lock().unwrap();
        assert!(errors.is_empty(), "{policy:?}: {} errors, first: {:?}", errors.len(), &errors[..errors.len().min(5)]);
        assert_eq!(cache.len(), held, "{policy:?}");
        assert_eq!(cache.iter().count() as u64, held, "{policy:?}");
    }
}

/// Statistics under concurrency: hits + misses equal the lookups made by `get` and `get_many` (one per
/// key, duplicates included). Docs (`get_many`): "Counts a hit or miss per key"; `contains_key`: "Does
/// not count as a read".
#[test]
fn holds_hits_and_misses_count_every_lookup_exactly() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).policy(policy).build();
        let hs: Vec<_> = (0..3u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let mut lookups = 0u64;
                    let mut hits_seen = 0u64;
                    for i in 0..100_000u64 {
                        let k = (i * 31 + t) % 300;
                        match i % 5 {
                            0 => cache.insert(k, k),
                            1 => {
                                let out = cache.get_many(&[&k, &k, &(k + 1)]);
                                lookups += 3;
                                hits_seen += out.iter().filter(|v| v.is_some()).count() as u64;
                            }
                            2 => {
                                let _ = cache.contains_key(&k);
                            }
                            _ => {
                                lookups += 1;
                                hits_seen += cache.get(&k).is_some() as u64;
                            }
                        }
                    }
                    (lookups, hits_seen)
                })
            })
            .collect();
        let (mut lookups, mut hits) = (0, 0);
        for h in hs {
            let (l, s) = h.join().unwrap();
            lookups += l;
            hits += s;
        }
        let s = cache.stats();
        assert_eq!((s.hits + s.misses, s.hits), (lookups, hits), "{policy:?}: (hits + misses, hits)");
        let m = cache.metrics();
        assert_eq!((m.stats.hits, m.stats.misses), (s.hits, s.misses));
        assert!((s.hit_rate() - hits as f64 / lookups as f64).abs() < 1e-9);
    }
}

/// Stats gauges agree with the contents at quiescence after concurrent churn of every kind.
/// Docs (`RemovalCause`): "`entries = inserts + updates - departures` holds".
#[test]
fn holds_gauges_agree_with_contents_after_churn() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> =
            Cache::builder().max_capacity(500).shards(4).policy(policy).weigher(|k, _| (k % 3 + 1) as u32).build();
        let hs: Vec<_> = (0..2u64)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..60_000u64 {
                        let k = (i.wrapping_mul(2654435761) + t) % 2_000;
                        match i % 11 {
                            0..=3 => cache.insert(k, k),
                            4 => {
                                let _ = cache.get_with(k, || k);
                            }
                            5 => {
                                cache.remove(&k);
                            }
                            6 => cache.insert_many([(k, 1), (k + 1, 2)]),
                            7 => {
                                cache.invalidate_many(&[&k, &(k + 3)]);
                            }
                            8 => cache.insert_with_ttl(k, k, Duration::from_micros(i % 50)),
                            9 if i % 5_000 == 9 => cache.set_max_capacity(100 + i % 700),
                            _ => {
                                let _ = cache.get(&k);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        std::thread::sleep(Duration::from_millis(1));
        cache.run_pending_tasks();
        let s = cache.stats();
        let departures: u64 = cachefs::RemovalCause::ALL.iter().map(|c| s.removed(*c)).sum();
        let live: Vec<(u64, u64)> = cache.iter().collect();
        let w: u64 = live.iter().map(|(k, _)| k % 3 + 1).sum();
        let what = format!("{policy:?}");
        assert_eq!(s.entries, s.inserts + s.updates - departures, "{what}");
        assert_eq!((s.entries, s.weighted_size), (live.len() as u64, w), "{what}: stats vs iter after reclaiming");
        assert_eq!((cache.len(), cache.weighted_size()), (s.entries, s.weighted_size), "{what}");
        assert!(s.weighted_size <= cache.capacity());
        let keys: HashSet<u64> = live.iter().map(|e| e.0).collect();
        assert_eq!(keys.len(), live.len(), "{what}: iter yielded a key twice");
    }
}

/// Iteration while writers run: "weakly consistent, each shard's part is a snapshot taken under its
/// lock". So no key twice in one pass, every value the one held for its key at some point, and keys that
/// are never touched (and cannot be evicted) are always yielded.
#[test]
fn holds_iteration_during_churn_is_weakly_consistent() {
    let cache: Cache<u64, Proof> = Cache::builder().max_capacity(100_000).shards(8).policy(Policy::Lru).build();
    for k in 0..100 {
        cache.insert(k, Proof::new(k, 0));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 5_000_000 {
                n += 1;
                let k = 100 + n % 5_000;
                if n.is_multiple_of(3) {
                    cache.remove(&k);
                } else {
                    cache.insert(k, Proof::new(k, n));
                }
            }
        })
    };
    watchdog(20, "iteration", {
        let cache = cache.clone();
        move || {
            let budget = Budget::new(Duration::from_millis(800));
            let mut passes = 0;
            while budget.left() {
                passes += 1;
                let mut seen = HashSet::new();
                for (k, v) in cache.iter() {
                    assert!(v.check(k), "value of another key");
                    assert!(seen.insert(k), "key {k} twice in one pass");
                }
                assert!((0..100).all(|k| seen.contains(&k)), "stable keys missing from a pass");
            }
            assert!(passes > 3);
        }
    });
    stop.store(true, SeqCst);
    writer.join().unwrap();
}

/// A value whose `Clone` is slow (it yields half-way): a lock-free reader is still cloning when the
/// writer replaces or removes the entry. Docs: "A departing value is dropped once no reader can still be
/// reading it". A value dropped under a reader would show as another key's or freed memory.
#[test]
fn holds_slow_clones_never_read_a_dropped_value() {
    struct Slow(Box<[u64; 32]>);
    impl Clone for Slow {
        fn clone(&self) -> Self {
            let mut b = Box::new([0u64; 32]);
            b[..16].copy_from_slice(&self.0[..16]);
            std::thread::yield_now();
            b[16..].copy_from_slice(&self.0[16..]);
            Slow(b)
        }
    }
    impl Drop for Slow {
        fn drop(&mut self) {
            // Poison what a reader would copy from a freed value.
            for w in self.0.iter_mut() {
                *w = u64::MAX;
            }
        }
    }
    let cache: Cache<u64, Slow> = Cache::builder().max_capacity(8).shards(1).policy(Policy::Lru).build();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 5_000_000 {
                n += 1;
                let k = n % 4;
                match n % 5 {
                    0 => {
                        cache.remove(&k);
                    }
                    1 => cache.invalidate_all(),
                    _ => cache.insert(k, Slow(Box::new([k; 32]))),
                }
            }
        })
    };
    let bad = watchdog(20, "slow clones", {
        let cache = cache.clone();
        move || {
            let budget = Budget::new(Duration::from_millis(800));
            let mut bad = 0u64;
            let mut n = 0u64;
            while budget.left() {
                n += 1;
                let k = n % 4;
                let vals = if n.is_multiple_of(3) { cache.get_many(&[&k]) } else { vec![cache.get(&k)] };
                for v in vals.into_iter().flatten() {
                    if v.0.iter().any(|w| *w != k) {
                        bad += 1;
                    }
                }
            }
            bad
        }
    });
    stop.store(true, SeqCst);
    writer.join().unwrap();
    assert_eq!(bad, 0, "values read while (or after) being dropped");
}

/// Docs (`CacheStats`): `evictions()` "Entries the cache evicted on its own (capacity and expiry)";
/// `removals()` "Entries taken out by the caller (`remove` and the `invalidate` family)"; `removed_by_cause`
/// "Serialised as `"removals": {"capacity": n, "expired": n, ...}`"; `reset_latency` "Forgets the latency
/// recorded so far (counters are cumulative and are not reset)".
#[test]
fn holds_stats_helpers_json_and_latency_reset() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .policy(Policy::Lru)
        .clock(clock.clone())
        .latency(cachefs::LatencyConfig { sample_every: 1 })
        .build();
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.insert(3, 3); // capacity: 1
    cache.insert(3, 33); // replaced
    cache.remove(&2); // removed
    cache.insert_with_ttl(4, 4, Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    cache.run_pending_tasks(); // expired: 4
    cache.insert(5, 5);
    cache.invalidate(&5); // invalidated
    let s = cache.stats();
    assert_eq!(s.removed_by_cause.iter().sum::<u64>(), 5);
    for cause in cachefs::RemovalCause::ALL {
        assert_eq!(s.removed(cause), 1, "{cause:?}");
    }
    assert_eq!((s.evictions(), s.removals()), (2, 2));
    let json = cache.metrics().to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let removals = v.get("stats").and_then(|s| s.get("removals")).or_else(|| v.get("removals"));
    let removals = removals.unwrap_or_else(|| panic!("no \"removals\" in {json}"));
    for cause in cachefs::RemovalCause::ALL {
        assert_eq!(removals.get(cause.name()).and_then(|n| n.as_u64()), Some(1), "{} in {json}", cause.name());
    }
    let _ = cache.get(&3);
    assert!(cache.latency().iter().any(|l| l.count > 0));
    let before = cache.stats();
    cache.reset_latency();
    assert!(cache.latency().iter().all(|l| l.count == 0), "{:?}", cache.latency());
    let after = cache.stats();
    assert_eq!((before.hits, before.misses, before.inserts), (after.hits, after.misses, after.inserts));
}
