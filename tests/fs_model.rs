//! Model-based property test of `CacheFs`: random sequences of writes (small and streamed), reads, range
//! reads, stats, removes, renames, invalidations, clears and flushes, in each write mode, against a plain
//! map of what each file should hold. After every step every read agrees with the model; after the final
//! flush the backend holds exactly the model. The cache is small (8 KiB large-file threshold, 64 KiB
//! budget), so evictions, chunked reads and streamed writes all happen.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use cachefs::fs::{CacheFs, MemBackend, WarmOptions, WarmPriority, WriteMode};
use common::faulty::{EIO, Faulty, Op as Op_};

mod common;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
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

fn op() -> impl Strategy<Value = Op> {
    let p = 0u8..6;
    prop_oneof![
        4 => (p.clone(), 0u16..12_000, any::<u8>()).prop_map(|(p, n, b)| Op::Write(p, n, b)),
        1 => (p.clone(), 8_000u16..30_000, any::<u8>()).prop_map(|(p, n, b)| Op::Stream(p, n, b)),
        5 => p.clone().prop_map(Op::Read),
        2 => (p.clone(), any::<u16>(), any::<u16>()).prop_map(|(p, o, n)| Op::ReadRange(p, o, n)),
        2 => p.clone().prop_map(Op::Stat),
        1 => p.clone().prop_map(Op::Remove),
        1 => (p.clone(), p.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => p.prop_map(Op::Invalidate),
        1 => Just(Op::InvalidateDir),
        1 => Just(Op::Clear),
        1 => Just(Op::Flush),
        2 => (0u8..6).prop_map(Op::OpenRead),
        1 => Just(Op::RemoveAllEven),
        1 => (0u8..3).prop_map(Op::Warm),
        1 => (0u8..6, 0u8..6).prop_map(|(a, b)| Op::BatchFlush(a, b)),
    ]
}

fn faulty_op() -> impl Strategy<Value = Op> {
    prop_oneof![6 => op(), 1 => (1u8..4, 1u8..4).prop_map(|(n, t)| Op::FailWrites(n, t))]
}

/// Paths in two directories, so that directory invalidation has something to tell apart.
fn path(p: u8) -> String {
    format!("{}/f{p}", if p.is_multiple_of(2) { "even" } else { "odd" })
}

/// Content that differs by length and byte, so a stale or mixed version cannot pass.
fn content(n: u16, b: u8) -> Vec<u8> {
    (0..n).map(|i| b.wrapping_add((i % 251) as u8)).collect()
}

fn run(mode: WriteMode, ops: &[Op]) -> Result<(), TestCaseError> {
    run_on(Faulty::new(MemBackend::new()), mode, ops)
}

/// The same over a fresh directory (`OsBackend`: temp files, fsync, rename, real directories).
fn run_os(mode: WriteMode, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    run_on(Faulty::new(cachefs::fs::OsBackend::new(dir.path()).unwrap()), mode, ops)
}

fn run_on(store: Faulty, mode: WriteMode, ops: &[Op]) -> Result<(), TestCaseError> {
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
            Op::FailWrites(nth, times) => store.fail(Op_::Write, u64::from(nth), u64::from(times), EIO),
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

const MODES: [WriteMode; 4] = [
    WriteMode::WriteThrough,
    WriteMode::WriteAround,
    WriteMode::WriteBack { delay: Duration::from_millis(1), max_dirty_bytes: 32 << 10 },
    WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 },
];

proptest! {
    // 64 cases by default (about 9 s in a debug build); `PROPTEST_CASES=…` for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cachefs_matches_a_map_in_every_write_mode(ops in prop::collection::vec(op(), 1..120)) {
        for mode in MODES {
            run(mode, &ops)?;
        }
    }

    /// The same with backend writes failing now and then: a failed operation changes nothing, and after
    /// the backend heals one flush makes it equal the map (nothing acknowledged was lost).
    #[test]
    fn cachefs_matches_a_map_when_backend_writes_fail(ops in prop::collection::vec(faulty_op(), 1..120)) {
        for mode in MODES {
            run(mode, &ops)?;
        }
    }
}

proptest! {
    // Over real directories: fewer cases (each write costs two fsyncs), with injected failures.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn cachefs_over_a_directory_matches_a_map(ops in prop::collection::vec(faulty_op(), 1..80)) {
        for mode in MODES {
            run_os(mode, &ops)?;
        }
    }
}
