//! Trace replays: every contender (a cachefs policy, a peer, or Belady's optimum) at every capacity,
//! single-threaded per replay, replays spread over the machine's cores.

pub mod opt;
pub mod reference;
pub mod restart;

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cachefs::Policy;
use serde::Serialize;

use crate::capacity::Capacity;
use crate::peers::{Peer, SharedCache, Val};
use crate::trace::Trace;

/// One cache a replay measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contender {
    /// A cachefs policy through the real `Cache`.
    Ours(Policy),
    /// `moka::sync::Cache`, its pending work run after every insert so that it never holds more than
    /// its capacity (left to itself it evicts lazily, and a replay that never lets it catch up measures
    /// a bigger cache).
    Moka,
    /// `quick_cache::sync::Cache`.
    QuickCache,
    /// `lru::LruCache` (exact LRU).
    LruCrate,
    /// Belady's optimum.
    Opt,
}

impl Contender {
    /// Every contender, in report order.
    pub fn all() -> Vec<Contender> {
        vec![
            Contender::Ours(Policy::Lru),
            Contender::Ours(Policy::Lfu),
            Contender::Ours(Policy::Ttl),
            Contender::Ours(Policy::Hybrid),
            Contender::Moka,
            Contender::QuickCache,
            Contender::LruCrate,
            Contender::Opt,
        ]
    }

    /// The report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Ours(p) => p.name(),
            Contender::Moka => "moka",
            Contender::QuickCache => "quick_cache",
            Contender::LruCrate => "lru-crate",
            Contender::Opt => "opt",
        }
    }
}

impl fmt::Display for Contender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A contender name that is not one of [`Contender::all`].
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown policy {0:?}; expected one of lru, lfu, ttl, hybrid, moka, quick_cache, lru-crate, opt")]
pub struct UnknownContender(pub String);

impl FromStr for Contender {
    type Err = UnknownContender;

    fn from_str(s: &str) -> Result<Self, UnknownContender> {
        Contender::all().into_iter().find(|c| c.name() == s.trim()).ok_or_else(|| UnknownContender(s.to_string()))
    }
}

/// Replays `keys` through `cache`: each access a `get`, an `insert` on a miss. Returns the hits.
fn drive(cache: &dyn SharedCache, keys: &[u64], progress: &dyn Fn(u64)) -> u64 {
    let value: Val = Val::new([0; 64]);
    let mut hits = 0;
    for chunk in keys.chunks(65_536) {
        for &k in chunk {
            if cache.get(k) {
                hits += 1;
            } else {
                cache.insert(k, value.clone());
            }
        }
        progress(chunk.len() as u64);
    }
    hits
}

/// The default seed of [`sweep`]'s hashers: a replay prints the same tables on every run.
pub const DEFAULT_SEED: u64 = 1;

/// A hasher seeded from `seed`, for every cache that lets its hasher be chosen (cachefs, moka,
/// quick_cache), so that which keys share a shard or a sketch counter is the same on every run.
pub(crate) fn hasher(seed: u64) -> ahash::RandomState {
    let mix = |x: u64, k: u64| (x ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    ahash::RandomState::with_seeds(
        mix(seed, 1),
        mix(seed, 0xbf58_476d_1ce4_e5b9),
        mix(seed, 0x94d0_49bb_1331_11eb),
        mix(seed, 0x2545_f491_4f6c_dd1d),
    )
}

/// moka at its capacity: its pending work (evictions included) runs after every insert.
struct FairMoka(moka::sync::Cache<u64, Val, ahash::RandomState>);

impl SharedCache for FairMoka {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        self.0.insert(key, value);
        self.0.run_pending_tasks();
    }
}

type SeededQuickCache = quick_cache::sync::Cache<
    u64,
    Val,
    quick_cache::UnitWeighter,
    ahash::RandomState,
    quick_cache::sync::DefaultLifecycle<u64, Val>,
>;

/// quick_cache with a seeded hasher.
struct QuickCache(SeededQuickCache);

impl SharedCache for QuickCache {
    fn get(&self, key: u64) -> bool {
        self.0.get(&key).is_some()
    }
    fn insert(&self, key: u64, value: Val) {
        self.0.insert(key, value);
    }
}

