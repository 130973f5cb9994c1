//! `cachefs compare`: cachefs against its peers in one short run: throughput per workload and thread
//! count, memory per entry, and hit ratio on two embedded traces, as Markdown tables and an SVG chart.

pub mod memory;
mod plot;

use std::fmt::Write;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::capacity::Capacity;
use crate::peers::Peer;
use crate::replay::{self, Contender};
use crate::trace::{self, Trace, TraceError};
use crate::workload::{self, Mix};

pub use plot::plot_throughput;

/// How big and long the run is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Distinct keys of the read-only workload (all resident).
    pub resident_keys: u64,
    /// Distinct keys of the Zipf workloads.
    pub zipf_keys: u64,
    /// Capacity for the Zipf workloads.
    pub capacity: u64,
    /// Thread counts to run.
    pub threads: Vec<usize>,
    /// Measuring time per cell.
    pub cell_time: Duration,
    /// Entries for the memory measurement (0 skips it).
    pub memory_entries: u64,
    /// The arc_P3 trace for the replay workload, if available.
    pub p3: Option<Trace>,
}

impl Settings {
    /// The defaults: 100k resident keys; 1M Zipf keys at capacity 100k; 1, 2 and 4 threads; 0.25 s a cell;
    /// memory at 1M entries.
    pub fn full() -> Self {
        Settings {
            resident_keys: 100_000,
            zipf_keys: 1_000_000,
            capacity: 100_000,
            threads: vec![1, 2, 4],
            cell_time: Duration::from_millis(250),
            memory_entries: 1_000_000,
            p3: None,
        }
    }

    /// A tiny run for smoke tests.
    pub fn smoke() -> Self {
        Settings {
            resident_keys: 2_000,
            zipf_keys: 20_000,
            capacity: 2_000,
            threads: vec![1, 2],
            cell_time: Duration::from_millis(10),
            memory_entries: 10_000,
            p3: None,
        }
    }
}

/// One workload's results: Mops/s per thread count, per peer (`None` where the peer does not run it).
#[derive(Debug, Clone)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Thread count.
    pub threads: usize,
    /// Mops/s per peer, in [`Peer::ALL`] order.
    pub mops: Vec<Option<f64>>,
}

struct Workload {
    name: String,
    mix: Mix,
    /// Keys per thread (thread t uses `streams[t % len]`).
    streams: Vec<Vec<u64>>,
    capacity: u64,
    /// Keys inserted before measuring.
    prefill: Vec<u64>,
    /// Whether the no-eviction ceiling runs it.
    ceiling: bool,
}

fn workloads(s: &Settings) -> Vec<Workload> {
    let max_threads = s.threads.iter().copied().max().unwrap_or(1);
    let stream_len = 1 << 20.min(4 + (s.zipf_keys as f64).log2().ceil() as usize);
    let resident: Vec<Vec<u64>> =
        (0..max_threads).map(|t| workload::zipf_stream(s.resident_keys, stream_len, 10 + t as u64)).collect();
    let zipf: Vec<Vec<u64>> =
        (0..max_threads).map(|t| workload::zipf_stream(s.zipf_keys, stream_len, t as u64)).collect();
    let warm: Vec<u64> = zipf[0].iter().copied().take(2 * s.capacity as usize).collect();
    let mut all = vec![
        Workload {
            name: format!("read-only hits, {}k keys all resident", s.resident_keys / 1000),
            mix: Mix::ReadOnly,
            streams: resident,
            // Twice the keys, so that no cache's sharding leaves a key out.
            capacity: 2 * s.resident_keys,
            prefill: (0..s.resident_keys).map(workload::scramble).collect(),
            ceiling: true,
        },
        Workload {
            name: format!("read-only hits, keys uniform over {}k resident", s.resident_keys / 1000),
            mix: Mix::ReadOnly,
            streams: (0..max_threads)
                .map(|t| workload::uniform_stream(s.resident_keys, stream_len, 20 + t as u64))
                .collect(),
            capacity: 2 * s.resident_keys,
            prefill: (0..s.resident_keys).map(workload::scramble).collect(),
            ceiling: true,
        },
        Workload {
            name: format!("Zipf get, insert on miss ({}k keys, capacity {}k)", s.zipf_keys / 1000, s.capacity / 1000),
            mix: Mix::InsertOnMiss,
            streams: zipf.clone(),
            capacity: s.capacity,
            prefill: warm.clone(),
            ceiling: false,
        },
        Workload {
            name: "90% get / 10% insert".into(),
            mix: Mix::Reads(90),
            streams: zipf.clone(),
            capacity: s.capacity,
            prefill: warm.clone(),
            ceiling: false,
        },
        Workload {
            name: "50% get / 50% insert".into(),
            mix: Mix::Reads(50),
            streams: zipf,
            capacity: s.capacity,
            prefill: warm,
            ceiling: false,
        },
    ];
    if let Some(p3) = &s.p3 {
        let chunk = p3.keys.len().div_ceil(max_threads);
        all.push(Workload {
            name: "arc_P3 replay split across threads (capacity 10%)".into(),
            mix: Mix::InsertOnMiss,
            streams: p3.keys.chunks(chunk).map(<[u64]>::to_vec).collect(),
            capacity: Capacity::Percent(10.0).entries(p3.unique),
            prefill: Vec::new(),
            ceiling: false,
        });
    }
    all
}

