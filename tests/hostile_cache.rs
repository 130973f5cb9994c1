//! Hostile tests of the engine `cachefs::Cache`, written from its public documentation only.
//!
//! `holds_*` tests check a documented promise that held when they were written; `defect_*` tests
//! check a documented promise that did not (see FINDINGS.md).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

use cachefs::{Cache, ManualClock, Policy, RemovalCause};

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

/// Runs `f` on a thread; a panic there fails the test, and so does taking longer than `secs`
/// (a deadlock becomes a failure instead of a hung test run).
fn watchdog<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(out);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: no answer in {secs} s (deadlock?)"),
    }
}

type Events = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn recording_lru(cap: u64, policy: Policy) -> (Cache<u64, u64>, Events) {
    let events: Events = Arc::default();
    let ev = Arc::clone(&events);
    let cache = Cache::builder()
        .max_capacity(cap)
        .shards(1)
        .policy(policy)
        .eviction_listener(move |k, v, c| ev.lock().unwrap().push((k, v, c)))
        .build();
    (cache, events)
}

fn capacity_victims(events: &Events) -> Vec<u64> {
    events.lock().unwrap().iter().filter(|e| e.2 == RemovalCause::Capacity).map(|e| e.0).collect()
}

/// xorshift64*
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Eviction order
// ---------------------------------------------------------------------------------------------

/// "With one shard and `Policy::Lru`, single-threaded use evicts in exact least-recently-used order."
/// A reference LRU run side by side, with long bursts of reads between writes (a lossy read buffer
/// must not lose recency).
#[test]
fn holds_lru_exact_order_against_reference_with_read_bursts() {
    for seed in 1..=6u64 {
        let cap = 32u64;
        let (cache, events) = recording_lru(cap, Policy::Lru);
        let mut model: VecDeque<u64> = VecDeque::new(); // front = least recent
        let mut rng = Rng(seed * 7919);
        let mut expected_victims = Vec::new();
        for step in 0..4000 {
            let k = rng.below(80);
            match rng.below(10) {
                0..=2 => {
                    // A burst of reads, larger than any plausible read buffer.
                    let burst = 1 + rng.below(if step % 50 == 0 { 2000 } else { 8 });
                    for _ in 0..burst {
                        let k = rng.below(80);
                        let got = cache.get(&k);
                        let present = model.iter().position(|&x| x == k);
                        assert_eq!(got.is_some(), present.is_some(), "seed {seed} step {step}: get {k}");
                        if let Some(i) = present {
                            model.remove(i);
                            model.push_back(k);
                        }
                    }
                }
                3..=6 => {
                    cache.insert(k, step);
                    if let Some(i) = model.iter().position(|&x| x == k) {
                        model.remove(i);
                    } else if model.len() as u64 == cap {
                        expected_victims.push(model.pop_front().unwrap());
                    }
                    model.push_back(k);
                }
                7 => {
                    let had = cache.remove(&k).is_some();
                    let present = model.iter().position(|&x| x == k);
                    assert_eq!(had, present.is_some(), "seed {seed} step {step}: remove {k}");
                    if let Some(i) = present {
                        model.remove(i);
                    }
                }
                8 => {
                    // contains_key "does not count as a read": no recency change.
                    let present = model.contains(&k);
                    assert_eq!(cache.contains_key(&k), present);
                }
                _ => {
                    let had = cache.invalidate(&k);
                    let present = model.iter().position(|&x| x == k);
                    assert_eq!(had, present.is_some());
                    if let Some(i) = present {
                        model.remove(i);
                    }
                }
            }
            assert_eq!(
                capacity_victims(&events),
                expected_victims,
                "seed {seed} step {step}: LRU victims differ from the reference"
            );
        }
    }
}

/// LFU: "Least frequently used goes first, ties by recency".
#[test]
fn holds_lfu_evicts_least_frequent_then_least_recent() {
    let (cache, events) = recording_lru(4, Policy::Lfu);
    for k in 1..=4 {
        cache.insert(k, k);
    }
    // frequencies: 1 → 5 reads, 2 → 3 reads, 3 → 0 reads, 4 → 1 read
    for _ in 0..5 {
        cache.get(&1);
    }
    for _ in 0..3 {
        cache.get(&2);
    }
    cache.get(&4);
    cache.insert(5, 5); // evicts 3 (least frequent)
    assert_eq!(capacity_victims(&events), vec![3]);
    cache.insert(6, 6); // 5 and 4... 5 has 0 reads, 4 has 1 → evicts 5
    assert_eq!(capacity_victims(&events), vec![3, 5]);
    // A newcomer in a full cache evicts a resident, not itself.
    assert_eq!(cache.get(&6), Some(6));
    // Ties by recency: 6 (0 reads, newest) vs... give 6 one read so that 4 and 6 tie at 1 read;
    // 4 is less recent.
    cache.get(&6);
    cache.insert(7, 7); // 7 is the newcomer; the victim is the LRU among least frequent {4, 6}
    assert_eq!(capacity_victims(&events), vec![3, 5, 4]);
    // get_with on a full LFU cache keeps what it loads.
    let loads = AtomicU64::new(0);
    for _ in 0..3 {
        cache.get_with(100, || {
            loads.fetch_add(1, SeqCst);
            100
        });
    }
    assert_eq!(loads.load(SeqCst), 1, "get_with on a full LFU cache must keep what it loaded");
}

