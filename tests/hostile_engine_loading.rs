//! Hostile tests of single-flight loading in `cachefs::Cache` (`get_with`, `try_get_with`) and of races
//! of several threads on one key. Written from the public documentation only.

mod hostile_engine_util;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use cachefs::{Cache, Policy, RemovalCause};
use hostile_engine_util::{Colliding, Registry, Tracked, watchdog};

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

/// `threads` callers of `get_with(key)` released together; the loader sleeps so that they all miss.
/// Returns (loader calls, values returned).
fn stampede(cache: &Cache<u64, u64>, key: u64, threads: usize) -> (u64, Vec<u64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_with(key, || {
                    calls.fetch_add(1, SeqCst);
                    std::thread::sleep(Duration::from_millis(150));
                    1_000 + t as u64
                })
            })
        })
        .collect();
    let values = hs.into_iter().map(|h| h.join().unwrap()).collect();
    (calls.load(SeqCst), values)
}

/// Docs (`Cache`): "Concurrent `get_with` / `try_get_with` misses on one key run one loader; the others
/// wait for it and share its value." `get_with`: "Concurrent misses on one key run `init` once; the
/// other callers wait and get its value." Nothing says this depends on the value being kept, so it must
/// hold in a cache of capacity 0 ("stores nothing") and for a value the weigher makes too heavy to keep.
#[test]
fn holds_single_flight_when_the_value_is_not_kept() {
    let mut bad = Vec::new();
    let zero: Cache<u64, u64> = Cache::new(0);
    let (calls, values) = stampede(&zero, 1, 6);
    if calls != 1 || values.iter().collect::<HashSet<_>>().len() != 1 {
        bad.push(format!("capacity 0: {calls} loader calls, values {values:?}"));
    }
    let heavy: Cache<u64, u64> = Cache::builder().max_capacity(100).shards(1).weigher(|_, v: &u64| *v as u32).build();
    let (calls, values) = stampede(&heavy, 1, 6);
    if calls != 1 || values.iter().collect::<HashSet<_>>().len() != 1 {
        bad.push(format!("value heavier than the shard: {calls} loader calls, values {values:?}"));
    }
    assert!(bad.is_empty(), "{bad:#?}");
}

/// The same stampede while another thread keeps changing the capacity between 0 and 100.
#[test]
fn holds_single_flight_while_the_capacity_changes() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build();
    let stop = Arc::new(AtomicBool::new(false));
    let toggler = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 1_000_000 {
                n += 1;
                cache.set_max_capacity(if n.is_multiple_of(2) { 0 } else { 100 });
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let mut bad = Vec::new();
    for round in 0..6u64 {
        let (calls, values) = stampede(&cache, round, 5);
        if calls != 1 || values.iter().collect::<HashSet<_>>().len() != 1 {
            bad.push(format!("round {round}: {calls} loader calls, values {values:?}"));
        }
    }
    stop.store(true, SeqCst);
    toggler.join().unwrap();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Baseline: in an ordinary cache the stampede runs one loader (every policy).
#[test]
fn holds_single_flight_in_an_ordinary_cache() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).policy(policy).build();
        let (calls, values) = stampede(&cache, 7, 6);
        assert_eq!(calls, 1, "{policy:?}");
        assert_eq!(values.iter().collect::<HashSet<_>>().len(), 1, "{policy:?}: {values:?}");
        assert_eq!(cache.stats().loads_ok, 1);
    }
}