/// cachefs as a user builds it, with `policy` and, if given, `shards`, hashing with `seed`.
fn ours(policy: cachefs::Policy, capacity: u64, shards: Option<usize>, seed: u64) -> cachefs::Cache<u64, Val> {
    let mut b = cachefs::Cache::builder().max_capacity(capacity).policy(policy).hasher(hasher(seed));
    if let Some(s) = shards {
        b = b.shards(s);
    }
    b.build()
}

/// Hits of `contender` with `capacity` entries over `trace` (`next` = `opt::next_uses(&trace.keys)`),
/// hashing with `seed` where the cache allows it.
pub fn hits(
    contender: Contender,
    trace: &Trace,
    next: &[usize],
    capacity: u64,
    shards: Option<usize>,
    seed: u64,
    progress: &dyn Fn(u64),
) -> u64 {
    let keys = &trace.keys;
    match contender {
        Contender::Ours(policy) => drive(&ours(policy, capacity, shards, seed), keys, progress),
        Contender::Moka => {
            let cache = moka::sync::Cache::builder().max_capacity(capacity).build_with_hasher(hasher(seed));
            drive(&FairMoka(cache), keys, progress)
        }
        Contender::QuickCache => {
            let entries = usize::try_from(capacity).unwrap_or(usize::MAX);
            let cache = SeededQuickCache::with(
                entries,
                capacity,
                quick_cache::UnitWeighter,
                hasher(seed),
                quick_cache::sync::DefaultLifecycle::default(),
            );
            drive(&QuickCache(cache), keys, progress)
        }
        Contender::LruCrate => drive(Peer::MutexLru.build(capacity).as_ref(), keys, progress),
        Contender::Opt => opt::hits(keys, next, capacity, progress),
    }
}

/// One capacity's results for one trace.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Capacity in entries.
    pub entries: u64,
    /// Capacity as a percentage of the trace's unique keys.
    pub percent: f64,
    /// Hit ratio in percent, per contender, in the order of [`TraceResult::contenders`].
    pub hit_ratio: Vec<f64>,
}

/// All results for one trace.
#[derive(Debug, Clone, Serialize)]
pub struct TraceResult {
    /// Trace name.
    pub name: String,
    /// Accesses in the trace.
    pub accesses: u64,
    /// Distinct keys.
    pub unique: u64,
    /// Cold-miss ceiling in percent: no cache can hit more.
    pub ceiling: f64,
    /// Contender names, the columns of each row.
    pub contenders: Vec<String>,
    /// One row per capacity.
    pub rows: Vec<Row>,
}

impl TraceResult {
    /// The hit ratio of the contender called `name` in `row`, if it ran.
    pub fn get(&self, row: &Row, name: &str) -> Option<f64> {
        self.contenders.iter().position(|c| c == name).map(|i| row.hit_ratio[i])
    }
}

