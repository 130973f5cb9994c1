//! Engine-only benches: the cost of latency recording, batch calls against loops of single-key calls, and
//! the async loading API's hit path against the sync one.
//! (cachefs against its peers: `cargo bench -p cli --bench peers`, or `cargo run --release -p cli -- compare`.)
//!
//! `cargo bench --bench engine` (full run); `cargo bench --bench engine -- --test` (smoke).

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};

type Val = Arc<[u8; 64]>;

const CAPACITY: u64 = 100_000;
const BATCH: u64 = 1_000;

/// A Zipf(0.99) stream over `n` keys, ranks scrambled so hot keys are not neighbours.
fn zipf_keys(n: u64, len: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(n as f64, 0.99).expect("valid Zipf parameters");
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| (zipf.sample(&mut rng) as u64 - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect()
}

/// Runs `iters × BATCH` gets on each of `keys.len()` threads; returns the wall time.
fn run(cache: &cachefs::Cache<u64, Val>, keys: &[Vec<u64>], threads: usize, iters: u64) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for keys in &keys[..threads] {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let mut i = 0;
                for _ in 0..iters * BATCH {
                    black_box(cache.get(&keys[i]));
                    i = if i + 1 == keys.len() { 0 } else { i + 1 };
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

/// Get-hit throughput with latency recording off, on with the default sampling, and on for every op.
/// Three instances of each of `off` and `sampled`, built and measured alternately: a memory-bound
/// workload varies by some 15% from one cache instance to the next (where its pages land), so compare
/// the means over instances, not one pair.
fn latency_overhead(c: &mut Criterion) {
    let resident: Vec<Vec<u64>> = (0..2).map(|t| zipf_keys(CAPACITY, 1 << 20, 10 + t)).collect();
    let mut group = c.benchmark_group("latency_overhead");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(BATCH * threads as u64));
        for (name, latency) in [
            ("off#1", None),
            ("sampled#1", Some(cachefs::LatencyConfig::default())),
            ("off#2", None),
            ("sampled#2", Some(cachefs::LatencyConfig::default())),
            ("off#3", None),
            ("sampled#3", Some(cachefs::LatencyConfig::default())),
            ("every_op", Some(cachefs::LatencyConfig { sample_every: 1 })),
        ] {
            let mut b = cachefs::Cache::<u64, Val>::builder().max_capacity(CAPACITY);
            if let Some(l) = latency {
                b = b.latency(l);
            }
            let cache = b.build();
            let value: Val = Arc::new([7; 64]);
            (0..CAPACITY).for_each(|r| cache.insert(r.wrapping_mul(0x9e37_79b9_7f4a_7c15), value.clone()));
            group.bench_with_input(BenchmarkId::new(name, format!("{threads}t")), &threads, |b, &threads| {
                b.iter_custom(|iters| run(&cache, &resident, threads, iters));
            });
        }
    }
    group.finish();
}

/// Batch calls against a loop of single-key calls, 1,000 keys (resident, spread over every shard).
fn batches(c: &mut Criterion) {
    let cache = cachefs::Cache::<u64, Val>::new(CAPACITY);
    let value: Val = Arc::new([7; 64]);
    let keys: Vec<u64> = (0..1_000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let refs: Vec<&u64> = keys.iter().collect();
    let pairs = || keys.iter().map(|&k| (k, value.clone()));
    cache.insert_many(pairs());
    let mut group = c.benchmark_group("batch_1000");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("get_many", |b| b.iter(|| black_box(cache.get_many(&refs))));
    group.bench_function("get_loop", |b| b.iter(|| keys.iter().map(|k| cache.get(k)).collect::<Vec<_>>()));
    group.bench_function("insert_many", |b| b.iter(|| cache.insert_many(pairs())));
    group.bench_function("insert_loop", |b| b.iter(|| pairs().for_each(|(k, v)| cache.insert(k, v))));
    group.bench_function("invalidate_many", |b| {
        b.iter_batched(
            || cache.insert_many(pairs()),
            |_| cache.invalidate_many(&refs),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("invalidate_loop", |b| {
        b.iter_batched(
            || cache.insert_many(pairs()),
            |_| keys.iter().filter(|k| cache.invalidate(*k)).count(),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A hit through `get_with_async` (its future polled once: a hit is ready at the first poll, so no
/// executor is involved) against a hit through `get_with`, over 1,000 resident keys.
fn loading_hits(c: &mut Criterion) {
    let cache = cachefs::Cache::<u64, Val>::new(CAPACITY);
    let value: Val = Arc::new([7; 64]);
    let keys: Vec<u64> = (0..1_000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    cache.insert_many(keys.iter().map(|&k| (k, value.clone())));
    let mut group = c.benchmark_group("loading_hit_1000");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("get_with", |b| {
        b.iter(|| keys.iter().map(|&k| cache.get_with(k, || unreachable!())).filter(|v| v[0] == 7).count())
    });
    group.bench_function("get_with_async", |b| {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        b.iter(|| {
            keys.iter()
                .map(|&k| {
                    let load = std::pin::pin!(cache.get_with_async(k, async { unreachable!() }));
                    match load.poll(&mut cx) {
                        std::task::Poll::Ready(v) => v,
                        std::task::Poll::Pending => unreachable!("a hit is ready at once"),
                    }
                })
                .filter(|v| v[0] == 7)
                .count()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = latency_overhead, batches, loading_hits
}
criterion_main!(benches);