/// Keys with equal hashes are still different keys: a load of one is never handed to a caller of the
/// other, and a loader may load another key (only "the same key" is forbidden), even one with the
/// same hash.
#[test]
fn holds_colliding_keys_load_separately() {
    watchdog(20, "colliding loads", || {
        let cache: Cache<Colliding, u64> = Cache::builder().max_capacity(100).shards(1).build();
        let c2 = cache.clone();
        let slow = std::thread::spawn(move || {
            c2.get_with(Colliding(1), || {
                std::thread::sleep(Duration::from_millis(200));
                1
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(cache.get_with(Colliding(2), || 2), 2);
        assert_eq!(slow.join().unwrap(), 1);
        // Nested: the loader of one key loads another key of the same hash.
        let c3 = cache.clone();
        let v = cache.get_with(Colliding(10), move || c3.get_with(Colliding(11), || 11) + 100);
        assert_eq!(v, 111);
        assert_eq!(cache.get(&Colliding(11)), Some(11));
        assert_eq!(cache.get(&Colliding(10)), Some(111));
    });
}

/// Docs (`get_with`): "If the key is inserted while `init` runs, that value is kept and returned (the load
/// is discarded)." Through every way of inserting: `insert`, `insert_with_ttl`, `insert_many`, from
/// another thread and from the loader itself.
#[test]
fn holds_an_insert_during_the_load_wins_whatever_the_call() {
    for how in 0..3 {
        for same_thread in [false, true] {
            let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).build();
            let c2 = cache.clone();
            let insert = move || match how {
                0 => c2.insert(1, 5),
                1 => c2.insert_with_ttl(1, 5, Duration::from_secs(3600)),
                _ => c2.insert_many([(1, 5), (2, 6)]),
            };
            let v = watchdog(10, "load with an insert", {
                let cache = cache.clone();
                move || {
                    if same_thread {
                        cache.get_with(1, move || {
                            insert();
                            7
                        })
                    } else {
                        let barrier = Arc::new(Barrier::new(2));
                        let b2 = Arc::clone(&barrier);
                        let t = std::thread::spawn(move || {
                            b2.wait();
                            insert();
                            b2.wait();
                        });
                        let v = cache.get_with(1, move || {
                            barrier.wait();
                            barrier.wait();
                            7
                        });
                        t.join().unwrap();
                        v
                    }
                }
            });
            assert_eq!((v, cache.get(&1)), (5, Some(5)), "insert kind {how}, same thread {same_thread}");
        }
    }
}

/// Docs (`CacheStats`): `loads_ok` "Loader calls of `get_with` / `try_get_with` that produced a value";
/// `loads_failed` "Loader calls that failed or panicked".
#[test]
fn holds_load_counters_are_exact() {
    let cache: Cache<u64, u64> = Cache::new(1_000);
    for i in 0..30u64 {
        let _ = cache.get_with(i, || i);
    }
    for i in 0..30u64 {
        let _ = cache.get_with(i, || unreachable!());
    }
    for i in 100..110u64 {
        assert!(cache.try_get_with(i, || Err::<u64, _>("no")).is_err());
    }
    for i in 200..205u64 {
        let c = cache.clone();
        assert!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || c.get_with(i, || panic!("loader")))).is_err()
        );
    }
    for i in 300..305u64 {
        assert_eq!(cache.try_get_with(i, || Ok::<_, ()>(i)), Ok(i));
    }
    let s = cache.stats();
    assert_eq!((s.loads_ok, s.loads_failed), (35, 15));
}

