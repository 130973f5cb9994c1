//! Loom models of the cachefs engine. They run the real engine: under `--cfg loom`, cachefs's
//! `src/sync.rs` swaps its locks and atomics for loom's, and the read buffer shrinks to two cells.
//!
//! Run: `scripts/loom` (or `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p loom-tests --release`).
//! `loom-tests/README.md` records, for each model, a mutation of the engine that made it fail.
#![cfg(loom)]

use cachefs::{Cache, Policy, RemovalCause};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

/// `loom::model` with room for the engine's epoch: every pin and unpin of a guard is a few modelled
/// atomics, so an execution has many more branches than its locks alone would give.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = std::env::var("LOOM_MAX_BRANCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    builder.check(f);
}

/// [`model`] for the models with three threads, at one preemption: each thread's first pin makes the
/// epoch scan every registered thread, and at two preemptions these take 60 to 200 s each (they pass:
/// `LOOM_FULL=1 scripts/loom` runs them at the bound the environment sets).
fn three_thread_model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = std::env::var("LOOM_MAX_BRANCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    if std::env::var_os("LOOM_FULL").is_none() {
        builder.preemption_bound = Some(1);
    }
    builder.check(f);
}

fn lru(capacity: u64) -> Cache<u64, u64> {
    Cache::builder().max_capacity(capacity).shards(1).policy(Policy::Lru).build()
}

/// Every departure the listener saw.
type Departures = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn recorded(capacity: u64, policy: Policy) -> (Cache<u64, u64>, Departures) {
    let seen: Departures = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let cache = Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .policy(policy)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)))
        .build();
    (cache, seen)
}

/// Model 1: two writers insert different keys into one shard, one of them then reads.
#[test]
fn concurrent_inserts_lose_nothing() {
    model(|| {
        let cache = lru(3);
        cache.insert(0, 0);
        // The main thread is the second writer and then the reader: each thread's first pin makes the
        // epoch scan every registered thread, which loom explores at length, so the model keeps to two.
        let writer = {
            let c = cache.clone();
            thread::spawn(move || c.insert(1, 10))
        };
        cache.insert(2, 20);
        assert_eq!(cache.get(&0), Some(0), "nothing was evicted, the read must hit");
        writer.join().unwrap();
        cache.validate();
        assert_eq!((cache.len(), cache.weighted_size()), (3, 3), "gauges agree with contents");
        for k in 0..=2u64 {
            assert_eq!(cache.get(&k), Some(k * 10));
        }
        // One more forces an eviction: capacity holds.
        cache.insert(9, 90);
        cache.validate();
        assert_eq!(cache.len(), 3);
    });
}

/// Model 2: insert, remove and get race on one key.
#[test]
fn insert_remove_get_of_one_key() {
    three_thread_model(|| {
        let (cache, seen) = recorded(4, Policy::Hybrid);
        cache.insert(7, 1);
        let inserter = {
            let c = cache.clone();
            thread::spawn(move || c.insert(7, 2))
        };
        let remover = {
            let c = cache.clone();
            thread::spawn(move || c.remove(&7))
        };
        let got = cache.get(&7);
        inserter.join().unwrap();
        let removed = remover.join().unwrap();
        assert!(matches!(got, None | Some(1) | Some(2)), "read saw {got:?}");
        let after = cache.get(&7);
        cache.validate();
        let seen = seen.lock().unwrap().clone();
        // Whatever `remove` returned is exactly what left with cause Removed.
        let removed_by_listener: Vec<u64> = seen.iter().filter(|d| d.2 == RemovalCause::Removed).map(|d| d.1).collect();
        assert_eq!(removed_by_listener, removed.into_iter().collect::<Vec<_>>());
        match removed {
            // Removed before the insert: the insert's value stays.
            Some(1) => assert_eq!(after, Some(2)),
            // Removed after the insert: nothing stays.
            Some(2) => assert_eq!(after, None),
            other => panic!("remove must find a value, got {other:?}"),
        }
    });
}

