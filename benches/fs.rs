//! CacheFs costs per operation, beside reading the same files straight from `OsBackend` and `std::fs`.
//!
//! `cargo bench --bench fs` (full run); `cargo bench --bench fs -- --test` (smoke).
//! The original Go design's published figures (another machine) are quoted beside ours in
//! `docs/benchmarks.md`; the `direct` group gives ratios measured in the same run.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use cachefs::fs::{Backend, CacheFs, MemBackend, OsBackend, WriteMode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FILES: usize = 1_000;
const SIZE: usize = 4096;

fn paths() -> Vec<String> {
    (0..FILES).map(|i| format!("data/shard_{:02}/file_{i:05}.bin", i % 16)).collect()
}

fn filled(backend: impl Backend, mode: WriteMode) -> CacheFs {
    let fs = CacheFs::builder(backend).max_bytes(256 << 20).write_mode(mode).build();
    for p in paths() {
        fs.backend().write(&p, &[7u8; SIZE]).unwrap();
    }
    fs
}

/// Cycles through `items`.
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut i = 0;
    move || {
        i = if i + 1 == items.len() { 0 } else { i + 1 };
        &items[i]
    }
}

fn operations(c: &mut Criterion) {
    let paths = paths();
    let mut g = c.benchmark_group("cachefs_4k");
    g.throughput(Throughput::Elements(1));

    let fs = filled(MemBackend::new(), WriteMode::WriteThrough);
    for p in &paths {
        fs.read(p).unwrap();
        fs.stat(p).unwrap();
    }
    let mut next = cycle(&paths);
    g.bench_function("read_hit", |b| b.iter(|| black_box(fs.read(next()).unwrap())));
    let mut next = cycle(&paths);
    g.bench_function("metadata_hit", |b| b.iter(|| black_box(fs.stat(next()).unwrap())));
    let one = &paths[42];
    g.bench_function("read_hit_same_path", |b| b.iter(|| black_box(fs.read(one).unwrap())));
    g.bench_function("metadata_hit_same_path", |b| b.iter(|| black_box(fs.stat(one).unwrap())));
    // Each timed invalidation drops a cached file: the setup (untimed) reads a batch back in
    // first. A batch is shorter than the path cycle, so no path is in it twice.
    let mut next = cycle(&paths);
    g.bench_function("invalidate_cached", |b| {
        b.iter_batched(
            || {
                let p = next();
                fs.read(p).unwrap();
                p
            },
            |p| assert!(fs.invalidate(p).unwrap(), "a cached file"),
            criterion::BatchSize::NumIterations(FILES as u64 / 2),
        )
    });
    let mut next = cycle(&paths);
    g.bench_function("read_miss_mem_backend", |b| {
        b.iter(|| {
            let p = next();
            fs.invalidate(p).unwrap();
            black_box(fs.read(p).unwrap())
        })
    });
    let data = Bytes::from(vec![9u8; SIZE]);
    let mut next = cycle(&paths);
    g.bench_function("write_through_mem_backend", |b| b.iter(|| fs.write(next(), data.clone()).unwrap()));

    let wb =
        filled(MemBackend::new(), WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 30 });
    let mut next = cycle(&paths);
    g.bench_function("write_back_ack", |b| b.iter(|| wb.write(next(), data.clone()).unwrap()));
    let raw = vec![9u8; SIZE];
    let mut next = cycle(&paths);
    g.bench_function("write_back_ack_with_copy", |b| {
        b.iter(|| wb.write(next(), Bytes::copy_from_slice(&raw)).unwrap())
    });
    let dir = tempfile::tempdir().unwrap();
    let wb_os = filled(
        OsBackend::new(dir.path()).unwrap(),
        WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 30 },
    );
    let mut next = cycle(&paths);
    g.bench_function("write_back_ack_os_backend", |b| b.iter(|| wb_os.write(next(), data.clone()).unwrap()));
    g.finish();
    // Dropping flushes every dirty file to disk: not part of any measurement.
    drop((wb, wb_os));
}

fn direct(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths = paths();
    let fs = filled(OsBackend::new(dir.path()).unwrap(), WriteMode::WriteThrough);
    for p in &paths {
        fs.read(p).unwrap();
    }
    let os = OsBackend::new(dir.path()).unwrap();
    let full: Vec<_> = paths.iter().map(|p| dir.path().join(p)).collect();
    let mut g = c.benchmark_group("read_4k_same_files");
    g.throughput(Throughput::Bytes(SIZE as u64));
    let mut next = cycle(&paths);
    g.bench_function("cachefs_hit", |b| b.iter(|| black_box(fs.read(next()).unwrap())));
    let mut next = cycle(&paths);
    g.bench_function("os_backend", |b| {
        b.iter(|| {
            let mut buf = Vec::new();
            os.read(next(), &mut buf).unwrap();
            black_box(buf)
        })
    });
    let mut next = cycle(&full);
    g.bench_function("std_fs_read", |b| b.iter(|| black_box(std::fs::read(next()).unwrap())));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = operations, direct
}
criterion_main!(benches);
