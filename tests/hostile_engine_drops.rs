//! Hostile tests of `cachefs::Cache`: every key and value is dropped exactly once, and departed
//! values are released within the documented bound. Written from the public documentation only.

mod hostile_engine_util;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cachefs::{Cache, ManualClock, Policy, RemovalCause};
use hostile_engine_util::{Registry, Tracked, run_child, watchdog};

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

type TCache = Cache<Tracked, Tracked>;

fn k(reg: &Arc<Registry>, id: u64) -> Tracked {
    Tracked::new(reg, id)
}

/// The live bytes once `run_pending_tasks` has had its chance to release down to `bound`: its docs allow
/// departed values to outlive a call while another thread stays inside a cache call for the 100 ms it
/// waits ("they are then dropped soon after, by whichever thread collects next"), and the other tests of
/// this binary run beside it; a loaded machine can keep one of them pinned that long. So: up to 50 more
/// calls, 20 ms apart, and the live bytes then.
fn live_after_collecting<K, V>(cache: &Cache<K, V>, reg: &Registry, bound: u64) -> u64
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    for _ in 0..50 {
        cache.run_pending_tasks();
        if reg.live_bytes.load(SeqCst) <= bound {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reg.live_bytes.load(SeqCst)
}

/// Every way an entry can leave, on every policy, with a listener that receives clones; then the
/// cache is dropped. Every key and value instance ever created must have been dropped exactly once.
///
/// Docs (`Cache`, Guarantees): "A departing value is dropped once no reader can still be reading it
/// ... or when the cache itself is dropped." `eviction_listener`: "The listener gets clones of the key
/// and the value".
#[test]
fn holds_every_key_and_value_dropped_exactly_once_on_every_path() {
    for policy in POLICIES {
        for shards in [1usize, 4] {
            let reg = Registry::new(200_000);
            let clock = ManualClock::new();
            let seen = Arc::new(AtomicU64::new(0));
            let s2 = Arc::clone(&seen);
            let cache: TCache = Cache::builder()
                .max_capacity(64)
                .shards(shards)
                .policy(policy)
                .clock(clock.clone())
                .eviction_listener(move |_k, _v, _c| {
                    s2.fetch_add(1, SeqCst);
                })
                .build();
            let r = &reg;
            // Inserts, replacements, capacity evictions.
            for i in 0..500u64 {
                cache.insert(k(r, i % 150), Tracked::new(r, i));
            }
            // Batch insert with equal keys inside the batch.
            cache.insert_many((0..100u64).map(|i| (k(r, i % 30), Tracked::new(r, 1000 + i))));
            // Removals of every kind.
            for i in 0..20u64 {
                let _ = cache.remove(&k(r, i));
                let _ = cache.invalidate(&k(r, i + 20));
            }
            let probes: Vec<Tracked> = (40..60).map(|i| k(r, i)).collect();
            let refs: Vec<&Tracked> = probes.iter().collect();
            let _ = cache.get_many(&refs);
            let _ = cache.invalidate_many(&refs);
            drop(refs);
            drop(probes);
            let _ = cache.invalidate_if(|k, _| k.id % 3 == 0);
            // Loads: a hit (the key passed in must be dropped), a miss, a failed load.
            for i in 0..50u64 {
                let _ = cache.get_with(k(r, i), || Tracked::new(r, 5000 + i));
                let _ = cache.try_get_with(k(r, 10_000 + i), || Err::<Tracked, _>(()));
            }
            // Per-entry TTL and expiry.
            for i in 0..30u64 {
                cache.insert_with_ttl(k(r, 20_000 + i), Tracked::new(r, i), Duration::from_secs(1));
            }
            clock.advance(Duration::from_secs(2));
            cache.run_pending_tasks();
            for i in 0..30u64 {
                assert!(cache.get(&k(r, 20_000 + i)).is_none());
            }
            // Iteration hands out clones.
            let n = cache.iter().count();
            assert!(n as u64 <= 64);
            // Live reconfiguration.
            cache.set_max_capacity(8);
            cache.set_max_capacity(64);
            for i in 0..100u64 {
                cache.insert(k(r, 30_000 + i), Tracked::new(r, i));
            }
            cache.invalidate_all();
            for i in 0..10u64 {
                cache.insert(k(r, 40_000 + i), Tracked::new(r, i));
            }
            drop(cache);
            reg.assert_all_dropped_once(&format!("{policy:?}, {shards} shards"));
            assert!(seen.load(SeqCst) > 0);
        }
    }
}

/// Docs: "A departing value is dropped ... when the cache itself is dropped." Thousands of
/// departures, then the cache is dropped with no other cache activity on any thread: all dropped.
#[test]
fn holds_departed_values_dropped_when_the_cache_is_dropped() {
    let reg = Registry::new(100_000);
    let cache: Cache<u64, Tracked> = Cache::builder().max_capacity(1_000).build();
    for round in 0..20u64 {
        for i in 0..1_000u64 {
            cache.insert(i, Tracked::new(&reg, round));
        }
    }
    drop(cache);
    reg.assert_all_dropped_once("after drop");
}

/// A thread that caused departures exits; the cache is then dropped from another thread.
#[test]
fn holds_departures_made_by_an_exited_thread_are_dropped() {
    let reg = Registry::new(100_000);
    let cache: Cache<u64, Tracked> = Cache::builder().max_capacity(500).build();
    let handles: Vec<_> = (0..2u64)
        .map(|t| {
            let cache = cache.clone();
            let reg = Arc::clone(&reg);
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    cache.insert(i % 2_000 + t * 2_000, Tracked::new(&reg, i));
                }
                cache.invalidate_all();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    drop(cache);
    reg.assert_all_dropped_once("after threads exited and the cache was dropped");
}

/// Docs (`Cache`, Guarantees): "A departing value is dropped once no reader can still be reading it
/// ...: soon, on whichever thread next lets the epoch collect (any thread using a cache)";
/// `run_pending_tasks`: "hands departed entries to the epoch in every shard now".
///
/// 64 values of 1 MiB are invalidated (`invalidate_all`), then `run_pending_tasks`, then 1,000
/// ordinary calls on the cache from this thread, with no reader holding anything: the memory must
/// have been released by then.
// DEFECT: all 64 MiB are still held (they are released only after about 140 further inserts, or when
// the cache is dropped, or when the thread that removed them exits).
#[test]
fn departed_large_values_released_soon_after_invalidate_all() {
    for policy in POLICIES {
        let reg = Registry::new(10_000);
        let cache: Cache<u64, Tracked> = Cache::builder().max_capacity(1_000).policy(policy).build();
        for i in 0..64u64 {
            cache.insert(i, Tracked::with_payload(&reg, i, 1 << 20));
        }
        assert_eq!(reg.live_bytes.load(SeqCst), 64 << 20);
        cache.invalidate_all();
        cache.run_pending_tasks();
        for i in 0..1_000u64 {
            let _ = cache.get(&(i % 64));
            if i % 100 == 0 {
                cache.insert(10_000 + i, Tracked::new(&reg, i));
            }
        }
        let left = live_after_collecting(&cache, &reg, 0);
        assert_eq!(left, 0, "{policy:?}: {} MiB of invalidated values still held after 1,000 more calls", left >> 20);
        drop(cache);
        reg.assert_all_dropped_once("drop");
    }
}

/// Same bound after shrinking: `set_max_capacity` "Shrinking evicts, shard by shard, down to the new
/// capacity".
#[test]
fn holds_evicted_large_values_released_soon_after_shrinking() {
    let reg = Registry::new(10_000);
    let cache: Cache<u64, Tracked> =
        Cache::builder().max_capacity(256 << 20).shards(4).weigher(|_k, v: &Tracked| v.payload.len() as u32).build();
    for i in 0..64u64 {
        cache.insert(i, Tracked::with_payload(&reg, i, 1 << 20));
    }
    assert_eq!(cache.weighted_size(), 64 << 20);
    cache.set_max_capacity(8 << 20);
    assert!(cache.weighted_size() <= 8 << 20);
    cache.run_pending_tasks();
    for i in 0..1_000u64 {
        let _ = cache.get(&(i % 64));
    }
    let held = cache.weighted_size();
    let live = live_after_collecting(&cache, &reg, held);
    assert!(
        live <= held,
        "held by the cache {} MiB, alive {} MiB after shrinking and 1,000 calls",
        held >> 20,
        live >> 20
    );
    drop(cache);
    reg.assert_all_dropped_once("drop");
}

/// The same bound for the batch call: `invalidate_many` of every key.
// DEFECT: all 64 MiB are still held.
#[test]
fn departed_large_values_released_soon_after_invalidate_many() {
    let reg = Registry::new(10_000);
    let cache: Cache<u64, Tracked> = Cache::builder().max_capacity(1_000).build();
    for i in 0..64u64 {
        cache.insert(i, Tracked::with_payload(&reg, i, 1 << 20));
    }
    let keys: Vec<u64> = (0..64).collect();
    let refs: Vec<&u64> = keys.iter().collect();
    assert_eq!(cache.invalidate_many(&refs), 64);
    cache.run_pending_tasks();
    for i in 0..1_000u64 {
        let _ = cache.get(&(i % 64));
    }
    let left = live_after_collecting(&cache, &reg, 0);
    assert_eq!(left, 0, "{} MiB of invalidated values still held", left >> 20);
}

/// The same bound for every other way out: `remove`, replacement by a small value, `invalidate_if`, and
/// expiry (reclaimed by `run_pending_tasks`: "Reclaims expired entries ... and hands departed entries to
/// the epoch in every shard now"). After each, `run_pending_tasks` and 1,000 reads (with
/// `run_pending_tasks` every 100) on this thread.
// DEFECT: on every one of these paths the 64 MiB stay held.
#[test]
fn departed_large_values_released_soon_on_every_path() {
    let mut held = Vec::new();
    for path in ["remove", "replace", "invalidate_if", "expiry"] {
        let reg = Registry::new(10_000);
        let clock = ManualClock::new();
        let cache: Cache<u64, Tracked> =
            Cache::builder().max_capacity(1_000).time_to_live(Duration::from_secs(10)).clock(clock.clone()).build();
        for i in 0..64u64 {
            cache.insert(i, Tracked::with_payload(&reg, i, 1 << 20));
        }
        match path {
            "remove" => {
                for i in 0..64u64 {
                    assert!(cache.remove(&i).is_some());
                }
            }
            "replace" => {
                for i in 0..64u64 {
                    cache.insert(i, Tracked::new(&reg, i));
                }
            }
            "invalidate_if" => assert_eq!(cache.invalidate_if(|_, _| true), 64),
            _ => clock.advance(Duration::from_secs(11)),
        }
        cache.run_pending_tasks();
        for i in 0..1_000u64 {
            let _ = cache.get(&(i % 64));
            if i % 100 == 99 {
                cache.run_pending_tasks();
            }
        }
        let left = live_after_collecting(&cache, &reg, 0) >> 20;
        if left > 0 {
            held.push(format!("{path}: {left} MiB still held"));
        }
        drop(cache);
        reg.assert_all_dropped_once(path);
    }
    assert!(held.is_empty(), "departed values not released: {held:#?}");
}

/// Docs (module docs of the engine): "User code (loaders, weighers, listeners, and `Drop` of keys and
/// values) never runs under a lock of ours". A value whose `Drop` uses the same cache (one shard) must
/// therefore never deadlock, whatever makes it leave.
#[test]
fn holds_value_drop_may_call_back_into_the_cache() {
    struct Reentrant(u64);
    static CACHE: OnceLock<Cache<u64, Arc<Reentrant>>> = OnceLock::new();
    static DROPS: AtomicU64 = AtomicU64::new(0);
    impl Drop for Reentrant {
        fn drop(&mut self) {
            DROPS.fetch_add(1, SeqCst);
            if let Some(c) = CACHE.get() {
                let _ = c.get(&(self.0 + 1));
                let _ = c.contains_key(&self.0);
                // A write on the same shard.
                c.invalidate(&u64::MAX);
                let _ = c.room_for(&self.0);
            }
        }
    }
    watchdog(20, "Drop calling into the cache", || {
        let cache = CACHE.get_or_init(|| {
            Cache::builder()
                .max_capacity(4)
                .shards(1)
                .policy(Policy::Lru)
                .time_to_live(Duration::from_secs(3600))
                .build()
        });
        for i in 0..2_000u64 {
            cache.insert(i % 10, Arc::new(Reentrant(i)));
            if i % 7 == 0 {
                cache.invalidate(&(i % 10));
            }
            if i % 11 == 0 {
                let _ = cache.remove(&((i + 1) % 10));
            }
            if i % 13 == 0 {
                cache.set_max_capacity(2);
                cache.set_max_capacity(4);
            }
            if i % 17 == 0 {
                cache.run_pending_tasks();
            }
        }
        cache.invalidate_all();
        cache.run_pending_tasks();
        for i in 0..1_000u64 {
            let _ = cache.get(&i);
        }
        // Sanity: the Drop did run (how many have run by now depends on when the epoch collects).
        assert!(DROPS.load(SeqCst) > 100, "drops: {}", DROPS.load(SeqCst));
    });
}

/// A key whose `Drop` calls into the cache (same reasoning as for values).
#[test]
fn holds_key_drop_may_call_back_into_the_cache() {
    #[derive(Clone, PartialEq, Eq, Hash)]
    struct Key(u64, bool);
    static CACHE: OnceLock<Cache<Key, u64>> = OnceLock::new();
    impl Drop for Key {
        fn drop(&mut self) {
            if self.1
                && let Some(c) = CACHE.get()
            {
                let _ = c.get(&Key(self.0 + 1, false));
                c.invalidate(&Key(u64::MAX, false));
            }
        }
    }
    watchdog(20, "key Drop calling into the cache", || {
        let cache = CACHE.get_or_init(|| Cache::builder().max_capacity(4).shards(1).policy(Policy::Lfu).build());
        for i in 0..200u64 {
            cache.insert(Key(i % 10, true), i);
            if i % 5 == 0 {
                cache.invalidate(&Key(i % 10, false));
            }
            let _ = cache.get_with(Key(i % 3, true), || i);
        }
        cache.invalidate_all();
        cache.run_pending_tasks();
    });
}

/// `get` returns a clone; a value whose `Clone` panics makes `get` panic. The docs promise that
/// panics in user code leave "the cache ... usable and consistent"; a `Clone` panic is not listed, so
/// this checks only that the cache keeps working and nothing is dropped twice or leaked.
#[test]
fn holds_panicking_clone_in_get_leaves_cache_usable() {
    let reg = Registry::new(10_000);
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    let cache: Cache<u64, Tracked> = Cache::builder()
        .max_capacity(10)
        .shards(1)
        .eviction_listener(move |k, v: Tracked, c| ev.lock().unwrap().push((k, v.id, c)))
        .build();
    for i in 0..5u64 {
        cache.insert(i, Tracked::new(&reg, i));
    }
    reg.panic_clone.store(true, SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get(&1)));
    assert!(r.is_err(), "get should propagate the clone's panic");
    let keys = [0u64, 1, 2];
    let refs: Vec<&u64> = keys.iter().collect();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.get_many(&refs)));
    assert!(r.is_err(), "get_many should propagate the clone's panic");
    reg.panic_clone.store(false, SeqCst);
    watchdog(10, "cache after clone panic", move || {
        for i in 0..5u64 {
            assert_eq!(cache.get(&i).map(|v| v.id), Some(i));
        }
        cache.insert(1, Tracked::new(&reg, 100));
        assert_eq!(cache.get(&1).map(|v| v.id), Some(100));
        assert_eq!(cache.len(), cache.iter().count() as u64);
        assert_eq!(cache.len(), 5);
        drop(cache);
        drop(events);
        reg.assert_all_dropped_once("after clone panics");
    });
}

