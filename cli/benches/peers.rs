//! cachefs against its peers under criterion: the workloads of `cachefs compare`, through the same code
//! (`cachefs_cli::workload`, `cachefs_cli::peers`), at 1, 2 and 4 threads.
//!
//! `cargo bench -p cli --bench peers` (full run); `cargo bench -p cli --bench peers -- --test` (smoke).

use std::time::Duration;

use cachefs_cli::peers::Peer;
use cachefs_cli::workload::{self, Mix};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CAPACITY: u64 = 100_000;
const BATCH: u64 = 1_024;

fn peers(c: &mut Criterion) {
    let zipf: Vec<Vec<u64>> = (0..4).map(|t| workload::zipf_stream(1_000_000, 1 << 20, t)).collect();
    let resident: Vec<Vec<u64>> = (0..4).map(|t| workload::zipf_stream(CAPACITY, 1 << 20, 10 + t)).collect();
    let uniform: Vec<Vec<u64>> = (0..4).map(|t| workload::uniform_stream(CAPACITY, 1 << 20, 20 + t)).collect();
    let values = workload::Values::new();
    for (name, mix, keys, capacity, ceiling) in [
        ("read_only", Mix::ReadOnly, &resident, 2 * CAPACITY, true),
        ("read_only_uniform", Mix::ReadOnly, &uniform, 2 * CAPACITY, true),
        ("insert_on_miss", Mix::InsertOnMiss, &zipf, CAPACITY, false),
        ("reads_90", Mix::Reads(90), &zipf, CAPACITY, false),
        ("reads_50", Mix::Reads(50), &zipf, CAPACITY, false),
    ] {
        let mut group = c.benchmark_group(name);
        for threads in [1usize, 2, 4] {
            group.throughput(Throughput::Elements(BATCH * threads as u64));
            for peer in Peer::ALL {
                if peer == Peer::DashMap && !ceiling {
                    continue;
                }
                let cache = peer.build(capacity);
                match mix {
                    Mix::ReadOnly => (0..CAPACITY).for_each(|r| {
                        let k = workload::scramble(r);
                        cache.insert(k, values.for_key(k))
                    }),
                    _ => keys[0].iter().take(2 * CAPACITY as usize).for_each(|&k| cache.insert(k, values.for_key(k))),
                }
                cache.settle();
                let streams = &keys[..threads];
                group.bench_with_input(BenchmarkId::new(peer.name(), format!("{threads}t")), &threads, |b, _| {
                    b.iter_custom(|iters| workload::run(cache.as_ref(), streams, mix, iters * BATCH, Duration::MAX).1);
                });
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = peers
}
criterion_main!(benches);
