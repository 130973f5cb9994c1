//! Model-based property test of `CacheFs`: random sequences of writes (small and streamed), reads, range
//! reads, stats, removes, renames, invalidations, clears and flushes, in each write mode, against a plain
//! map of what each file should hold (`common/fs_model.rs`, shared with the `fs_ops` fuzz target). After
//! every step every read agrees with the model; after the final flush the backend holds exactly the model.
//! The cache is small (8 KiB large-file threshold, 64 KiB budget), so evictions, chunked reads and streamed
//! writes all happen.

use cachefs::fs::{MemBackend, WriteMode};
use common::faulty::{self, Faulty};

mod common;
#[path = "common/fs_model.rs"]
mod model;
use model::{MODES, Op, run_on};
use proptest::prelude::*;

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

fn run(mode: WriteMode, ops: &[Op]) -> Result<(), TestCaseError> {
    run_on(Faulty::new(MemBackend::new()), mode, ops)
}

/// The same over a fresh directory (`OsBackend`: temp files, fsync, rename, real directories).
fn run_os(mode: WriteMode, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    run_on(Faulty::new(cachefs::fs::OsBackend::new(dir.path()).unwrap()), mode, ops)
}

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
