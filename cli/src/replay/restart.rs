//! Warm restart measured on traces: replay the first half of a trace, save a snapshot, start a new cache
//! (hashing with another seed, as a new process would), load the snapshot and replay the second half.
//! Its hit ratio over the second half is compared with the cache that never restarted and with a cold
//! restart (a new, empty cache).

use std::time::Instant;

use cachefs::{Cache, Policy};
use serde::Serialize;

use super::hasher;
use crate::capacity::Capacity;
use crate::trace::Trace;

/// Hit ratios (percent) over the second half of a trace, for one capacity and policy.
#[derive(Debug, Clone, Serialize)]
pub struct RestartRow {
    /// Trace name.
    pub trace: String,
    /// Capacity in entries.
    pub entries: u64,
    /// Capacity as a percentage of the trace's unique keys.
    pub percent: f64,
    /// The policy.
    pub policy: String,
    /// The cache that ran through the whole trace.
    pub never_restarted: f64,
    /// The same, hashing with the restarted cache's seed: how much the hash seed alone moves a cell.
    pub never_restarted_other_seed: f64,
    /// The cache restarted from a snapshot at half-time.
    pub restarted: f64,
    /// A new, empty cache at half-time.
    pub cold: f64,
    /// The restarted cache over the first twentieth of the second half.
    pub restarted_early: f64,
    /// The cold cache over the first twentieth of the second half.
    pub cold_early: f64,
    /// Snapshot size in bytes.
    pub snapshot_bytes: u64,
    /// Entries the snapshot held, and how many the new cache loaded.
    pub saved: u64,
    /// Entries loaded.
    pub loaded: u64,
    /// Seconds to save and load the snapshot.
    pub seconds: f64,
}

fn build(policy: Policy, capacity: u64, seed: u64) -> Cache<u64, ()> {
    Cache::builder().max_capacity(capacity).policy(policy).hasher(hasher(seed)).build()
}

/// Each access a `get`, an `insert` on a miss; returns the hits.
fn drive(cache: &Cache<u64, ()>, keys: &[u64]) -> u64 {
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, ());
        }
    }
    hits
}

/// The restart experiment for one trace, capacity and policy, hashing with `seed` before the restart
/// and `seed + 1` after it.
pub fn measure(trace: &Trace, capacity: Capacity, policy: Policy, seed: u64) -> RestartRow {
    let entries = capacity.entries(trace.unique);
    let (first, second) = trace.keys.split_at(trace.keys.len() / 2);
    let ratio = |hits: u64| 100.0 * hits as f64 / second.len().max(1) as f64;

    let old = build(policy, entries, seed);
    drive(&old, first);
    let started = Instant::now();
    let mut bytes = Vec::new();
    let saved = old.save_snapshot(&mut bytes).expect("a snapshot into memory cannot fail");
    let restarted = build(policy, entries, seed.wrapping_add(1));
    let load = restarted.load_snapshot(bytes.as_slice()).expect("the snapshot just written loads");
    let seconds = started.elapsed().as_secs_f64();
    let never_restarted = ratio(drive(&old, second));
    let other = build(policy, entries, seed.wrapping_add(1));
    drive(&other, first);
    let never_restarted_other_seed = ratio(drive(&other, second));
    // The first twentieth of the second half: the burst of misses a cold restart sends to the origin.
    let (early, late) = second.split_at(second.len() / 20);
    let early_ratio = |hits: u64| 100.0 * hits as f64 / early.len().max(1) as f64;
    let (restarted_early, restarted_late) = (drive(&restarted, early), drive(&restarted, late));
    let restarted = ratio(restarted_early + restarted_late);
    let cold_cache = build(policy, entries, seed.wrapping_add(1));
    let (cold_early, cold_late) = (drive(&cold_cache, early), drive(&cold_cache, late));
    let cold = ratio(cold_early + cold_late);
    RestartRow {
        trace: trace.name.clone(),
        entries,
        percent: 100.0 * entries as f64 / trace.unique.max(1) as f64,
        policy: policy.name().to_string(),
        never_restarted,
        never_restarted_other_seed,
        restarted,
        cold,
        restarted_early: early_ratio(restarted_early),
        cold_early: early_ratio(cold_early),
        snapshot_bytes: saved.bytes,
        saved: saved.entries,
        loaded: load.loaded,
        seconds,
    }
}

