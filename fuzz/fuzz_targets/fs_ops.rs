//! CacheFs operation sequences over a `MemBackend` that fails on demand, in every write mode, against the
//! map model that `tests/fs_model.rs` also runs (`tests/common/fs_model.rs`): every read agrees with the
//! map, a failed operation changes nothing, and once the backend heals one flush makes it equal the map
//! (nothing acknowledged lost, nothing unwritten served).
#![no_main]

use arbitrary::Arbitrary;
use cachefs::fs::MemBackend;
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/faulty.rs"]
#[allow(dead_code)]
mod faulty;
#[path = "../../tests/common/fs_model.rs"]
mod model;

use faulty::Faulty;
use model::{MODES, Op, run_on};

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    ops: Vec<Op>,
}

/// Keeps the operations within the model's ranges: six paths, sizes around the large-file threshold.
fn bounded(op: &Op) -> Op {
    let p = |p: &u8| p % 6;
    match op {
        Op::Write(f, n, b) => Op::Write(p(f), n % 12_000, *b),
        Op::Stream(f, n, b) => Op::Stream(p(f), 8_000 + n % 22_000, *b),
        Op::Read(f) => Op::Read(p(f)),
        Op::ReadRange(f, o, n) => Op::ReadRange(p(f), *o, *n),
        Op::Stat(f) => Op::Stat(p(f)),
        Op::Remove(f) => Op::Remove(p(f)),
        Op::Rename(a, b) => Op::Rename(p(a), p(b)),
        Op::Invalidate(f) => Op::Invalidate(p(f)),
        Op::OpenRead(f) => Op::OpenRead(p(f)),
        Op::Warm(priority) => Op::Warm(priority % 3),
        Op::BatchFlush(a, b) => Op::BatchFlush(p(a), p(b)),
        Op::FailWrites(n, t) => Op::FailWrites(n % 4 + 1, t % 4 + 1),
        other => other.clone(),
    }
}

fuzz_target!(|input: Input| {
    let ops: Vec<Op> = input.ops.iter().take(60).map(bounded).collect();
    let mode = MODES[usize::from(input.mode) % MODES.len()];
    if let Err(e) = run_on(Faulty::new(MemBackend::new()), mode, &ops) {
        panic!("{mode:?}: {e}\n{ops:?}");
    }
});