/// TTL policy: "The entry closest to its expiry goes first; entries without a deadline follow in
/// LRU order."
#[test]
fn holds_ttl_policy_evicts_earliest_deadline_first_then_lru() {
    let clock = ManualClock::new();
    let events: Events = Arc::default();
    let ev = Arc::clone(&events);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(5)
        .shards(1)
        .policy(Policy::Ttl)
        .clock(clock.clone())
        .eviction_listener(move |k, v, c| ev.lock().unwrap().push((k, v, c)))
        .build();
    cache.insert(1, 1); // no deadline
    cache.insert_with_ttl(2, 2, Duration::from_secs(50));
    cache.insert(3, 3); // no deadline
    cache.insert_with_ttl(4, 4, Duration::from_secs(10));
    cache.insert_with_ttl(5, 5, Duration::from_secs(30));
    cache.get(&1); // 1 now more recent than 3
    for k in 10..15 {
        cache.insert(k, k);
    }
    assert_eq!(capacity_victims(&events), vec![4, 5, 2, 3, 1]);
}

/// "Expired entries always leave before any live entry, whatever the policy."
#[test]
fn holds_expired_entries_leave_before_live_ones_every_policy() {
    for policy in POLICIES {
        let clock = ManualClock::new();
        let events: Events = Arc::default();
        let ev = Arc::clone(&events);
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(8)
            .shards(1)
            .policy(policy)
            .clock(clock.clone())
            .eviction_listener(move |k, v, c| ev.lock().unwrap().push((k, v, c)))
            .build();
        for k in 0..8 {
            if k % 2 == 0 {
                cache.insert_with_ttl(k, k, Duration::from_secs(5));
            } else {
                cache.insert(k, k);
            }
        }
        // Make the short-lived ones popular, so any policy would rather keep them.
        for _ in 0..10 {
            for k in (0..8).step_by(2) {
                cache.get(&k);
            }
        }
        clock.advance(Duration::from_secs(6));
        for k in 100..104 {
            cache.insert(k, k);
        }
        let ev = events.lock().unwrap().clone();
        let live_lost: Vec<_> = ev.iter().filter(|e| e.0 % 2 == 1 && e.0 < 100).collect();
        assert!(live_lost.is_empty(), "{policy:?}: live entries evicted while expired ones were held: {ev:?}");
        for k in (1..8).step_by(2) {
            assert_eq!(cache.get(&k), Some(k), "{policy:?}");
        }
        for e in ev.iter().filter(|e| e.0 % 2 == 0) {
            assert_eq!(e.2, RemovalCause::Expired, "{policy:?}: {e:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------------------------

/// "An expired entry is never returned": by `get`, `get_many`, `contains_key`, `iter`, `remove`,
/// `get_with`, `try_get_with`, in every policy, with a cache TTL, a per-entry TTL and idle time.
#[test]
fn holds_expired_entry_never_returned_by_any_call() {
    for policy in POLICIES {
        let clock = ManualClock::new();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1000)
            .policy(policy)
            .time_to_live(Duration::from_secs(100))
            .time_to_idle(Duration::from_secs(20))
            .clock(clock.clone())
            .build();
        cache.insert(1, 1); // ttl 100, tti 20
        cache.insert_with_ttl(2, 2, Duration::from_secs(5));
        cache.insert_with_ttl(3, 3, Duration::from_secs(1000)); // idle still 20
        clock.advance(Duration::from_secs(6));
        assert_eq!(cache.get(&2), None, "{policy:?}: per-entry ttl");
        assert_eq!(cache.get(&1), Some(1));
        assert_eq!(cache.get(&3), Some(3));
        clock.advance(Duration::from_secs(21)); // 1 and 3 idle 21 s
        assert_eq!(cache.get(&1), None, "{policy:?}: idle");
        assert_eq!(cache.get_many(&[&1, &2, &3]), vec![None, None, None], "{policy:?}");
        assert!(!cache.contains_key(&3), "{policy:?}");
        assert!(cache.iter().next().is_none(), "{policy:?}: iter yields expired entries");
        assert_eq!(cache.remove(&3), None, "{policy:?}: remove returns an expired value");
        cache.insert(4, 4);
        clock.advance(Duration::from_secs(25));
        assert_eq!(cache.get_with(4, || 44), 44, "{policy:?}: get_with returned an expired value");
        cache.insert(5, 5);
        clock.advance(Duration::from_secs(25));
        assert_eq!(cache.try_get_with(5, || Ok::<_, ()>(55)), Ok(55), "{policy:?}");
        // TTL: expiry counted from the last replace.
        cache.insert(6, 6);
        clock.advance(Duration::from_secs(15));
        cache.insert(6, 7);
        clock.advance(Duration::from_secs(15));
        assert_eq!(cache.get(&6), Some(7), "{policy:?}: replace resets the expiry");
        // Exactly at the deadline.
        cache.insert_with_ttl(7, 7, Duration::from_secs(3));
        clock.advance(Duration::from_secs(3));
        assert_eq!(cache.get(&7), None, "{policy:?}: an entry at its deadline is expired");
        // Zero TTL is never returned.
        cache.insert_with_ttl(8, 8, Duration::ZERO);
        assert_eq!(cache.get(&8), None, "{policy:?}: zero ttl");
    }
}

/// Huge durations must neither panic nor expire early.
#[test]
fn holds_huge_ttl_does_not_overflow() {
    for policy in POLICIES {
        let clock = ManualClock::new();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .policy(policy)
            .time_to_live(Duration::MAX)
            .time_to_idle(Duration::from_secs(u64::MAX / 4))
            .clock(clock.clone())
            .build();
        cache.insert(1, 1);
        cache.insert_with_ttl(2, 2, Duration::MAX);
        cache.insert_with_ttl(3, 3, Duration::from_secs(u64::MAX));
        clock.advance(Duration::from_secs(3600 * 24 * 365 * 100));
        cache.run_pending_tasks();
        assert_eq!(cache.get_many(&[&1, &2, &3]), vec![Some(1), Some(2), Some(3)], "{policy:?}");
        for k in 10..200 {
            cache.insert_with_ttl(k, k, Duration::from_secs(k * 1_000_000_000));
        }
        assert!(cache.weighted_size() <= 100);
    }
}

/// Time-to-idle: "Every entry expires this long after it was last read or written." Every read must
/// refresh it, even when reads come in bursts (the engine buffers reads, lossily).
#[test]
fn holds_time_to_idle_refreshed_by_every_read_even_in_bursts() {
    for policy in POLICIES {
        let clock = ManualClock::new();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(5000)
            .shards(1)
            .policy(policy)
            .time_to_idle(Duration::from_secs(10))
            .clock(clock.clone())
            .build();
        for k in 0..2000 {
            cache.insert(k, k);
        }
        for round in 0..8 {
            clock.advance(Duration::from_secs(6));
            for k in 0..2000 {
                assert_eq!(cache.get(&k), Some(k), "{policy:?} round {round}: key {k} expired though read every 6 s");
            }
        }
    }
}

/// The same, with reads from several threads (each read must count).
#[test]
fn holds_time_to_idle_refreshed_by_concurrent_reads() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> =
        Cache::builder().max_capacity(10_000).time_to_idle(Duration::from_secs(10)).clock(clock.clone()).build();
    for k in 0..4000 {
        cache.insert(k, k);
    }
    for round in 0..6 {
        clock.advance(Duration::from_secs(6));
        let lost = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (cache, lost) = (&cache, &lost);
                s.spawn(move || {
                    for k in (t * 2000)..((t + 1) * 2000) {
                        if cache.get(&k).is_none() {
                            lost.fetch_add(1, SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(lost.load(SeqCst), 0, "round {round}: entries read 6 s ago expired (tti 10 s)");
    }
}

/// `contains_key` "does not count as a read": so it must not keep an idle entry alive either.
#[test]
fn holds_contains_key_does_not_refresh_idle_or_count() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> =
        Cache::builder().max_capacity(10).time_to_idle(Duration::from_secs(10)).clock(clock.clone()).build();
    cache.insert(1, 1);
    clock.advance(Duration::from_secs(6));
    assert!(cache.contains_key(&1));
    clock.advance(Duration::from_secs(6));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (0, 0), "contains_key counted as a read");
    assert!(!cache.contains_key(&1), "contains_key refreshed the idle timer");
}

// ---------------------------------------------------------------------------------------------
// Weights and capacity
// ---------------------------------------------------------------------------------------------

/// "An entry heavier than its shard's share is refused and counted, never evicting the rest."
#[test]
fn holds_overweight_entry_refused_counted_and_evicts_nothing() {
    for policy in POLICIES {
        let events: Events = Arc::default();
        let ev = Arc::clone(&events);
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .policy(policy)
            .weigher(|_k, v| *v as u32)
            .eviction_listener(move |k, v, c| ev.lock().unwrap().push((k, v, c)))
            .build();
        for k in 0..10 {
            cache.insert(k, 10);
        }
        assert_eq!(cache.weighted_size(), 100, "{policy:?}");
        cache.insert(99, 101);
        assert_eq!(cache.get(&99), None, "{policy:?}");
        assert_eq!(cache.stats().rejections, 1, "{policy:?}");
        for k in 0..10 {
            assert_eq!(cache.get(&k), Some(10), "{policy:?}: the refused entry evicted {k}");
        }
        // The refused entry goes to the listener as Capacity (documented on RemovalCause::Capacity).
        let ev = events.lock().unwrap().clone();
        assert_eq!(ev, vec![(99, 101, RemovalCause::Capacity)], "{policy:?}");
        // get_with of an overweight value returns it but stores nothing.
        assert_eq!(cache.get_with(98, || 500), 500);
        assert_eq!(cache.get(&98), None);
        assert_eq!(cache.weighted_size(), 100);
    }
}

/// An insert "replaces any previous value". If the new value is refused as too heavy, the old value
/// must not be returned afterwards: `insert(k, v2)` then `get(k) == Some(v1)` would be a lost update.
#[test]
fn holds_refused_replacement_does_not_leave_the_old_value() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> =
            Cache::builder().max_capacity(100).shards(1).policy(policy).weigher(|_k, v| *v as u32).build();
        cache.insert(1, 10);
        cache.insert(1, 1000); // refused: heavier than the shard
        assert_ne!(cache.get(&1), Some(10), "{policy:?}: a refused replacement left the stale old value");
    }
}

#[test]
fn holds_zero_capacity_stores_nothing_and_zero_weight_counts_one() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(0).policy(policy).build();
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.get_with(2, || 2), 2);
        assert_eq!(cache.get(&2), None);
        assert_eq!(cache.weighted_size(), 0);
        assert_eq!(cache.len(), 0);

        let cache: Cache<u64, u64> =
            Cache::builder().max_capacity(5).shards(1).policy(policy).weigher(|_, _| 0).build();
        for k in 0..20 {
            cache.insert(k, k);
            assert!(cache.weighted_size() <= 5);
            assert!(cache.len() <= 5, "{policy:?}: weight 0 must count as 1");
        }
    }
}

