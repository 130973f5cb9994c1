//! Warm restart: writing and reading back a snapshot of 1 M entries (a u64 key and a 100-byte value
//! each, about 110 MB), in bytes per second, into and out of memory; and the same for 1 M tiny entries
//! (u64 → u64), whose cost is per entry.
//!
//! `cargo bench --bench snapshot` (full run); `cargo bench --bench snapshot -- --test` (smoke, 10,000
//! entries in a debug build).

use std::hint::black_box;

use cachefs::Cache;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// 1 M entries in an optimised build; a debug build (the test command's smoke run) takes 10,000.
const ENTRIES: u64 = if cfg!(debug_assertions) { 10_000 } else { 1_000_000 };

fn filled<V: Clone + Send + Sync + 'static>(value: impl Fn(u64) -> V) -> Cache<u64, V> {
    let cache = Cache::new(ENTRIES);
    for k in 0..ENTRIES {
        cache.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), value(k));
    }
    cache
}

fn bench<V>(c: &mut Criterion, name: &str, cache: Cache<u64, V>)
where
    V: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut bytes = Vec::new();
    cache.save_snapshot(&mut bytes).expect("save");
    let mut group = c.benchmark_group(format!("snapshot_{name}"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    let mut out = Vec::with_capacity(bytes.len());
    group.bench_function("save", |b| {
        b.iter(|| {
            out.clear();
            black_box(cache.save_snapshot(&mut out).expect("save"));
        })
    });
    group.bench_function("load", |b| {
        b.iter_batched(
            || Cache::<u64, V>::new(ENTRIES),
            |fresh| {
                let report = fresh.load_snapshot(bytes.as_slice()).expect("load");
                // Another hash seed spreads the keys over the shards afresh: each keeps what fits its share.
                assert_eq!(report.loaded + report.beyond_capacity, cache.len());
                assert!(report.loaded * 100 >= cache.len() * 97, "{report:?}");
                fresh
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn snapshots(c: &mut Criterion) {
    bench(c, "100_byte_values", filled(|k| vec![k as u8; 100]));
    bench(c, "u64_values", filled(|k| k));
}

criterion_group!(benches, snapshots);
criterion_main!(benches);