/// Replays every trace at every capacity through every contender on `threads` worker threads.
/// `progress` is called with numbers of accesses replayed, from any worker.
pub fn sweep(
    traces: &[Trace],
    capacities: &[Capacity],
    contenders: &[Contender],
    shards: Option<usize>,
    seed: u64,
    threads: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<TraceResult> {
    let next: Vec<Vec<usize>> = traces
        .iter()
        .map(|t| if contenders.contains(&Contender::Opt) { opt::next_uses(&t.keys) } else { Vec::new() })
        .collect();
    let mut jobs: Vec<(usize, usize, usize)> = Vec::new();
    for t in 0..traces.len() {
        for c in 0..capacities.len() {
            for p in 0..contenders.len() {
                jobs.push((t, c, p));
            }
        }
    }
    // Longest first, so that the big traces do not finish last on one core.
    jobs.sort_by_key(|&(t, _, _)| std::cmp::Reverse(traces[t].keys.len()));
    let results = Mutex::new(vec![vec![vec![0u64; contenders.len()]; capacities.len()]; traces.len()]);
    let cursor = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                while let Some(&(t, c, p)) = jobs.get(cursor.fetch_add(1, Ordering::Relaxed)) {
                    let trace = &traces[t];
                    let cap = capacities[c].entries(trace.unique);
                    let h = hits(contenders[p], trace, &next[t], cap, shards, seed, progress);
                    results.lock().unwrap_or_else(|e| e.into_inner())[t][c][p] = h;
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    traces
        .iter()
        .zip(results)
        .map(|(trace, per_cap)| TraceResult {
            name: trace.name.clone(),
            accesses: trace.keys.len() as u64,
            unique: trace.unique as u64,
            ceiling: 100.0 * trace.ceiling(),
            contenders: contenders.iter().map(|c| c.name().to_string()).collect(),
            rows: capacities
                .iter()
                .zip(per_cap)
                .map(|(cap, hits)| {
                    let entries = cap.entries(trace.unique);
                    Row {
                        entries,
                        percent: 100.0 * entries as f64 / trace.unique as f64,
                        hit_ratio: hits.iter().map(|&h| 100.0 * h as f64 / trace.keys.len() as f64).collect(),
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Contender::all() {
            assert_eq!(c.name().parse::<Contender>(), Ok(c));
        }
        assert!("arc".parse::<Contender>().is_err());
    }

    /// Our LRU, on one shard, agrees exactly with the `lru` crate and a hand-written reference.
    #[test]
    fn lru_agrees_with_references() {
        let mut x = 12345u64;
        let keys: Vec<u64> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 1_000).min(x % 137 + (x % 3) * 400)
            })
            .collect();
        let trace = Trace::from_keys("t", keys.clone());
        for cap in [1u64, 10, 100, 500] {
            let ours = hits(Contender::Ours(Policy::Lru), &trace, &[], cap, Some(1), DEFAULT_SEED, &|_| {});
            let crate_lru = hits(Contender::LruCrate, &trace, &[], cap, None, DEFAULT_SEED, &|_| {});
            // Reference: a vector in recency order.
            let mut order: Vec<u64> = Vec::new();
            let mut reference = 0;
            for &k in &keys {
                if let Some(p) = order.iter().position(|&o| o == k) {
                    reference += 1;
                    order.remove(p);
                } else if order.len() as u64 == cap {
                    order.remove(0);
                }
                order.push(k);
            }
            assert_eq!((ours, crate_lru), (reference, reference), "capacity {cap}");
        }
    }

    /// The same seed gives the same hits (every hasher is seeded); moka, held to its capacity, never
    /// beats OPT even in a tiny cache, where lazily applied evictions used to let it.
    #[test]
    fn seeded_replays_repeat_and_moka_keeps_its_capacity() {
        let mut x = 99u64;
        let keys: Vec<u64> = (0..30_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 3_000
            })
            .collect();
        let trace = Trace::from_keys("t", keys.clone());
        let next = opt::next_uses(&keys);
        for contender in [Contender::Ours(Policy::Hybrid), Contender::QuickCache, Contender::Moka] {
            let a = hits(contender, &trace, &next, 50, None, 7, &|_| {});
            let b = hits(contender, &trace, &next, 50, None, 7, &|_| {});
            assert_eq!(a, b, "{contender}: same seed, same hits");
        }
        let opt = hits(Contender::Opt, &trace, &next, 10, None, 7, &|_| {});
        let moka = hits(Contender::Moka, &trace, &next, 10, None, 7, &|_| {});
        assert!(moka <= opt, "moka {moka} beats OPT {opt} at 10 entries");
        // A loop of 15 keys through 10 entries: a moka left to evict lazily holds all 15 and hits nearly
        // always, far above OPT.
        let looping: Vec<u64> = (0..3_000u64).map(|i| i % 15).collect();
        let trace = Trace::from_keys("loop", looping.clone());
        let next = opt::next_uses(&looping);
        let opt = hits(Contender::Opt, &trace, &next, 10, None, 7, &|_| {});
        let moka = hits(Contender::Moka, &trace, &next, 10, None, 7, &|_| {});
        assert!(moka <= opt, "moka {moka} beats OPT {opt} on a loop through 10 entries");
    }

    #[test]
    fn sweep_orders_and_bounds() {
        let keys: Vec<u64> = (0..20_000u64).map(|i| (i * 7919) % 500 + (i % 3) * 1000 * (i % 11)).collect();
        let traces = [Trace::from_keys("t", keys)];
        let caps = [Capacity::Percent(5.0), Capacity::Entries(100)];
        let results = sweep(&traces, &caps, &Contender::all(), None, DEFAULT_SEED, 2, &|_| {});
        let r = &results[0];
        assert_eq!(r.rows.len(), 2);
        for row in &r.rows {
            let opt = r.get(row, "opt").unwrap();
            for name in &r.contenders {
                let v = r.get(row, name).unwrap();
                assert!(v <= opt + 1e-9, "{name} {v} beats OPT {opt}");
                assert!(opt <= r.ceiling + 1e-9);
            }
        }
    }
}