/// Every trace × capacity × policy, spread over `threads` threads; rows in that order.
pub fn sweep(
    traces: &[Trace],
    capacities: &[Capacity],
    policies: &[Policy],
    seed: u64,
    threads: usize,
) -> Vec<RestartRow> {
    let jobs: Vec<(usize, Capacity, Policy)> = traces
        .iter()
        .enumerate()
        .flat_map(|(t, _)| capacities.iter().flat_map(move |&c| policies.iter().map(move |&p| (t, c, p))))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rows = std::sync::Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(t, c, p)) = jobs.get(i) else { break };
                    let row = measure(&traces[t], c, p, seed);
                    rows.lock().expect("no panic while held")[i] = Some(row);
                }
            });
        }
    });
    rows.into_inner().expect("no panic while held").into_iter().map(|r| r.expect("every job ran")).collect()
}

/// A Markdown table of the rows, and per policy the mean of each column and the largest shortfall of a
/// restarted cache against the never-restarted one.
pub fn markdown(rows: &[RestartRow]) -> String {
    let mut out = String::from(
        "| trace | capacity | policy | never restarted | the same, other seed | restarted | cold restart | restarted − never | snapshot |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {:.0}% ({}) | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.2} | {} entries, {:.1} KiB |\n",
            r.trace,
            r.percent,
            r.entries,
            r.policy,
            r.never_restarted,
            r.never_restarted_other_seed,
            r.restarted,
            r.cold,
            r.restarted - r.never_restarted,
            r.loaded,
            r.snapshot_bytes as f64 / 1024.0
        );
    }
    let mut policies: Vec<&str> = rows.iter().map(|r| r.policy.as_str()).collect();
    policies.dedup();
    policies.sort_unstable();
    policies.dedup();
    out += "\n| policy | cells | mean never restarted | mean restarted | mean cold | worst restarted − never | cells more than 1 pp under | worst other seed − never | first 5% after: restarted | first 5%: cold |\n\
            |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for p in policies {
        let of: Vec<&RestartRow> = rows.iter().filter(|r| r.policy == p).collect();
        let mean = |f: fn(&RestartRow) -> f64| of.iter().map(|r| f(r)).sum::<f64>() / of.len() as f64;
        let worst = of.iter().map(|r| r.restarted - r.never_restarted).fold(f64::MAX, f64::min);
        let under = of.iter().filter(|r| r.restarted < r.never_restarted - 1.0).count();
        let seed_worst = of.iter().map(|r| r.never_restarted_other_seed - r.never_restarted).fold(f64::MAX, f64::min);
        out += &format!(
            "| {p} | {} | {:.2} | {:.2} | {:.2} | {:+.2} | {under} | {:+.2} | {:.2} | {:.2} |\n",
            of.len(),
            mean(|r| r.never_restarted),
            mean(|r| r.restarted),
            mean(|r| r.cold),
            worst,
            seed_worst,
            mean(|r| r.restarted_early),
            mean(|r| r.cold_early)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_cache_hits_like_the_one_that_never_stopped() {
        // A Zipf-like trace: key k drawn with weight 1/(k+1), deterministic.
        let mut state = 7u64;
        let mut keys = Vec::new();
        let weights: Vec<f64> = (0..2_000).map(|k| 1.0 / (k as f64 + 1.0)).collect();
        let total: f64 = weights.iter().sum();
        for _ in 0..8_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut x = (state % 1_000_000) as f64 / 1_000_000.0 * total;
            let k = weights.iter().position(|w| {
                x -= w;
                x <= 0.0
            });
            keys.push(k.unwrap_or(1_999) as u64);
        }
        let unique = keys.iter().collect::<std::collections::HashSet<_>>().len();
        let trace = Trace { name: "zipf".into(), keys, unique };
        for policy in [Policy::Lru, Policy::Hybrid] {
            let r = measure(&trace, Capacity::Percent(10.0), policy, 1);
            assert!(r.restarted > r.cold, "{r:?}");
            assert!((r.restarted - r.never_restarted).abs() < 1.0, "{r:?}");
            // The restarted cache hashes with another seed: its shards keep what fits each of them.
            assert!(r.loaded <= r.saved && r.loaded * 10 >= r.saved * 9, "{r:?}");
        }
        assert!(markdown(&[measure(&trace, Capacity::Entries(50), Policy::Lfu, 1)]).contains("| zipf | "));
    }
}