/// Runs every workload at every thread count on every peer. `progress` hears each finished cell.
pub fn throughput(s: &Settings, progress: &dyn Fn(&str)) -> Vec<Row> {
    let values = workload::Values::new();
    let mut rows = Vec::new();
    for w in workloads(s) {
        for &threads in &s.threads {
            let streams: Vec<Vec<u64>> = (0..threads).map(|t| w.streams[t % w.streams.len()].clone()).collect();
            let mops = Peer::ALL
                .iter()
                .map(|&peer| {
                    if peer == Peer::DashMap && !w.ceiling {
                        return None;
                    }
                    let cache = peer.build(w.capacity);
                    for &k in &w.prefill {
                        cache.insert(k, values.for_key(k));
                    }
                    cache.settle();
                    let (ops, time) = workload::run(cache.as_ref(), &streams, w.mix, u64::MAX, s.cell_time);
                    progress(&format!("{} / {threads} threads / {}", w.name, peer.name()));
                    Some(ops as f64 / time.as_secs_f64() / 1e6)
                })
                .collect();
            rows.push(Row { workload: w.name.clone(), threads, mops });
        }
    }
    rows
}

/// The throughput table, with each peer's figure followed by cachefs's ratio to it.
pub fn throughput_table(rows: &[Row]) -> String {
    let mut out = String::from("| workload | threads |");
    for p in Peer::ALL {
        let _ = write!(out, " {} |", p.name());
    }
    out.push_str("\n|---|---:|");
    out.push_str(&"---:|".repeat(Peer::ALL.len()));
    out.push('\n');
    for r in rows {
        let ours = r.mops[0].unwrap_or(0.0);
        let _ = write!(out, "| {} | {} |", r.workload, r.threads);
        for (i, m) in r.mops.iter().enumerate() {
            match m {
                None => out.push_str(" — |"),
                Some(m) if i == 0 => {
                    let _ = write!(out, " **{m:.2}** |");
                }
                Some(m) => {
                    let _ = write!(out, " {m:.2} ({:.2}×) |", ours / m);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Memory per entry for every peer at `n` entries, and the peak while churning through `2n` new keys,
/// as a table (empty if not counting).
pub fn memory_table(n: u64) -> String {
    let mut out = format!(
        "| cache | heap bytes per entry beyond key and value, {n} entries | cachefs ÷ this | peak while \
         inserting {} new keys | cachefs ÷ this |\n|---|---:|---:|---:|---:|\n",
        2 * n
    );
    let figures: Vec<(Peer, Option<f64>, Option<f64>)> =
        Peer::ALL.iter().map(|&p| (p, memory::overhead_per_entry(p, n), memory::churn_peak_per_entry(p, n))).collect();
    let (ours, ours_peak) = (figures[0].1, figures[0].2);
    for (p, f, peak) in &figures {
        match (f, ours, peak, ours_peak) {
            (Some(f), Some(o), Some(peak), Some(op)) => {
                let _ = writeln!(out, "| {} | {f:.1} | {:.2}× | {peak:.1} | {:.2}× |", p.name(), o / f, op / peak);
            }
            _ => return String::new(),
        }
    }
    out
}

/// The two embedded traces.
pub fn embedded_traces() -> Result<Vec<Trace>, TraceError> {
    let load = |name: &str, bytes: &[u8]| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|source| TraceError::Io { path: name.into(), source })?;
        trace::parse_reader(text.as_bytes(), name)
    };
    Ok(vec![
        load("lirs_sprite", include_bytes!("../../traces/lirs_sprite.keys.gz"))?,
        load("cache2k_web07", include_bytes!("../../traces/cache2k_web07.keys.gz"))?,
    ])
}

/// Hit ratios on the embedded traces: cachefs's default policy, the peers and OPT.
pub fn hit_ratio_table(traces: &[Trace], threads: usize) -> String {
    let contenders = [
        Contender::Ours(cachefs::Policy::Hybrid),
        Contender::Moka,
        Contender::QuickCache,
        Contender::LruCrate,
        Contender::Opt,
    ];
    let results = replay::sweep(
        traces,
        &crate::capacity::default_sweep(),
        &contenders,
        None,
        replay::DEFAULT_SEED,
        threads,
        &|_| {},
    );
    crate::report::markdown(&results, None)
}

/// Loads arc_P3 from `dir` if it is there.
pub fn find_p3(dir: &Path) -> Option<Trace> {
    let path = dir.join("arc_P3.keys.gz");
    path.is_file().then(|| trace::load(&path).ok()).flatten()
}