/// Values whose `Drop` panics (not mentioned by the docs). Run in a child process: an abort there
/// cannot take down the other tests. Checks the process survives and the cache stays usable.
#[test]
fn holds_panicking_value_drop_leaves_cache_usable() {
    if std::env::var_os("HOSTILE_CHILD").is_some() {
        return;
    }
    let (ok, out) = run_child("child_panicking_value_drop", 30);
    assert!(ok, "child failed:\n{out}");
}

#[test]
#[ignore = "run by holds_panicking_value_drop_leaves_cache_usable in a child process"]
fn child_panicking_value_drop() {
    let reg = Registry::new(10_000);
    let cache: Cache<u64, Tracked> = Cache::builder().max_capacity(10).shards(1).build();
    for i in 0..10u64 {
        cache.insert(i, Tracked::new(&reg, i));
    }
    reg.panic_drop.store(true, SeqCst);
    for i in 0..10u64 {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.invalidate(&i);
            cache.run_pending_tasks();
        }));
    }
    reg.panic_drop.store(false, SeqCst);
    watchdog(10, "cache after drop panics", move || {
        for i in 0..20u64 {
            cache.insert(i, Tracked::new(&reg, i));
            assert_eq!(cache.get(&i).map(|v| v.id), Some(i));
        }
        assert_eq!(cache.len(), cache.iter().count() as u64);
        assert!(cache.len() <= 10);
    });
}