/// Odd builder values must not panic or break the capacity bound.
#[test]
fn holds_odd_shard_counts_and_capacities() {
    for (cap, shards) in [(1u64, 0usize), (1, 1024), (3, 3), (1000, 7), (u64::MAX, 1 << 16)] {
        for policy in POLICIES {
            let cache: Cache<u64, u64> = Cache::builder().max_capacity(cap).shards(shards).policy(policy).build();
            for k in 0..300 {
                cache.insert(k, k);
                assert!(cache.weighted_size() <= cap, "cap {cap} shards {shards} {policy:?}");
            }
            if cap >= 1 {
                assert!(!cache.is_empty(), "cap {cap} shards {shards} {policy:?}: stores nothing");
            }
        }
    }
}

/// `shards(n)`: "rounded up to a power of two ... Never more shards than `max_capacity`". A huge
/// request must be capped, not overflow to zero shards (the build succeeds, the first insert panics
/// with an index out of bounds in release builds).
#[test]
fn huge_shard_requests_are_capped() {
    let result = std::panic::catch_unwind(|| {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(10).shards(usize::MAX / 2 + 2).build();
        cache.insert(1, 1);
        cache.get(&1)
    });
    assert!(matches!(result, Ok(Some(1))), "a cache built with shards(usize::MAX / 2 + 2) panics on insert");
}

