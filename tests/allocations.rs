//! Counts heap allocations made by the current thread to prove the hot paths allocate nothing: a `get`
//! hit, and the steady state of insert / evict / update once the slabs have grown (but for the epoch's
//! own bookkeeping: a 2 KiB queue node each time departed entries are flushed to it, at most once per
//! eighth of a shard's capacity departed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use cachefs::{Cache, Policy};

struct Counting;

thread_local! {
    // `const` initialisation: reading it never allocates (no lazy registration).
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every call to the system allocator unchanged; only counts calls on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests run one at a time: the epoch runs deferred work (another test's reclamation) on whichever
/// thread pins, which would count against the test measuring.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

#[test]
fn a_get_hit_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for policy in POLICIES {
        let cache: Cache<u64, Arc<[u8; 64]>> = Cache::builder().max_capacity(10_000).policy(policy).build();
        for k in 0..1_000 {
            cache.insert(k, Arc::new([k as u8; 64]));
        }
        // Warm up: the first call on a thread may set up thread-locals, and W-TinyLFU's miniature
        // simulation grows its tables (bounded by its fixed size) as it first meets the sampled keys.
        // Their reads reach it through each shard's read buffer, drained when full: at one read in
        // eight sampled, a round of 1,000 reads fills it about a quarter, so give it ten rounds. From
        // then on hits allocate nothing.
        for _ in 0..10 {
            for k in 0..1_000 {
                assert!(cache.get(&k).is_some());
            }
        }
        let n = allocations_during(|| {
            for round in 0..10 {
                for k in 0..1_000 {
                    let v = cache.get(&k).expect("resident");
                    assert_eq!(v[0], k as u8, "round {round}");
                }
            }
        });
        assert_eq!(n, 0, "{policy:?}: 10,000 hits allocated {n} times");
    }
}

#[test]
fn a_get_hit_with_expiry_allocates_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cache: Cache<String, u64> = Cache::builder()
        .max_capacity(100)
        .time_to_live(std::time::Duration::from_secs(600))
        .time_to_idle(std::time::Duration::from_secs(600))
        .build();
    cache.insert("key".to_string(), 1);
    for _ in 0..100 {
        assert_eq!(cache.get("key"), Some(1));
    }
    let n = allocations_during(|| {
        for _ in 0..1_000 {
            assert_eq!(cache.get("key"), Some(1));
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn steady_state_churn_allocates_nothing_for_entries() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for policy in POLICIES {
        // u64 keys and values need no allocation of their own, so any allocation would be the cache's.
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(1_024).shards(4).policy(policy).build();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut step = |cache: &Cache<u64, u64>| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 8_192;
            match x % 4 {
                0 => cache.insert(k, k),      // usually a miss: evicts
                1 => cache.insert(k % 64, k), // hot keys: updates
                _ => {
                    cache.get(&k);
                }
            }
        };
        // Warm-up: slabs, tables and sketches reach their steady size.
        for _ in 0..200_000 {
            step(&cache);
        }
        let departures = |c: &Cache<u64, u64>| c.stats().removed_by_cause.iter().sum::<u64>();
        let departed_before = departures(&cache);
        let n = allocations_during(|| {
            for _ in 0..100_000 {
                step(&cache);
            }
        });
        let departed = departures(&cache) - departed_before;
        // Nothing per entry: the epoch's queue node when departed entries are flushed to it, at most once
        // per eighth of a shard's capacity departed (32 departures here: 256-entry shards).
        assert!(n * 16 <= departed, "{policy:?}: churn allocated {n} times for {departed} departures");
        assert!(cache.stats().evictions() > 10_000);
    }
}

#[test]
fn cachefs_read_hits_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use cachefs::fs::{Backend, CacheFs, MemBackend, WriteMode};
    use std::io::Read;

    let store = MemBackend::new();
    store.write("models/small.bin", &[1; 4096]).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    store.write("models/big.bin", &big).unwrap();
    // 2 MiB budget: threshold 256 KiB, so big.bin is read in 16 KiB chunks. (With 1 MiB, each of the 8
    // content shards held 128 KiB, and about one run in a hundred hashed 8 of the 19 chunks to one shard,
    // which then evicted one chunk per pass: a clean-clone run failed so.)
    let fs =
        CacheFs::builder(store).max_bytes(2 << 20).chunk_size(16 << 10).write_mode(WriteMode::write_back()).build();
    let mut out = vec![0u8; 300_000];
    // Warm everything once (first reads allocate buffers, keys and metadata entries).
    for _ in 0..2 {
        fs.read("models/small.bin").unwrap();
        fs.read_range("models/small.bin", 100, 200).unwrap();
        fs.stat("models/small.bin").unwrap();
        fs.open("models/big.bin").unwrap().read_exact(&mut out).unwrap();
    }
    let before = fs.stats().read_misses;
    let n = allocations_during(|| {
        for _ in 0..1_000 {
            assert_eq!(fs.read("models/small.bin").unwrap().len(), 4096);
            assert_eq!(fs.read_range("models/small.bin", 100, 200).unwrap().len(), 200);
            assert_eq!(fs.stat("models/small.bin").unwrap().len, 4096);
            assert!(fs.exists("models/small.bin").unwrap());
            let mut r = fs.open("models/small.bin").unwrap();
            r.read_exact(&mut out[..4096]).unwrap();
        }
    });
    assert_eq!(n, 0, "small-file hits allocated {n} times");
    assert_eq!(fs.stats().read_misses, before, "all hits");
    let n = allocations_during(|| {
        for _ in 0..20 {
            fs.open("models/big.bin").unwrap().read_exact(&mut out).unwrap();
        }
    });
    assert_eq!(out, big);
    assert_eq!(fs.stats().read_misses, before, "all chunk hits");
    // Opening a large file copies its path once (for chunk keys); chunk hits allocate nothing more.
    assert!(n <= 20 * 2, "large-file chunk hits allocated {n} times");
}