/// `RemovalCause::Replaced`: "Overwritten by an `insert` of the same key (the listener gets the *old*
/// value)". The key given to the listener for a replacement, and every value, are dropped once.
#[test]
fn holds_replacement_hands_old_value_and_drops_both_keys_once() {
    let reg = Registry::new(10_000);
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let cache: TCache = Cache::builder()
        .max_capacity(100)
        .eviction_listener(move |k: Tracked, v: Tracked, c| g.lock().unwrap().push((k.id, v.id, c)))
        .build();
    cache.insert(Tracked::new(&reg, 1), Tracked::new(&reg, 10));
    cache.insert(Tracked::new(&reg, 1), Tracked::new(&reg, 11));
    cache.insert_many([
        (Tracked::new(&reg, 1), Tracked::new(&reg, 12)),
        (Tracked::new(&reg, 1), Tracked::new(&reg, 13)),
    ]);
    assert_eq!(cache.get(&Tracked::new(&reg, 1)).map(|v| v.id), Some(13));
    assert_eq!(
        *got.lock().unwrap(),
        vec![(1, 10, RemovalCause::Replaced), (1, 11, RemovalCause::Replaced), (1, 12, RemovalCause::Replaced)]
    );
    let s = cache.stats();
    assert_eq!((s.inserts, s.updates, s.removed(RemovalCause::Replaced)), (1, 3, 3));
    drop(cache);
    reg.assert_all_dropped_once("replacements");
}