/// Listeners "may call back into the cache". A listener that reloads what was evicted
/// (`get_with(evicted_key)`) deadlocks when its load evicts the key the outer `get_with` is still
/// loading: the nested listener's `get_with(outer key)` waits for the outer flight, on the same
/// thread, forever. Capacity 1, one shard, every policy.
#[test]
fn listener_reloading_evicted_keys_never_deadlocks() {
    for policy in POLICIES {
        watchdog(10, &format!("{policy:?}: listener reloading evicted keys"), move || {
            thread_local!(static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
            let slot: Slot = Arc::default();
            let s2 = Arc::clone(&slot);
            let cache: Cache<u64, u64> = Cache::builder()
                .max_capacity(1)
                .shards(1)
                .policy(policy)
                .eviction_listener(move |k, _v, _cause| {
                    // Reload the evicted key, two levels deep at most.
                    if DEPTH.get() < 2 {
                        DEPTH.set(DEPTH.get() + 1);
                        if let Some(c) = s2.get() {
                            c.get_with(k, || k);
                        }
                        DEPTH.set(DEPTH.get() - 1);
                    }
                })
                .build();
            slot.set(cache.clone()).ok().unwrap();
            cache.insert(1, 1);
            // get_with(2) evicts 1 → listener get_with(1) evicts 2 → listener get_with(2): waits for
            // the flight of 2 that this very thread opened.
            assert_eq!(cache.get_with(2, || 2), 2);
        });
    }
}

/// "The weighted size never exceeds `max_capacity`", under concurrent inserts of random weights,
/// checked continuously by a monitor thread; and the gauges agree with `iter` at rest.
#[test]
fn holds_capacity_never_exceeded_concurrently() {
    for policy in POLICIES {
        let cap = 5_000u64;
        let cache: Cache<u64, u64> =
            Cache::builder().max_capacity(cap).shards(4).policy(policy).weigher(|_k, v| (*v % 300) as u32).build();
        let stop = AtomicBool::new(false);
        let worst = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Bounded in time too: if a worker panics, `stop` is never set, and the test must fail
                // (the join below re-raises the panic), not hang.
                let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
                while !stop.load(SeqCst) && std::time::Instant::now() < until {
                    worst.fetch_max(cache.weighted_size(), SeqCst);
                }
            });
            let mut hs = Vec::new();
            for t in 0..3u64 {
                let cache = &cache;
                hs.push(s.spawn(move || {
                    let mut rng = Rng(t + 11);
                    for _ in 0..60_000 {
                        let k = rng.below(3000);
                        match rng.below(8) {
                            0 => {
                                cache.remove(&k);
                            }
                            1 => {
                                cache.get_with(k, || rng.next() % 1000);
                            }
                            2..=4 => {
                                cache.insert(k, rng.next() % 1000);
                            }
                            _ => {
                                cache.get(&k);
                            }
                        }
                    }
                }));
            }
            for h in hs {
                h.join().unwrap();
            }
            stop.store(true, SeqCst);
        });
        assert!(worst.load(SeqCst) <= cap, "{policy:?}: weighted size reached {} > {cap}", worst.load(SeqCst));
        cache.run_pending_tasks();
        let listed: Vec<(u64, u64)> = cache.iter().collect();
        let sum: u64 = listed.iter().map(|(_, v)| (*v % 300).max(1)).sum();
        assert_eq!(sum, cache.weighted_size(), "{policy:?}: weighted_size disagrees with iter");
        assert_eq!(listed.len() as u64, cache.len(), "{policy:?}: len disagrees with iter");
        let keys: HashSet<u64> = listed.iter().map(|e| e.0).collect();
        assert_eq!(keys.len(), listed.len(), "{policy:?}: iter yields a key twice");
        let s = cache.stats();
        assert_eq!(s.entries, cache.len());
        assert_eq!(
            s.entries as i128,
            s.inserts as i128 + s.updates as i128 - s.removed_by_cause.iter().map(|&x| x as i128).sum::<i128>(),
            "{policy:?}: entries != inserts + updates - departures: {s:?}"
        );
    }
}

