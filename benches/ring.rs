//! The ring buffer's cost per operation: a write (no flush), a write batch of 64 with its flush, a read
//! hit copied out, a zero-copy guard, a read-only handle's seqlock read, a miss; both I/O modes, 4 KiB
//! and 128 B records. Throughput over whole files against raw I/O is `cachefs ring bench` (the table in
//! docs/benchmarks.md); this measures the per-call costs behind it.
//!
//! `cargo bench --bench ring --features ring` (full run); `cargo bench --bench ring --features ring --
//! --test` (smoke).

use std::hint::black_box;
use std::time::Duration;

use cachefs::ring::{IoMode, ReadOptions, RingBuffer, RingOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: u64 = 4096;

fn ring(dir: &std::path::Path, mode: IoMode, size: u32) -> RingBuffer {
    let ring = RingBuffer::open(
        dir.join(format!("{}-{size}.ring", mode.name())),
        RingOptions { mode, ..RingOptions::new(RECORDS, size) },
    )
    .unwrap();
    let payload = vec![7u8; size as usize - 24];
    for id in 0..RECORDS {
        ring.write(id, &payload).unwrap();
    }
    ring.flush().unwrap();
    ring
}

fn operations(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for size in [4096u32, 128] {
        for mode in [IoMode::Mmap, IoMode::Pread] {
            let mut g = c.benchmark_group(format!("ring_{}_{size}", mode.name()));
            g.throughput(Throughput::Bytes(u64::from(size)));
            let r = ring(dir.path(), mode, size);
            let payload = vec![9u8; size as usize - 24];
            let mut next = r.latest_id().unwrap() + 1;
            g.bench_function("write", |b| {
                b.iter(|| {
                    r.write(next, &payload).unwrap();
                    next += 1;
                })
            });
            g.throughput(Throughput::Bytes(64 * u64::from(size)));
            g.bench_function("write_64_then_flush", |b| {
                b.iter(|| {
                    for _ in 0..64 {
                        r.write(next, &payload).unwrap();
                        next += 1;
                    }
                    r.flush().unwrap();
                })
            });
            g.throughput(Throughput::Bytes(u64::from(size)));
            let latest = r.latest_id().unwrap();
            let mut buf = Vec::with_capacity(size as usize);
            let mut i = 0u64;
            g.bench_function("read_hit", |b| {
                b.iter(|| {
                    i = (i + 7) % RECORDS;
                    black_box(r.read(latest - i, &mut buf).unwrap())
                })
            });
            g.bench_function("get_hit", |b| {
                b.iter(|| {
                    i = (i + 7) % RECORDS;
                    black_box(r.get(latest - i).unwrap().len())
                })
            });
            g.bench_function("read_miss_overwritten", |b| {
                b.iter(|| black_box(r.read(latest - RECORDS, &mut buf).is_err()))
            });
            let ro = RingBuffer::open_read_only(r.files()[0].clone(), ReadOptions { mode, ..ReadOptions::default() })
                .unwrap();
            g.bench_function("read_only_handle_read_hit", |b| {
                b.iter(|| {
                    i = (i + 7) % RECORDS;
                    black_box(ro.read(latest - i, &mut buf).unwrap())
                })
            });
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    targets = operations
}
criterion_main!(benches);
