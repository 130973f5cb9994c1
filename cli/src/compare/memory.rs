//! Bytes of heap a cache uses per entry, beyond the entry's key and value, measured by counting the
//! allocator's traffic while one fills.
//!
//! The binary installs [`Counting`] as its global allocator; [`overhead_per_entry`] then reads the net
//! bytes allocated while a cache of `n` entries is built and filled. Every entry shares one value `Arc`,
//! so values allocate nothing; the key (8 bytes) and the value pointer (8 bytes) are subtracted, as
//! every cache must store them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

use crate::peers::{Peer, Val};

/// Net bytes allocated through [`Counting`] since the process started.
static NET: AtomicIsize = AtomicIsize::new(0);

/// A global allocator that defers to the system's and keeps [`NET`] up to date.
#[derive(Debug)]
pub struct Counting;

// SAFETY: every call is passed unchanged to the system allocator; the counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let net = NET.fetch_add(layout.size() as isize, Relaxed) + layout.size() as isize;
        if TRACKING_PEAK.load(Relaxed) {
            PEAK.fetch_max(net, Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NET.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes through `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let delta = new_size as isize - layout.size() as isize;
        let net = NET.fetch_add(delta, Relaxed) + delta;
        if TRACKING_PEAK.load(Relaxed) {
            PEAK.fetch_max(net, Relaxed);
        }
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, which we forward.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// The highest [`NET`] seen while [`TRACKING_PEAK`] is on.
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Whether allocations update [`PEAK`] (only during [`churn_peak_per_entry`], so that the throughput
/// runs, which share this allocator, pay one relaxed load per allocation and no more).
static TRACKING_PEAK: AtomicBool = AtomicBool::new(false);

/// Net heap bytes allocated so far (0 unless [`Counting`] is the global allocator).
pub fn net_bytes() -> isize {
    NET.load(Relaxed)
}

/// Heap bytes per entry beyond key and value for `peer` holding `n` entries, or `None` when the global
/// allocator does not count.
pub fn overhead_per_entry(peer: Peer, n: u64) -> Option<f64> {
    let before = net_bytes();
    let value: Val = Val::new([0; 64]);
    let after_value = net_bytes();
    if after_value == before {
        return None;
    }
    let cache = peer.build(n);
    for k in 0..n {
        cache.insert(crate::workload::scramble(k), value.clone());
    }
    cache.settle();
    let used = net_bytes() - after_value;
    drop(cache);
    Some(used as f64 / n as f64 - 16.0)
}

/// Peak heap bytes per entry beyond key and value for `peer` while it churns: a cache of capacity `n` is
/// filled, then `2n` keys it has never seen are inserted (every one evicting), as a cache with a
/// stream of new keys does in steady state. Deferred frees (an epoch's garbage, pending maintenance)
/// show here and not in [`overhead_per_entry`]. `None` when the global allocator does not count.
pub fn churn_peak_per_entry(peer: Peer, n: u64) -> Option<f64> {
    let before = net_bytes();
    let value: Val = Val::new([0; 64]);
    let after_value = net_bytes();
    if after_value == before {
        return None;
    }
    let cache = peer.build(n);
    for k in 0..n {
        cache.insert(crate::workload::scramble(k), value.clone());
    }
    cache.settle();
    PEAK.store(net_bytes(), Relaxed);
    TRACKING_PEAK.store(true, Relaxed);
    for k in n..3 * n {
        cache.insert(crate::workload::scramble(k), value.clone());
    }
    cache.settle();
    TRACKING_PEAK.store(false, Relaxed);
    let peak = PEAK.load(Relaxed) - after_value;
    drop(cache);
    Some(peak as f64 / n as f64 - 16.0)
}