/// `room_for`: "Weight that could be inserted under `key` now without evicting anything."
#[test]
fn holds_room_for_is_exact_single_threaded() {
    for policy in POLICIES {
        let events: Events = Arc::default();
        let ev = Arc::clone(&events);
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(4096)
            .shards(4)
            .policy(policy)
            .weigher(|_k, v| *v as u32)
            .eviction_listener(move |k, v, c| ev.lock().unwrap().push((k, v, c)))
            .build();
        let mut rng = Rng(99);
        for i in 0..3000u64 {
            let k = 10_000 + i; // always absent
            let room = cache.room_for(&k);
            let before = events.lock().unwrap().len();
            if room > 0 {
                let w = 1 + rng.below(room);
                cache.insert(k, w);
                let after = events.lock().unwrap().clone();
                assert_eq!(
                    after.len(),
                    before,
                    "{policy:?}: inserting {w} ≤ room_for {room} evicted {:?}",
                    &after[before..]
                );
                assert_eq!(cache.get(&k), Some(w), "{policy:?}: an entry within room_for was not kept");
            } else {
                // The shard is full: make some room.
                let listed: Vec<u64> = cache.iter().map(|e| e.0).collect();
                for _ in 0..8 {
                    if !listed.is_empty() {
                        cache.invalidate(&listed[rng.below(listed.len() as u64) as usize]);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Single flight
// ---------------------------------------------------------------------------------------------

#[test]
fn holds_single_flight_one_load_for_many_threads() {
    for policy in POLICIES {
        let cache: Cache<u64, Arc<u64>> = Cache::builder().max_capacity(100).policy(policy).build();
        let loads = AtomicU64::new(0);
        let barrier = Barrier::new(16);
        let values: Vec<Arc<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        cache.get_with(7, || {
                            loads.fetch_add(1, SeqCst);
                            std::thread::sleep(Duration::from_millis(200));
                            Arc::new(42)
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(loads.load(SeqCst), 1, "{policy:?}");
        assert!(values.iter().all(|v| Arc::ptr_eq(v, &values[0])), "{policy:?}: waiters got different values");
        assert_eq!(cache.stats().loads_ok, 1);
    }
}

/// "If `init` panics, the panic propagates to this caller, and a waiting caller runs its own `init`."
#[test]
fn holds_panicking_loader_releases_waiters() {
    watchdog(30, "panicking loader", || {
        let cache: Cache<u64, u64> = Cache::new(100);
        let entered = Arc::new(Barrier::new(2));
        let c2 = cache.clone();
        let e2 = Arc::clone(&entered);
        let panicker = std::thread::spawn(move || {
            c2.get_with(1, || {
                e2.wait();
                std::thread::sleep(Duration::from_millis(300));
                panic!("loader fails");
            })
        });
        entered.wait();
        std::thread::sleep(Duration::from_millis(50));
        let waiter_loads = Arc::new(AtomicU64::new(0));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let c = cache.clone();
                let wl = Arc::clone(&waiter_loads);
                std::thread::spawn(move || {
                    c.get_with(1, || {
                        wl.fetch_add(1, SeqCst);
                        9
                    })
                })
            })
            .collect();
        assert!(panicker.join().is_err(), "the panic must reach the loader's caller");
        for w in waiters {
            assert_eq!(w.join().unwrap(), 9);
        }
        let n = waiter_loads.load(SeqCst);
        assert!((1..=4).contains(&n), "waiters loads {n}");
        assert_eq!(cache.get(&1), Some(9));
        let s = cache.stats();
        assert_eq!(s.loads_failed, 1, "{s:?}");
        // usable afterwards
        cache.insert(2, 2);
        assert_eq!(cache.get_with(2, || unreachable!()), 2);
    });
}

/// "An error goes to this caller only and stores nothing; callers that were waiting on this load
/// then run their own loaders."
#[test]
fn holds_loader_error_goes_only_to_its_caller() {
    watchdog(30, "failing loader", || {
        let cache: Cache<u64, u64> = Cache::new(100);
        let entered = Arc::new(Barrier::new(2));
        let (c2, e2) = (cache.clone(), Arc::clone(&entered));
        let failer = std::thread::spawn(move || {
            c2.try_get_with(1, || {
                e2.wait();
                std::thread::sleep(Duration::from_millis(300));
                Err::<u64, String>("down".into())
            })
        });
        entered.wait();
        std::thread::sleep(Duration::from_millis(50));
        let waiters: Vec<_> = (0..4)
            .map(|i| {
                let c = cache.clone();
                std::thread::spawn(move || c.try_get_with(1, || Ok::<u64, String>(100 + i)))
            })
            .collect();
        assert_eq!(failer.join().unwrap(), Err("down".to_string()));
        let got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(got.iter().all(|r| r.is_ok()), "a waiter received another caller's error: {got:?}");
        let v = cache.get(&1).expect("stored by a waiter");
        assert!(got.contains(&Ok(v)));
    });
}

/// A loader that uses the cache (other keys, same shard) must not deadlock.
#[test]
fn holds_loader_may_use_the_cache() {
    watchdog(30, "loader calling into the cache", || {
        for policy in POLICIES {
            let cache: Cache<u64, u64> = Cache::builder().max_capacity(4).shards(1).policy(policy).build();
            let c = cache.clone();
            let v = cache.get_with(1, || {
                c.insert(2, 2);
                c.invalidate(&3);
                let inner = c.get_with(4, || {
                    c.insert(5, 5);
                    for k in 10..20 {
                        c.insert(k, k); // evictions from inside a loader
                    }
                    40
                });
                c.invalidate_all();
                inner + c.get(&2).unwrap_or(0)
            });
            assert!(v == 40 || v == 42, "{policy:?}: {v}");
            assert!(cache.weighted_size() <= 4);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Listeners that call back into the cache
// ---------------------------------------------------------------------------------------------

type Slot = Arc<OnceLock<Cache<u64, u64>>>;

fn reentrant_cache(
    policy: Policy,
    clock: &ManualClock,
    act: impl Fn(&Cache<u64, u64>, u64, u64, RemovalCause) + Send + Sync + 'static,
) -> Cache<u64, u64> {
    let slot: Slot = Arc::default();
    let s2 = Arc::clone(&slot);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(8)
        .shards(1)
        .policy(policy)
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .eviction_listener(move |k, v, c| {
            if let Some(cache) = s2.get() {
                act(cache, k, v, c)
            }
        })
        .build();
    slot.set(cache.clone()).ok().unwrap();
    cache
}

/// Listeners "may call back into the cache": every kind of call, from departures of every cause,
/// including those caused inside `get`, `get_with`, `invalidate_if`, `invalidate_all`,
/// `run_pending_tasks`, `insert_many` and `remove`.
#[test]
fn holds_listener_reentrancy_never_deadlocks() {
    for policy in POLICIES {
        watchdog(30, &format!("{policy:?} reentrant listener"), move || {
            let clock = ManualClock::new();
            let calls = Arc::new(AtomicUsize::new(0));
            let d = Arc::clone(&calls);
            let cache = reentrant_cache(policy, &clock, move |c, k, _v, cause| {
                thread_local!(static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
                d.fetch_add(1, SeqCst);
                // Listeners nested in listeners are tested apart (listener_reloading_evicted_keys_never_deadlocks).
                if DEPTH.get() >= 1 {
                    return;
                }
                DEPTH.set(DEPTH.get() + 1);
                struct Down;
                impl Drop for Down {
                    fn drop(&mut self) {
                        DEPTH.set(DEPTH.get() - 1);
                    }
                }
                let _down = Down;
                match k % 7 {
                    0 => {
                        c.get_with(k, || k); // same key, back in
                    }
                    1 => {
                        c.insert(k + 1000, k); // may evict again, recursively
                    }
                    2 => {
                        c.invalidate(&(k + 1));
                    }
                    3 => {
                        c.get_with(k + 1, || k);
                    }
                    4 => {
                        let _ = c.iter().count();
                        let _ = c.metrics().to_prometheus();
                    }
                    5 => {
                        c.remove(&(k.wrapping_sub(1)));
                        let _ = c.try_get_with(k + 2, || Err::<u64, ()>(()));
                    }
                    _ => {
                        if cause == RemovalCause::Expired {
                            c.run_pending_tasks();
                        }
                        c.room_for(&k);
                        c.contains_key(&k);
                    }
                }
            });
            let mut rng = Rng(5);
            for step in 0..5000u64 {
                let k = rng.below(40);
                match rng.below(12) {
                    0 => cache.insert(k, step),
                    1 => {
                        cache.get_with(k, || step);
                    }
                    2 => {
                        cache.get(&k);
                    }
                    3 => {
                        cache.invalidate(&k);
                    }
                    4 => {
                        cache.remove(&k);
                    }
                    5 => clock.advance(Duration::from_secs(rng.below(15))),
                    6 => {
                        cache.invalidate_if(|kk, _| kk % 3 == 0);
                    }
                    7 if step % 100 == 0 => cache.invalidate_all(),
                    8 => cache.run_pending_tasks(),
                    9 => cache.insert_many((0..5).map(|i| (k + i, step))),
                    10 => {
                        let _ = cache.try_get_with(k, || Ok::<_, ()>(step));
                    }
                    _ => cache.insert_with_ttl(k, step, Duration::from_secs(rng.below(20))),
                }
                assert!(cache.weighted_size() <= 8);
            }
            assert!(calls.load(SeqCst) > 1000, "the listener ran too rarely to prove anything");
        });
    }
}

/// Listener counts per cause agree with the statistics, and stats satisfy
/// entries = inserts + updates - departures.
#[test]
fn holds_stats_consistent_with_listener_and_contents() {
    for policy in POLICIES {
        let clock = ManualClock::new();
        let counts = Arc::new(Mutex::new(HashMap::<RemovalCause, u64>::new()));
        let c2 = Arc::clone(&counts);
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(300)
            .shards(2)
            .policy(policy)
            .weigher(|_, v| (*v % 40) as u32)
            .clock(clock.clone())
            .time_to_idle(Duration::from_secs(30))
            .eviction_listener(move |_, _, c| *c2.lock().unwrap().entry(c).or_default() += 1)
            .build();
        let mut rng = Rng(3);
        let (mut gets, mut hits) = (0u64, 0u64);
        for _ in 0..20_000 {
            let k = rng.below(200);
            match rng.below(10) {
                0..=3 => cache.insert(k, rng.below(500)),
                4 => cache.insert_with_ttl(k, rng.below(500), Duration::from_secs(rng.below(20))),
                5 => {
                    cache.remove(&k);
                }
                6 => {
                    cache.invalidate(&k);
                }
                7 => clock.advance(Duration::from_secs(rng.below(4))),
                _ => {
                    gets += 1;
                    if cache.get(&k).is_some() {
                        hits += 1;
                    }
                }
            }
        }
        cache.invalidate_if(|k, _| k % 5 == 0);
        cache.run_pending_tasks();
        let s = cache.stats();
        assert_eq!((s.hits, s.hits + s.misses), (hits, gets), "{policy:?}: hit/miss counts");
        let counts = counts.lock().unwrap().clone();
        for cause in RemovalCause::ALL {
            assert_eq!(
                s.removed(cause),
                counts.get(&cause).copied().unwrap_or(0),
                "{policy:?}: stats and listener disagree on {cause:?} ({s:?})"
            );
        }
        let departures: u64 = s.removed_by_cause.iter().sum();
        assert_eq!(
            s.entries as i128,
            s.inserts as i128 + s.updates as i128 - departures as i128,
            "{policy:?}: entries != inserts + updates - departures: {s:?}"
        );
        let listed: Vec<_> = cache.iter().collect();
        assert_eq!(listed.len() as u64, s.entries, "{policy:?}");
        assert_eq!(listed.iter().map(|(_, v)| (v % 40).max(1)).sum::<u64>(), s.weighted_size, "{policy:?}");
        assert_eq!(s.evictions(), s.removed(RemovalCause::Capacity) + s.removed(RemovalCause::Expired));
        assert_eq!(s.removals(), s.removed(RemovalCause::Removed) + s.removed(RemovalCause::Invalidated));
    }
}

/// `invalidate_if` returns how many it dropped, each reaching the listener as Invalidated; `iter`
/// yields exactly the live entries.
#[test]
fn holds_invalidate_if_and_iter() {
    for policy in POLICIES {
        let events: Events = Arc::default();
        let ev = Arc::clone(&events);
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(10_000)
            .policy(policy)
            .eviction_listener(move |k, v, c| ev.lock().unwrap().push((k, v, c)))
            .build();
        for k in 0..1000 {
            cache.insert(k, k * 2);
        }
        let n = cache.invalidate_if(|k, v| k % 3 == 0 && *v == k * 2);
        assert_eq!(n, 334, "{policy:?}");
        let ev = events.lock().unwrap().clone();
        assert_eq!(ev.len(), 334);
        assert!(ev.iter().all(|e| e.0 % 3 == 0 && e.2 == RemovalCause::Invalidated));
        let mut listed: Vec<_> = cache.iter().collect();
        listed.sort();
        let expected: Vec<_> = (0..1000).filter(|k| k % 3 != 0).map(|k| (k, k * 2)).collect();
        assert_eq!(listed, expected, "{policy:?}");
    }
}

/// One writer, many readers of one key: a reader never sees the value go backwards
/// ("Operations on one key are linearizable").
#[test]
fn holds_single_key_reads_never_go_backwards() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(64).policy(policy).build();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let mut last = 0;
                    while !done.load(SeqCst) {
                        if let Some(v) = cache.get(&1) {
                            assert!(v >= last, "{policy:?}: read {v} after {last}");
                            last = v;
                        }
                    }
                });
            }
            s.spawn(|| {
                for v in 1..200_000u64 {
                    cache.insert(1, v);
                    if v % 7 == 0 {
                        // churn other keys to cause evictions
                        cache.insert(1000 + v % 500, v);
                    }
                }
                done.store(true, SeqCst);
            });
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// The Prometheus text must stay valid for any cache name (label values must be escaped), and the
/// JSON must parse and agree with `stats()`.
#[test]
fn holds_metrics_prometheus_and_json_are_well_formed() {
    for name in ["plain", "quote\"d", "back\\slash", "new\nline", "ünïcødé"] {
        let cache: Cache<u64, u64> = Cache::builder().name(name).max_capacity(10).build();
        for k in 0..20 {
            cache.insert(k, k);
            cache.get(&k);
        }
        cache.get(&1000);
        let m = cache.metrics();
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).expect("valid JSON");
        assert_eq!(json["cache"], name);
        assert_eq!(json["stats"]["hits"].as_u64().or(json["hits"].as_u64()), Some(m.stats.hits), "{json}");
        let text = m.to_prometheus();
        check_prometheus(&text, name);
    }
}

fn check_prometheus(text: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.prom");
    std::fs::write(&file, text).unwrap();
    if let Ok(out) = std::process::Command::new("promtool")
        .arg("check")
        .arg("metrics")
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
    {
        let err = String::from_utf8_lossy(&out.stderr);
        // promtool lints (e.g. counters without _total) are warnings; parse errors are failures.
        assert!(
            !err.contains("error while linting") && !err.contains("parse"),
            "promtool rejects the exposition for name {name:?}: {err}\n{text}"
        );
    }
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        assert!(line.starts_with("cachefs_"), "stray line (an unescaped label?) for name {name:?}: {line:?}");
    }
}

/// "Operations on one key are linearizable: each takes effect atomically at some point during the
/// call." An `insert(k, v2)` that completes while a `get_with(k)` is loading must not be overwritten
/// by the load: whichever point the `get_with` takes effect at, the key ends holding `v2` (before the
/// insert, the insert replaces the loaded value; after it, the `get_with` finds `v2`).
#[test]
fn a_load_never_overwrites_an_insert_made_during_it() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).policy(policy).build();
        let loading = Barrier::new(2);
        let inserted = Barrier::new(2);
        std::thread::scope(|s| {
            let loader = s.spawn(|| {
                cache.get_with(1, || {
                    loading.wait();
                    inserted.wait();
                    111
                })
            });
            loading.wait();
            cache.insert(1, 222);
            inserted.wait();
            let got = loader.join().unwrap();
            let now = cache.get(&1);
            assert_eq!(
                now,
                Some(222),
                "{policy:?}: a load that began before insert(1, 222) overwrote it (get_with returned {got})"
            );
        });
    }
}

/// `get_with` under a writer that inserts and invalidates the key without pause: every call returns
/// (no livelock), with its own load, an earlier load, or a writer's value.
#[test]
fn holds_get_with_makes_progress_under_insert_invalidate_churn() {
    for policy in POLICIES {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).policy(policy).build();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut v = 1000;
                while !done.load(SeqCst) {
                    v += 1;
                    cache.insert(1, v);
                    cache.invalidate(&1);
                }
            });
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, SeqCst);
                }
            }
            let _stop = Stop(&done);
            for i in 0..20_000u64 {
                let got = cache.get_with(1, || i);
                assert!(got <= i || got >= 1000, "{policy:?}: {got} at {i}");
            }
        });
    }
}

