//! Dropping a cache gives its memory back at once: the entries, and the storage they lived in (slots and
//! hash index), even though batches of departed entries are still queued in the epoch when it drops.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use cachefs::Cache;

/// Net bytes allocated by the whole process (this file holds one test, so nothing else runs).
static NET: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: defers every call to the system allocator unchanged; only counts bytes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        NET.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NET.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        NET.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn dropping_a_churned_cache_frees_its_storage_at_once() {
    // Warm the epoch's per-thread state, which lives as long as the thread.
    drop(Cache::<u64, u64>::new(16));
    let before = NET.load(Relaxed);
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(100_000).build();
    for k in 0..300_000u64 {
        // Two of every three inserts evict: departed slots queue up for the epoch.
        cache.insert(k, k);
    }
    let held = NET.load(Relaxed) - before;
    assert!(held > 2 << 20, "the cache held {held} bytes; the test needs it to hold a few MiB");
    drop(cache);
    let left = NET.load(Relaxed) - before;
    // The epoch's own queue nodes (a few KiB each) and the rebuilt index tables it has not yet freed may
    // remain; the slots and the live index may not.
    assert!(left < held / 4, "{left} of {held} bytes still allocated after the cache was dropped");
}