/// Clone panics while departures are handed to the listener (which "gets clones of the key and the
/// value"). Not listed among the documented panics, so this checks only what "the cache stays usable and
/// consistent" would mean for it: gauges match contents afterwards, every call works, and once the cache
/// is dropped every instance was dropped exactly once.
#[test]
fn holds_panicking_clone_for_the_listener_leaves_cache_consistent() {
    for policy in POLICIES {
        let reg = Registry::new(10_000);
        let cache: Cache<u64, Tracked> =
            Cache::builder().max_capacity(4).shards(1).policy(policy).eviction_listener(|_k, _v, _c| {}).build();
        for i in 0..4u64 {
            cache.insert(i, Tracked::new(&reg, i));
        }
        reg.panic_clone.store(true, SeqCst);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.insert_many((10..20u64).map(|i| (i, Tracked::new(&reg, i))));
        }));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.invalidate_all()));
        reg.panic_clone.store(false, SeqCst);
        assert!(r.is_err(), "{policy:?}: expected the clone's panic to reach the caller");
        let what = format!("{policy:?}");
        let reg2 = Arc::clone(&reg);
        let c = cache.clone();
        watchdog(10, &what, move || {
            let s = c.stats();
            assert_eq!(s.entries, c.iter().count() as u64, "entries vs iter");
            assert_eq!(c.len(), s.entries);
            for i in 100..110u64 {
                c.insert(i, Tracked::new(&reg2, i));
            }
            assert!(c.len() <= 4);
            c.invalidate_all();
            assert_eq!(c.len(), 0);
        });
        drop(cache);
        reg.assert_all_dropped_once(&what);
    }
}
