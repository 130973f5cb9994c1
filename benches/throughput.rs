//! Get and insert throughput on a Zipf(0.99) key stream, cachefs against its peers, 1 and 2 threads.
//!
//! `cargo bench --bench throughput` (full run); `cargo bench --bench throughput -- --test` (smoke);
//! `cargo bench --bench throughput -- latency_overhead` (the cost of latency recording alone).
//! Workloads (values are `Arc<[u8; 64]>`):
//! - `get`: 100k keys all resident (capacity 100k), Zipf reads: all hits.
//! - `get_or_insert`: Zipf over 1M keys, capacity 100k, insert on miss.
//! - `insert`: Zipf over 1M keys, capacity 100k, every access an insert.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};

type Val = Arc<[u8; 64]>;

const CAPACITY: u64 = 100_000;
const BATCH: u64 = 1_000;

trait Peer: Send + Sync {
    fn get(&self, k: u64) -> Option<Val>;
    fn insert(&self, k: u64, v: Val);
}

impl Peer for cachefs::Cache<u64, Val> {
    fn get(&self, k: u64) -> Option<Val> {
        cachefs::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: Val) {
        cachefs::Cache::insert(self, k, v)
    }
}

impl Peer for quick_cache::sync::Cache<u64, Val> {
    fn get(&self, k: u64) -> Option<Val> {
        quick_cache::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: Val) {
        quick_cache::sync::Cache::insert(self, k, v)
    }
}

impl Peer for moka::sync::Cache<u64, Val> {
    fn get(&self, k: u64) -> Option<Val> {
        moka::sync::Cache::get(self, &k)
    }
    fn insert(&self, k: u64, v: Val) {
        moka::sync::Cache::insert(self, k, v)
    }
}

impl Peer for Mutex<lru::LruCache<u64, Val>> {
    fn get(&self, k: u64) -> Option<Val> {
        self.lock().unwrap_or_else(|e| e.into_inner()).get(&k).cloned()
    }
    fn insert(&self, k: u64, v: Val) {
        self.lock().unwrap_or_else(|e| e.into_inner()).put(k, v);
    }
}

/// A peer's name and how to build an empty one.
type MakePeer = (&'static str, Box<dyn Fn() -> Box<dyn Peer>>);

fn peers() -> Vec<MakePeer> {
    vec![
        ("cachefs", Box::new(|| Box::new(cachefs::Cache::<u64, Val>::new(CAPACITY)))),
        ("quick_cache", Box::new(|| Box::new(quick_cache::sync::Cache::<u64, Val>::new(CAPACITY as usize)))),
        ("moka", Box::new(|| Box::new(moka::sync::Cache::<u64, Val>::new(CAPACITY)))),
        (
            "mutex_lru",
            Box::new(|| Box::new(Mutex::new(lru::LruCache::new(NonZeroUsize::new(CAPACITY as usize).unwrap())))),
        ),
    ]
}

/// A Zipf(0.99) stream over `n` keys, ranks scrambled so hot keys are not neighbours.
fn zipf_keys(n: u64, len: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(n as f64, 0.99).expect("valid Zipf parameters");
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| (zipf.sample(&mut rng) as u64 - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect()
}

#[derive(Clone, Copy)]
enum Workload {
    Get,
    GetOrInsert,
    Insert,
}

/// Runs `iters × BATCH` operations on each of `threads` threads; returns the wall time.
fn run(cache: &dyn Peer, keys: &[Vec<u64>], threads: usize, iters: u64, workload: Workload) -> Duration {
    let value: Val = Arc::new([7; 64]);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (keys, value, barrier) = (&keys[t], value.clone(), &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut i = 0;
                for _ in 0..iters * BATCH {
                    let k = keys[i];
                    i = if i + 1 == keys.len() { 0 } else { i + 1 };
                    match workload {
                        Workload::Get => {
                            black_box(cache.get(k));
                        }
                        Workload::GetOrInsert => {
                            if cache.get(k).is_none() {
                                cache.insert(k, value.clone());
                            }
                        }
                        Workload::Insert => cache.insert(k, value.clone()),
                    }
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

fn throughput(c: &mut Criterion) {
    let streams: Vec<Vec<u64>> = (0..2).map(|t| zipf_keys(1_000_000, 1 << 20, t)).collect();
    let resident: Vec<Vec<u64>> = (0..2).map(|t| zipf_keys(CAPACITY, 1 << 20, 10 + t)).collect();
    for (name, workload, keys) in [
        ("get", Workload::Get, &resident),
        ("get_or_insert", Workload::GetOrInsert, &streams),
        ("insert", Workload::Insert, &streams),
    ] {
        let mut group = c.benchmark_group(format!("zipf_{name}"));
        for threads in [1usize, 2] {
            group.throughput(Throughput::Elements(BATCH * threads as u64));
            for (peer, make) in peers() {
                let cache = make();
                let value: Val = Arc::new([7; 64]);
                // Pre-fill: every resident key for `get`, a warm working set otherwise.
                match workload {
                    Workload::Get => {
                        (0..CAPACITY).for_each(|r| cache.insert(r.wrapping_mul(0x9e37_79b9_7f4a_7c15), value.clone()))
                    }
                    _ => keys[0].iter().take(CAPACITY as usize * 2).for_each(|&k| cache.insert(k, value.clone())),
                }
                group.bench_with_input(BenchmarkId::new(peer, format!("{threads}t")), &threads, |b, &threads| {
                    b.iter_custom(|iters| run(cache.as_ref(), keys, threads, iters, workload));
                });
            }
        }
        group.finish();
    }
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
                b.iter_custom(|iters| run(&cache, &resident, threads, iters, Workload::Get));
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

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = throughput, latency_overhead, batches
}
criterion_main!(benches);