/// "A panicking loader, weigher, listener, or key `Hash`/`Eq` propagates to the caller; the cache
/// stays usable and consistent."
#[test]
fn holds_panicking_weigher_and_listener_leave_the_cache_consistent() {
    for policy in POLICIES {
        watchdog(30, "panics", move || {
            let cache: Cache<u64, u64> = Cache::builder()
                .max_capacity(10)
                .shards(1)
                .policy(policy)
                .weigher(|k, _| if *k == 13 { panic!("weigher") } else { 1 })
                .eviction_listener(|k, _, _| {
                    if k % 5 == 0 {
                        panic!("listener")
                    }
                })
                .build();
            for k in 0..100u64 {
                let c = cache.clone();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || c.insert(k, k)));
                let c = cache.clone();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || c.get_with(k + 1000, || k)));
                assert!(cache.weighted_size() <= 10, "{policy:?}");
                assert_eq!(cache.len(), cache.iter().count() as u64, "{policy:?}");
            }
            let c = cache.clone();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || c.invalidate_all()));
            cache.insert(1, 1);
            assert_eq!(cache.get(&1), Some(1), "{policy:?}: unusable after panics");
            let s = cache.stats();
            assert_eq!(s.entries, cache.iter().count() as u64, "{policy:?}: {s:?}");
        });
    }
}
