//! `cachefs ring`: look inside a ring buffer's files (`inspect`) and measure the ring against raw file
//! I/O (`bench`).

pub mod bench;

use std::fmt::Write;
use std::path::Path;

use cachefs::ring::{Error, IoMode, ReadOptions, RingBuffer, VerifyReport};

/// What `inspect` found.
#[derive(Debug)]
pub struct Inspection {
    /// The human-readable report.
    pub text: String,
    /// Whether every slot checked out.
    pub clean: bool,
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.2} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Opens the ring at `path` read-only (nothing is changed, a writer may keep writing) and checks every
/// slot, calling `progress(done, total)` as it goes.
pub fn inspect(path: &Path, mode: IoMode, progress: impl FnMut(u64, u64)) -> Result<Inspection, Error> {
    let ring = RingBuffer::open_read_only(path, ReadOptions { mode, ..ReadOptions::default() })?;
    let g = ring.geometry();
    let stats = ring.stats();
    let mut t = String::new();
    let _ = writeln!(t, "ring {}", path.display());
    let _ =
        writeln!(t, "  format      version {}, {} shard file(s):", cachefs::ring::FORMAT_VERSION, ring.files().len());
    for f in ring.files() {
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(t, "                {} ({})", f.display(), bytes(len));
    }
    let _ = writeln!(
        t,
        "  geometry    {} records of {} bytes (payload up to {} bytes), shards of at most {}",
        g.records,
        g.record_size,
        ring.max_payload(),
        bytes(g.shard_bytes)
    );
    let id = |v: Option<u64>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
    let _ = writeln!(t, "  latest id   {} (flushed: {})", id(stats.latest_id), id(stats.flushed_id));
    if let Some(latest) = stats.latest_id {
        let _ = writeln!(t, "  window      ids {}..={latest}", (latest + 1).saturating_sub(g.records));
    }
    let r: VerifyReport = ring.verify(progress)?;
    let _ = writeln!(t, "  slots       {} checked", r.slots);
    let _ = writeln!(t, "  valid       {} records, {} stored", r.valid, bytes(r.stored_bytes));
    if let Some((lo, hi)) = r.ids {
        let _ = writeln!(t, "  ids         {lo}..={hi}");
    }
    let _ = writeln!(t, "  empty       {}", r.empty);
    if r.beyond_latest > 0 {
        let _ = writeln!(
            t,
            "  beyond      {} valid records past the latest id (left by a crash, not served)",
            r.beyond_latest
        );
    }
    if r.changing > 0 {
        let _ = writeln!(t, "  changing    {} slots were being overwritten while checked", r.changing);
    }
    let _ = writeln!(t, "  corrupt     {}", r.corrupt);
    if !r.corrupt_slots.is_empty() {
        let list: Vec<String> = r.corrupt_slots.iter().map(u64::to_string).collect();
        let more = if r.corrupt > r.corrupt_slots.len() as u64 { ", …" } else { "" };
        let _ = writeln!(t, "  corrupt slots {}{more}", list.join(", "));
    }
    let _ = writeln!(t, "{}", if r.is_clean() { "OK: every record checks" } else { "CORRUPT: damaged records found" });
    Ok(Inspection { text: t, clean: r.is_clean() })
}
