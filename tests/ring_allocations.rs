//! Counts heap allocations made by the current thread to prove the ring's steady state allocates
//! nothing: reads (hits and misses), guards, batches and writes, in both modes and from read-only
//! handles. In `pread` mode that rests on the pooled buffers.
#![cfg(feature = "ring")]

mod ring_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use cachefs::ring::{Compression, IoMode, ReadBatch, ReadOptions, RingBuffer, RingOptions};
use ring_common::{MODES, payload};

struct Counting;

thread_local! {
    // `const` initialisation: reading it never allocates.
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

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// Reads of every kind over ids `0..300` of a 256-slot ring (so some miss), twice over.
fn read_everything(ring: &RingBuffer, payloads: &[Vec<u8>], buf: &mut Vec<u8>, batch: &mut ReadBatch) {
    for _ in 0..2 {
        for id in 0..300u64 {
            match ring.read(id, buf) {
                Ok(_) => assert_eq!(buf[..], payloads[id as usize][..]),
                Err(e) => assert!(e.is_not_found() && id < 44, "{id}: {e}"),
            }
            if let Ok(r) = ring.get(id) {
                assert_eq!(r.len(), 200);
            }
        }
        assert_eq!(ring.read_many(0..300, batch).unwrap(), 256);
        assert!(ring.wait_for(299, Duration::ZERO).unwrap());
    }
}

#[test]
fn reads_and_writes_allocate_nothing_in_steady_state() {
    for mode in MODES {
        for compression in [Compression::None, Compression::Lz4] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ring.dat");
            let ring =
                RingBuffer::open(&path, RingOptions { mode, compression, ..RingOptions::new(256, 256) }).unwrap();
            let payloads: Vec<Vec<u8>> = (0..400).map(|id| payload(id, 200)).collect();
            for id in 0..300 {
                ring.write(id, &payloads[id as usize]).unwrap();
            }
            let reader = RingBuffer::open_read_only(&path, ReadOptions { mode, ..ReadOptions::default() }).unwrap();
            let (mut buf, mut batch) = (Vec::new(), ReadBatch::new());
            // Warm up: pools fill, buffers grow, thread-locals are set up.
            read_everything(&ring, &payloads, &mut buf, &mut batch);
            read_everything(&reader, &payloads, &mut buf, &mut batch);
            let n = allocations_during(|| {
                read_everything(&ring, &payloads, &mut buf, &mut batch);
                read_everything(&reader, &payloads, &mut buf, &mut batch);
            });
            assert_eq!(n, 0, "{mode:?} {compression:?}: reads allocated {n} times");
            ring.flush().unwrap();
            let n = allocations_during(|| {
                for id in 300..400 {
                    ring.write(id, &payloads[id as usize]).unwrap();
                    if id % 25 == 0 {
                        ring.flush().unwrap();
                    }
                }
                let records: Vec<(u64, &[u8])> = Vec::new(); // empty: no allocation
                ring.write_many(&records).unwrap();
            });
            assert_eq!(n, 0, "{mode:?} {compression:?}: writes allocated {n} times");
            assert!(ring.stats().hits > 0 && reader.stats().hits > 0);
        }
    }
    // Sanity: the counter does count.
    assert!(allocations_during(|| drop(vec![1u8; 10])) > 0);
}

#[test]
fn a_pread_read_hit_reuses_one_pooled_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let ring =
        RingBuffer::open(dir.path().join("ring.dat"), RingOptions { mode: IoMode::Pread, ..RingOptions::new(8, 4096) })
            .unwrap();
    ring.write(1, &payload(1, 4000)).unwrap();
    let mut buf = Vec::with_capacity(4096);
    ring.read(1, &mut buf).unwrap();
    let n = allocations_during(|| {
        for _ in 0..10_000 {
            ring.read(1, &mut buf).unwrap();
        }
    });
    assert_eq!(n, 0, "10,000 pread hits allocated {n} times");
}