/// Model 3a: two callers miss one key; the loader runs once and both get its value.
#[test]
fn get_with_loads_once() {
    model(|| {
        let cache = lru(4);
        let calls = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let (c, calls) = (cache.clone(), calls.clone());
                thread::spawn(move || {
                    c.get_with(5, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        50
                    })
                })
            })
            .collect();
        for h in callers {
            assert_eq!(h.join().unwrap(), 50);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
        let s = cache.stats();
        assert_eq!((s.loads_ok, s.inserts), (1, 1));
    });
}

/// Model 3b: a failing loader releases the waiter, which then loads itself.
#[test]
fn failed_load_releases_the_waiter() {
    three_thread_model(|| {
        let cache = lru(4);
        let failing = {
            let c = cache.clone();
            thread::spawn(move || c.try_get_with(5, || Err::<u64, &str>("down")))
        };
        let good = {
            let c = cache.clone();
            thread::spawn(move || c.try_get_with(5, || Ok::<u64, &str>(50)))
        };
        let f = failing.join().unwrap();
        assert_eq!(good.join().unwrap(), Ok(50));
        // The failing caller either failed itself or found the good value already loaded.
        assert!(f == Err("down") || f == Ok(50));
        assert_eq!(cache.get(&5), Some(50));
        let s = cache.stats();
        assert_eq!(s.loads_ok, 1);
        assert_eq!(s.loads_failed, u64::from(f.is_err()));
    });
}

/// Model 4: an eviction listener that calls back into the cache does not deadlock.
#[test]
fn listener_reenters_the_cache() {
    model(|| {
        // The listener reaches the cache through this slot; emptied at the end to break the cycle.
        let slot: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::new(Mutex::new(None));
        let s = slot.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1)
            .shards(1)
            .policy(Policy::Lru)
            .eviction_listener(move |k, v, _| {
                let cache = s.lock().unwrap().clone();
                if let Some(cache) = cache {
                    let _ = cache.get(&k);
                    if k < 100 {
                        cache.insert(k + 100, v);
                    }
                }
            })
            .build();
        *slot.lock().unwrap() = Some(cache.clone());
        cache.insert(1, 1);
        let other = {
            let c = cache.clone();
            thread::spawn(move || c.insert(2, 2))
        };
        cache.insert(3, 3);
        other.join().unwrap();
        cache.validate();
        assert_eq!(cache.len(), 1);
        slot.lock().unwrap().take();
    });
}

/// Model 5: after all threads join, the striped statistics equal the operations performed.
#[test]
fn stats_add_up() {
    three_thread_model(|| {
        let cache = lru(2);
        cache.insert(1, 1);
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let c = cache.clone();
                thread::spawn(move || {
                    let hit = c.get(&1).is_some();
                    let missed = c.get(&(10 + t)).is_none();
                    c.get_with(20, || 20);
                    (hit, missed)
                })
            })
            .collect();
        for h in threads {
            assert_eq!(h.join().unwrap(), (true, true));
        }
        let s = cache.stats();
        assert_eq!(s.hits + s.misses, 6, "one hit or miss per get and per get_with: {s:?}");
        // Two hits on key 1; the second get_with hits too if it came after the load finished.
        assert!((2..=3).contains(&s.hits), "{s:?}");
        assert_eq!(s.loads_ok, 1);
        assert_eq!(s.inserts, 2);
        let left: u64 = s.removed_by_cause.iter().sum();
        assert_eq!(s.entries, s.inserts + s.updates - left);
    });
}

