//! Sampled, striped HDR latency recording, and the percentiles it reports.
//!
//! Latency recording is opt-in ([`CacheBuilder::latency`](crate::CacheBuilder::latency)) and costs one
//! branch per operation when off. When on, one operation in `sample_every` per thread is timed (two clock
//! reads) and recorded into a striped HDR histogram (a lock per stripe, threads spread over the stripes),
//! so recording never makes all threads queue on one lock. Histograms keep two significant digits (1%
//! precision) from 1 ns to 60 s. The engine and the file layer record; the exporters in `metrics` only
//! read the [`LatencySummary`]s they are handed.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::stripe::{default_stripes, thread_index};
use serde::Serialize;

/// Latency percentiles of one operation, in nanoseconds (1% precision).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// The operation: `get_hit`, `get_miss`, `insert` or `load` for a cache.
    pub op: String,
    /// Operations recorded (sampled ones only).
    pub count: u64,
    /// Median.
    pub p50_ns: u64,
    /// 95th percentile.
    pub p95_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest recorded.
    pub max_ns: u64,
    /// Mean (0 when nothing was recorded).
    pub mean_ns: f64,
}

impl LatencySummary {
    pub(crate) fn from_histogram(op: &str, h: &Histogram<u64>) -> Self {
        let empty = h.is_empty();
        let q = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        LatencySummary {
            op: op.to_string(),
            count: h.len(),
            p50_ns: q(0.5),
            p95_ns: q(0.95),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: if empty { 0 } else { h.max() },
            mean_ns: if empty { 0.0 } else { h.mean() },
        }
    }
}

/// How latency is recorded: one operation in `sample_every` per thread is timed.
///
/// ```
/// use cachefs::{Cache, LatencyConfig};
///
/// let cache: Cache<u32, u32> = Cache::builder().latency(LatencyConfig { sample_every: 1 }).build();
/// cache.insert(1, 1);
/// cache.get(&1);
/// let m = cache.metrics();
/// let hits = m.latency.iter().find(|l| l.op == "get_hit").unwrap();
/// assert_eq!(hits.count, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyConfig {
    /// Time one operation in this many (per thread); 1 times every operation. 0 counts as 1.
    pub sample_every: u32,
}

impl Default for LatencyConfig {
    /// One operation in 256 per thread: at a million operations a second, still about 4,000 samples a
    /// second, for a few nanoseconds an operation (see `docs/benchmarks.md`).
    fn default() -> Self {
        LatencyConfig { sample_every: 256 }
    }
}

/// Lowest and highest recordable values (ns), and significant digits kept.
const LOWEST: u64 = 1;
const HIGHEST: u64 = 60_000_000_000;
const SIGFIG: u8 = 2;

thread_local! {
    /// Operations left until this thread times the next one (shared by every recorder).
    static COUNTDOWN: Cell<u32> = const { Cell::new(0) };
}

/// Histograms for a fixed set of operations, striped by thread.
#[derive(Debug)]
pub(crate) struct LatencyRecorder {
    ops: &'static [&'static str],
    /// Changeable while the cache runs ([`LatencyRecorder::set_sample_every`]). Relaxed: a thread that
    /// sees the old rate for a while samples a few operations more or fewer.
    sample_every: AtomicU32,
    /// One lock per stripe guards that stripe's histograms (one per op). Report-only: std locks.
    stripes: Box<[Mutex<Vec<Histogram<u64>>>]>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST, HIGHEST, SIGFIG).expect("constant bounds are valid")
}

