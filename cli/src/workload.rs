//! Throughput workloads, shared by `cachefs compare` and the criterion benches so both measure the
//! same thing: per-thread key streams, and a runner that drives a cache from several threads.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};

use crate::peers::{SharedCache, Val};

/// What each operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Every operation a `get`.
    ReadOnly,
    /// `get`, and `insert` on a miss.
    InsertOnMiss,
    /// This percentage of operations are `get`s, the rest `insert`s.
    Reads(u8),
}

/// A Zipf(0.99) stream of `len` keys over `n` ranks, ranks scrambled so hot keys are not neighbours.
pub fn zipf_stream(n: u64, len: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(n as f64, 0.99).expect("valid Zipf parameters");
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| scramble(zipf.sample(&mut rng) as u64 - 1)).collect()
}

/// A stream of `len` keys drawn uniformly from the ranks `0..n` (scrambled as [`zipf_stream`]'s are):
/// every lookup lands on a different part of the cache, so it measures memory latency, not the hot set.
pub fn uniform_stream(n: u64, len: usize, seed: u64) -> Vec<u64> {
    let ranks = rand_distr::Uniform::new(0, n.max(1)).expect("a non-empty range");
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| scramble(ranks.sample(&mut rng))).collect()
}

/// The key of rank `r`.
pub fn scramble(r: u64) -> u64 {
    r.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Distinct values to store, one per key modulo the pool: a cache's value is its own `Arc`, not one
/// shared by every entry, whose reference count two threads reading different keys would both write.
#[derive(Debug, Clone)]
pub struct Values(Vec<Val>);

impl Values {
    /// Distinct `Arc`s, enough that two threads rarely clone the same one.
    const POOL: usize = 4096;

    /// A pool of distinct values.
    pub fn new() -> Self {
        Values((0..Self::POOL).map(|i| Val::new([i as u8; 64])).collect())
    }

    /// The value stored under `key`.
    pub fn for_key(&self, key: u64) -> Val {
        self.0[key as usize % Self::POOL].clone()
    }
}

impl Default for Values {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `mix` on `cache` from `streams.len()` threads (thread `t` cycles through `streams[t]`), for
/// `ops` operations per thread or until `time` has passed, whichever comes first. Returns the total
/// operations and the wall time.
pub fn run(cache: &dyn SharedCache, streams: &[Vec<u64>], mix: Mix, ops: u64, time: Duration) -> (u64, Duration) {
    let values = Values::new();
    let start_line = Barrier::new(streams.len() + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = streams
            .iter()
            .map(|keys| {
                let (values, start_line) = (&values, &start_line);
                s.spawn(move || {
                    start_line.wait();
                    let started = Instant::now();
                    let (mut i, mut done) = (0usize, 0u64);
                    let mut dice = 0x2545_f491_4f6c_dd1du64;
                    while done < ops {
                        for _ in 0..1024 {
                            let k = keys[i];
                            i = if i + 1 == keys.len() { 0 } else { i + 1 };
                            match mix {
                                Mix::ReadOnly => {
                                    black_box(cache.get(k));
                                }
                                Mix::InsertOnMiss => {
                                    if !cache.get(k) {
                                        cache.insert(k, values.for_key(k));
                                    }
                                }
                                Mix::Reads(pct) => {
                                    dice ^= dice << 13;
                                    dice ^= dice >> 7;
                                    dice ^= dice << 17;
                                    if dice % 100 < u64::from(pct) {
                                        black_box(cache.get(k));
                                    } else {
                                        cache.insert(k, values.for_key(k));
                                    }
                                }
                            }
                        }
                        done += 1024;
                        if started.elapsed() >= time {
                            break;
                        }
                    }
                    done
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        let total = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        (total, started.elapsed())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::Peer;

    #[test]
    fn every_peer_runs_every_mix() {
        let streams = vec![zipf_stream(1_000, 4_096, 1), zipf_stream(1_000, 4_096, 2)];
        for peer in Peer::ALL {
            let cache = peer.build(100);
            for mix in [Mix::ReadOnly, Mix::InsertOnMiss, Mix::Reads(90)] {
                let (ops, time) = run(cache.as_ref(), &streams, mix, 2_048, Duration::from_secs(5));
                assert_eq!(ops, 2 * 2_048, "{}", peer.name());
                assert!(time > Duration::ZERO);
            }
            assert!(cache.get(streams[0][0]) || peer != Peer::DashMap, "the ceiling keeps everything");
        }
    }

    #[test]
    fn zipf_is_skewed() {
        let s = zipf_stream(1_000_000, 100_000, 7);
        let hottest = s.iter().filter(|&&k| k == scramble(0)).count();
        assert!(hottest > 3_000, "rank 0 should take several % of accesses, took {hottest}");
    }
}