/// Several threads race on one key with every kind of call, including `set_max_capacity`, with values
/// that count their instances. Afterwards: no value reported twice; every value stored by `insert` is
/// held or was reported; every value returned by `remove` was reported as `Removed`; every `get` saw a
/// value someone produced; and, once the cache is dropped, every instance was dropped exactly once.
/// Docs: "Operations on one key are linearizable"; listeners get "every departure with its cause".
#[test]
fn holds_one_key_races_account_for_every_value() {
    for policy in POLICIES {
        let reg = Registry::new(2_000_000);
        let events = Arc::new(Mutex::new(Vec::<(u64, RemovalCause)>::new()));
        let e2 = Arc::clone(&events);
        let cache: Cache<u64, Tracked> = Cache::builder()
            .max_capacity(4)
            .shards(1)
            .policy(policy)
            .eviction_listener(move |_k, v: Tracked, c| e2.lock().unwrap().push((v.id, c)))
            .build();
        let next = Arc::new(AtomicU64::new(1));
        let inserted = Arc::new(Mutex::new(HashSet::new()));
        let removed = Arc::new(Mutex::new(Vec::new()));
        let foreign = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let (cache, reg, next, inserted, removed, foreign) = (
                    cache.clone(),
                    Arc::clone(&reg),
                    Arc::clone(&next),
                    Arc::clone(&inserted),
                    Arc::clone(&removed),
                    Arc::clone(&foreign),
                );
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let key = if i % 8 == 0 { 1 + (i / 8) % 6 } else { 0 };
                        let id = next.fetch_add(1, SeqCst);
                        match (i + t) % 9 {
                            0 | 1 => {
                                inserted.lock().unwrap().insert(id);
                                cache.insert(key, Tracked::new(&reg, id));
                            }
                            2 => {
                                if let Some(v) = cache.remove(&key) {
                                    removed.lock().unwrap().push(v.id);
                                }
                            }
                            3 => {
                                let v = cache.get_with(key, || Tracked::new(&reg, id));
                                if v.id >= next.load(SeqCst) {
                                    foreign.fetch_add(1, SeqCst);
                                }
                            }
                            4 => {
                                cache.invalidate(&key);
                            }
                            5 if t == 0 && i % 90 == 5 => cache.set_max_capacity(if i % 180 == 5 { 0 } else { 4 }),
                            6 => {
                                inserted.lock().unwrap().insert(id);
                                cache.insert_many([(key, Tracked::new(&reg, id))]);
                            }
                            7 => {
                                let _ = cache.try_get_with(key, || {
                                    if id % 2 == 0 { Ok(Tracked::new(&reg, id)) } else { Err(()) }
                                });
                            }
                            _ => {
                                if let Some(v) = cache.get(&key)
                                    && v.id >= next.load(SeqCst)
                                {
                                    foreign.fetch_add(1, SeqCst);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        cache.set_max_capacity(4);
        let held: HashMap<u64, u64> = cache.iter().map(|(k, v)| (k, v.id)).collect();
        let ev = events.lock().unwrap().clone();
        let what = format!("{policy:?}");
        let mut count: HashMap<u64, u32> = HashMap::new();
        for (id, _) in &ev {
            *count.entry(*id).or_default() += 1;
        }
        assert!(count.values().all(|n| *n == 1), "{what}: a value reported twice");
        let held_ids: HashSet<u64> = held.values().copied().collect();
        for id in inserted.lock().unwrap().iter() {
            assert!(held_ids.contains(id) || count.contains_key(id), "{what}: inserted value {id} vanished unreported");
        }
        for id in removed.lock().unwrap().iter() {
            assert!(ev.contains(&(*id, RemovalCause::Removed)), "{what}: removed value {id} not reported as Removed");
        }
        assert_eq!(foreign.load(SeqCst), 0, "{what}");
        drop(cache);
        drop(events);
        reg.assert_all_dropped_once(&what);
    }
}

/// Module docs of the engine: "User code (loaders, weighers, listeners, ...) never runs under a lock of
/// ours". While a loader runs, another thread can load another key (even one of the same hash), insert,
/// read, and reconfigure the cache.
#[test]
fn holds_loader_never_runs_under_a_lock() {
    let cache: Cache<Colliding, u64> = Cache::builder().max_capacity(100).shards(1).build();
    let stuck = Arc::new(Mutex::new(Vec::new()));
    let c2 = cache.clone();
    let st = Arc::clone(&stuck);
    let v = watchdog(20, "loader probing", move || {
        c2.clone().get_with(Colliding(1), move || {
            type Probe = (&'static str, Box<dyn FnOnce(Cache<Colliding, u64>) + Send>);
            let probes: Vec<Probe> = vec![
                ("get_with of another key", Box::new(|c| assert_eq!(c.get_with(Colliding(2), || 2), 2))),
                (
                    "try_get_with of another key",
                    Box::new(|c| assert_eq!(c.try_get_with(Colliding(3), || Ok::<_, ()>(3)), Ok(3))),
                ),
                ("insert", Box::new(|c| c.insert(Colliding(4), 4))),
                ("get", Box::new(|c| assert_eq!(c.get(&Colliding(4)), Some(4)))),
                ("set_max_capacity", Box::new(|c| c.set_max_capacity(200))),
                ("set_time_to_idle", Box::new(|c| c.set_time_to_idle(None))),
                ("invalidate_all", Box::new(|c| c.invalidate_all())),
            ];
            for (name, p) in probes {
                let c = c2.clone();
                if hostile_engine_util::finishes_within(2.0, move || p(c)).is_none() {
                    st.lock().unwrap().push(name);
                }
            }
            1
        })
    });
    assert_eq!(v, 1);
    assert!(stuck.lock().unwrap().is_empty(), "waited for a running loader: {:?}", stuck.lock().unwrap());
}
