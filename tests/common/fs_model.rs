//! The map model of `CacheFs` that `tests/fs_model.rs` (proptest) and the `fs_ops` fuzz target
//! (`fuzz/`) both run: operations, and `run_on`, which applies them to a `CacheFs` over a fault-injecting
//! backend and checks every result against a plain map of what each file should hold; after the backend
//! heals, one flush must make the backend equal the map (nothing acknowledged lost, nothing unwritten
//! served).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use cachefs::fs::{CacheFs, WarmOptions, WarmPriority, WriteMode};
use proptest::prelude::*;

use super::faulty::{EIO, Faulty, Op as FaultOp};

/// One step.
#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    Write(u8, u16, u8),
    Stream(u8, u16, u8),
    Read(u8),
    ReadRange(u8, u16, u16),
    Stat(u8),
    Remove(u8),
    Rename(u8, u8),
    Invalidate(u8),
    InvalidateDir,
    Clear,
    Flush,
    OpenRead(u8),
    RemoveAllEven,
    Warm(u8),
    BatchFlush(u8, u8),
    /// Fail backend writes (and removes, renames) from the nth on, `times` of them (faulty runs only).
    FailWrites(u8, u8),
}

/// Paths in two directories, so that directory invalidation has something to tell apart.
pub fn path(p: u8) -> String {
    format!("{}/f{p}", if p.is_multiple_of(2) { "even" } else { "odd" })
}

/// Content that differs by length and byte, so a stale or mixed version cannot pass.
pub fn content(n: u16, b: u8) -> Vec<u8> {
    (0..n).map(|i| b.wrapping_add((i % 251) as u8)).collect()
}