impl LatencyRecorder {
    pub(crate) fn new(ops: &'static [&'static str], config: LatencyConfig) -> Self {
        let stripes = default_stripes().min(8);
        LatencyRecorder {
            ops,
            sample_every: AtomicU32::new(config.sample_every.max(1)),
            stripes: (0..stripes).map(|_| Mutex::new(ops.iter().map(|_| histogram()).collect())).collect(),
        }
    }

    /// Starts timing an operation if this one is sampled.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        let every = self.sample_every.load(Relaxed);
        COUNTDOWN.with(|c| {
            let left = c.get().min(every);
            if left > 1 {
                c.set(left - 1);
                None
            } else {
                c.set(every);
                Some(Instant::now())
            }
        })
    }

    /// Times one operation in `config.sample_every` from now on (0 counts as 1).
    pub(crate) fn set_sample_every(&self, config: LatencyConfig) {
        self.sample_every.store(config.sample_every.max(1), Relaxed);
    }

    /// Records the time since `start` under operation `op` (an index into the recorder's ops).
    pub(crate) fn record(&self, op: usize, start: Instant) {
        self.record_nanos(op, u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }

    pub(crate) fn record_nanos(&self, op: usize, nanos: u64) {
        let stripe = &self.stripes[thread_index() % self.stripes.len()];
        let mut hists = stripe.lock().unwrap_or_else(|e| e.into_inner());
        hists[op].saturating_record(nanos.clamp(LOWEST, HIGHEST));
    }

    /// Percentiles per operation, merged over the stripes.
    pub(crate) fn summaries(&self) -> Vec<LatencySummary> {
        let mut merged: Vec<Histogram<u64>> = self.ops.iter().map(|_| histogram()).collect();
        for stripe in self.stripes.iter() {
            let hists = stripe.lock().unwrap_or_else(|e| e.into_inner());
            for (m, h) in merged.iter_mut().zip(hists.iter()) {
                // Same bounds everywhere, so adding cannot fail.
                let _ = m.add(h);
            }
        }
        self.ops.iter().zip(&merged).map(|(op, h)| LatencySummary::from_histogram(op, h)).collect()
    }

    /// Forgets everything recorded so far.
    pub(crate) fn reset(&self) {
        for stripe in self.stripes.iter() {
            for h in stripe.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
                h.reset();
            }
        }
    }

    /// Heap bytes the histograms hold (for the docs' statement of cost).
    pub(crate) fn heap_bytes(&self) -> usize {
        let per_histogram = {
            let h = histogram();
            // counts array: one u64 per distinguishable value range.
            h.distinct_values() * std::mem::size_of::<u64>()
        };
        per_histogram * self.ops.len() * self.stripes.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let r = LatencyRecorder::new(&["a", "b"], LatencyConfig { sample_every: 1 });
        // 1..=100_000 ns, uniform: the q-quantile is q * 100_000.
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let r = &r;
                s.spawn(move || {
                    for v in (1..=100_000u64).filter(|v| v % 4 == t) {
                        r.record_nanos(0, v);
                    }
                });
            }
        });
        let s = &r.summaries()[0];
        assert_eq!((s.op.as_str(), s.count), ("a", 100_000));
        for (got, want) in [(s.p50_ns, 50_000.0), (s.p95_ns, 95_000.0), (s.p99_ns, 99_000.0), (s.p999_ns, 99_900.0)] {
            let err = (got as f64 - want).abs() / want;
            assert!(err <= 0.01, "got {got}, want {want} within 1%");
        }
        assert!((s.max_ns as f64 - 100_000.0).abs() / 100_000.0 <= 0.01);
        assert!((s.mean_ns - 50_000.5).abs() / 50_000.5 <= 0.01);
        assert_eq!(r.summaries()[1].count, 0);
        r.reset();
        assert_eq!(r.summaries()[0].count, 0);
        assert!(r.heap_bytes() > 0);
    }

    #[test]
    fn sampling_times_one_in_n() {
        let r = LatencyRecorder::new(&["op"], LatencyConfig { sample_every: 10 });
        let timed = (0..1_000).filter_map(|_| r.start()).count();
        assert!((99..=101).contains(&timed), "{timed}");
        let every = LatencyRecorder::new(&["op"], LatencyConfig { sample_every: 0 });
        assert!((0..10).all(|_| every.start().is_some()));
    }
}