/// Model 6: a stale read record must never promote the slot's new tenant.
///
/// The read buffer is lossy: a writer's drain resets the cursor, and a reader that claimed a cell before
/// the reset stores its record after it, into a cell no drain reads. That record stays there while its key
/// is removed and its slot reused by key 3, until a later reader claims the same cell and a drain reads the
/// cell before that reader's own store lands: the drain replays the old record against key 3. Only the
/// generation check in `Shard::record_read` stops it promoting key 3 (which would make insert(5) evict 4,
/// the most recent key, instead of 3, the least recent).
///
/// Two threads hand over at blocking points (gates), so that loom needs only two preemptions for that
/// path: the main thread's read of key 1 preempted between claiming its cell and storing (the writer's
/// insert(2) drains and resets in between), and the writer's read of key 4 preempted in the same place
/// (the main thread's insert(5) drains in between). Every other interleaving must end the same way.
#[test]
fn reads_racing_slot_reuse() {
    model(|| {
        let cache = lru(2);
        cache.insert(1, 10);
        let read_done = Gate::new();
        let reused = Gate::new();
        let writer = {
            let (c, read_done, reused) = (cache.clone(), read_done.clone(), reused.clone());
            thread::spawn(move || {
                c.insert(2, 20);
                read_done.wait();
                // Key 1's slot is freed (nobody is pinned now) and reused by key 3; key 4 follows, so
                // key 3 is the least recently used.
                c.remove(&1);
                c.run_pending_tasks();
                c.insert(3, 30);
                c.insert(4, 40);
                reused.open();
                c.get(&4)
            })
        };
        let got = cache.get(&1);
        assert!(matches!(got, None | Some(10)), "key 1 read {got:?}");
        read_done.open();
        reused.wait();
        cache.insert(5, 50);
        assert_eq!(writer.join().unwrap(), Some(40));
        cache.validate();
        assert_eq!(cache.get(&3), None, "key 3, the least recent, is the one evicted");
        assert_eq!(cache.get(&4), Some(40), "key 4 was evicted: a stale record promoted key 3");
        assert_eq!(cache.get(&5), Some(50));
    });
}

/// A one-shot signal between two modelled threads: `wait` blocks (a free switch for loom, not a
/// preemption) until `open`.
#[derive(Clone)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn new() -> Self {
        Gate(Arc::new((Mutex::new(false), Condvar::new())))
    }

    fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            open = self.0.1.wait(open).unwrap();
        }
    }
}

/// Model 7: a lock-free `get` racing the replacement of its key's value. The new value goes into a new
/// slot, the old slot is retired and handed to the epoch; the reader holds only an epoch guard. It must
/// read the old value or the new one, whole, and never touch the old slot after it was reclaimed (loom
/// checks every access to a slot's entry cell against the reclamation's writes).
#[test]
fn lock_free_read_racing_replace() {
    model(|| {
        let cache: Cache<u64, String> = Cache::builder().max_capacity(4).shards(1).build();
        cache.insert(1, "one".to_string());
        let reader = {
            let c = cache.clone();
            thread::spawn(move || c.get(&1))
        };
        cache.insert(1, "uno".to_string());
        // Departed entries go to the epoch now and it collects: reclamation races the reader.
        cache.run_pending_tasks();
        let got = reader.join().unwrap();
        assert!(matches!(got.as_deref(), Some("one" | "uno")), "read {got:?}");
        assert_eq!(cache.get(&1).as_deref(), Some("uno"));
        cache.validate();
    });
}

/// Model 8: a lock-free `get` racing the eviction of its key and the reuse of the evicted slot by
/// another key. A capacity-1 cache: every write evicts, and (the departed weight being all of the
/// capacity) has the epoch collect at once, so a reclaimed slot can be reused within the model. The
/// reader sees key 1's value or nothing, never key 2's or 3's.
#[test]
fn lock_free_read_racing_eviction_and_slot_reuse() {
    model(|| {
        let cache: Cache<u64, String> = Cache::builder().max_capacity(1).shards(1).policy(Policy::Lru).build();
        cache.insert(1, "one".to_string());
        let reader = {
            let c = cache.clone();
            thread::spawn(move || c.get(&1))
        };
        cache.insert(2, "two".to_string());
        cache.insert(3, "three".to_string());
        let got = reader.join().unwrap();
        assert!(matches!(got.as_deref(), None | Some("one")), "key 1 read {got:?}");
        assert_eq!(cache.get(&3).as_deref(), Some("three"));
        cache.validate();
    });
}