/// Applies `ops` to a `CacheFs` in `mode` over `store`, checking each result against the map model.
pub fn run_on(store: Faulty, mode: WriteMode, ops: &[Op]) -> Result<(), TestCaseError> {
    let store = Arc::new(store);
    let fs = CacheFs::builder(Arc::clone(&store)).max_bytes(64 << 10).chunk_size(4096).write_mode(mode).build();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match *op {
            // A failed write changes nothing; only write-through and write-around writes reach the backend.
            Op::Write(p, n, b) => {
                if fs.write(path(p), content(n, b)).is_ok() {
                    model.insert(path(p), content(n, b));
                }
            }
            Op::Stream(p, n, b) => {
                let mut w = fs.create(path(p)).unwrap();
                for chunk in content(n, b).chunks(3_000) {
                    w.write_all(chunk).unwrap();
                }
                // `Error::Flush`: stored (dirty) but not yet on the backend; anything else: not stored.
                if matches!(w.close(), Ok(()) | Err(cachefs::fs::Error::Flush { .. })) {
                    model.insert(path(p), content(n, b));
                }
            }
            Op::Read(p) => match (fs.read(path(p)), model.get(&path(p))) {
                (Ok(got), Some(want)) => prop_assert_eq!(&got[..], &want[..], "{:?} read {}", mode, path(p)),
                (Err(e), None) => prop_assert!(e.is_not_found(), "{e}"),
                (got, want) => prop_assert!(
                    false,
                    "{:?} read {}: {:?} vs model {:?}",
                    mode,
                    path(p),
                    got.map(|b| b.len()),
                    want.map(Vec::len)
                ),
            },
            Op::ReadRange(p, o, n) => {
                if let Some(want) = model.get(&path(p)) {
                    let got = fs.read_range(path(p), u64::from(o), u64::from(n)).unwrap();
                    let start = usize::from(o).min(want.len());
                    let end = (start + usize::from(n)).min(want.len());
                    prop_assert_eq!(&got[..], &want[start..end]);
                }
            }
            Op::Stat(p) => match (fs.stat(path(p)), model.get(&path(p))) {
                (Ok(m), Some(want)) => prop_assert_eq!(m.len, want.len() as u64),
                (Err(e), None) => prop_assert!(e.is_not_found()),
                (got, want) => {
                    prop_assert!(false, "stat {}: {:?} vs {:?}", path(p), got.map(|m| m.len), want.map(Vec::len))
                }
            },
            Op::Remove(p) => match fs.remove(path(p)) {
                Ok(()) => prop_assert!(model.remove(&path(p)).is_some()),
                Err(e) if e.is_not_found() => prop_assert!(!model.contains_key(&path(p))),
                Err(_) => {} // an injected failure: nothing changed
            },
            Op::Rename(a, b) => match fs.rename(path(a), path(b)) {
                Ok(()) => {
                    let data = model.remove(&path(a));
                    prop_assert!(data.is_some() || a == b);
                    if let Some(data) = data {
                        model.insert(path(b), data);
                    }
                }
                Err(e) if e.is_not_found() => prop_assert!(!model.contains_key(&path(a))),
                Err(_) => {}
            },
            Op::Invalidate(p) => {
                fs.invalidate(path(p)).unwrap();
            }
            Op::InvalidateDir => {
                fs.invalidate_prefix("even").unwrap();
            }
            Op::Clear => fs.clear(),
            Op::Flush => {
                let _ = fs.flush(); // may fail under injected faults; the data stays dirty
            }
            Op::OpenRead(p) => match (fs.open(path(p)), model.get(&path(p))) {
                (Ok(mut r), Some(want)) => {
                    let mut got = Vec::new();
                    r.read_to_end(&mut got).unwrap();
                    prop_assert_eq!(&got, want, "{:?} open {}", mode, path(p));
                }
                (Err(e), None) => prop_assert!(e.is_not_found()),
                (got, want) => prop_assert!(false, "open {}: {:?} vs {:?}", path(p), got.is_ok(), want.map(Vec::len)),
            },
            Op::RemoveAllEven => {
                if let Ok(gone) = fs.remove_all("even") {
                    let before = model.len();
                    model.retain(|k, _| !k.starts_with("even/"));
                    prop_assert_eq!(gone, (before - model.len()) as u64);
                }
            }
            Op::Warm(priority) => {
                let priority = [WarmPriority::High, WarmPriority::Normal, WarmPriority::Low][usize::from(priority)];
                let all: Vec<String> = (0..6).map(path).collect();
                let report = fs.warm(&all, WarmOptions { workers: 2, priority, ..WarmOptions::default() }).unwrap();
                // Missing files are reported as errors, everything else is loaded or (low) skipped.
                prop_assert_eq!(report.files + report.skipped + report.errors.len() as u64, 6);
                prop_assert!(report.errors.iter().all(|(_, e)| e.is_not_found()));
            }
            Op::BatchFlush(a, b) => {
                let _ = fs.batch_flush([path(a), path(b)]);
            }
            Op::FailWrites(nth, times) => store.fail(FaultOp::Write, u64::from(nth), u64::from(times), EIO),
        }
    }
    store.heal();
    fs.flush().unwrap();
    prop_assert_eq!(fs.stats().dirty_entries, 0);
    let on_backend: BTreeMap<String, Vec<u8>> = store
        .inner()
        .list("")
        .unwrap()
        .into_iter()
        .map(|p| {
            let mut buf = Vec::new();
            store.inner().read(&p, &mut buf).unwrap();
            (p, buf)
        })
        .collect();
    // Compared by length and checksum, so a failure prints something readable.
    let digest = |m: &BTreeMap<String, Vec<u8>>| -> Vec<(String, usize, u64)> {
        m.iter()
            .map(|(k, v)| {
                (k.clone(), v.len(), v.iter().fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b))))
            })
            .collect()
    };
    prop_assert_eq!(digest(&on_backend), digest(&model), "{:?}", mode);
    Ok(())
}

/// The write modes every model runs in.
pub const MODES: [WriteMode; 4] = [
    WriteMode::WriteThrough,
    WriteMode::WriteAround,
    WriteMode::WriteBack { delay: Duration::from_millis(1), max_dirty_bytes: 32 << 10 },
    WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 },
];
