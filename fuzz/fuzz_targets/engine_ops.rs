//! Engine operation sequences on every policy against a reference model, with `validate()` (every
//! structural invariant of every shard) after each step.
//!
//! The model is a map of the value last stored under each key and its deadline. The cache may have
//! evicted any entry, so a miss is always allowed; what is never allowed: a value other than the last one
//! stored for its key, a value past its deadline, a removed key, more weight than the capacity, gauges
//! that disagree with the contents, or a snapshot round trip that brings back anything else.
#![no_main]

use std::collections::HashMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use cachefs::{Cache, ManualClock, Policy};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    capacity: u8,
    shards: u8,
    weighted: bool,
    idle: Option<u8>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(u8, u16),
    InsertWithTtl(u8, u16, u8),
    Get(u8),
    GetWith(u8, u16),
    Remove(u8),
    Invalidate(u8),
    InvalidateIf(u8),
    InsertMany(Vec<(u8, u16)>),
    Advance(u8),
    SetMaxCapacity(u8),
    RunPendingTasks,
    SnapshotRoundTrip,
}

/// Value and deadline (ms on the manual clock) last stored under a key.
type Model = HashMap<u8, (u16, Option<u64>)>;

fn weight(v: &u16) -> u32 {
    u32::from(*v % 5) + 1
}

fn build(input: &Input, capacity: u64, clock: &ManualClock) -> Cache<u8, u16> {
    let policy = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid][usize::from(input.policy % 4)];
    let mut b =
        Cache::builder().max_capacity(capacity).policy(policy).shards(1 << (input.shards % 3)).clock(clock.clone());
    if input.weighted {
        b = b.weigher(|_, v: &u16| weight(v));
    }
    if let Some(idle) = input.idle {
        b = b.time_to_idle(Duration::from_millis(u64::from(idle % 50) + 1));
    }
    b.build()
}

/// Whether the model says `key` may be served at `now` with value `got`.
fn allowed(model: &Model, key: u8, got: u16, now: u64) -> bool {
    model.get(&key).is_some_and(|&(v, deadline)| v == got && deadline.is_none_or(|d| now < d))
}

fuzz_target!(|input: Input| {
    let clock = ManualClock::new();
    let mut capacity = u64::from(input.capacity % 32) + 1;
    let cache = build(&input, capacity, &clock);
    let mut model: Model = HashMap::new();
    let now = |clock: &ManualClock| clock.elapsed().as_millis() as u64;
    for op in input.ops.iter().take(200) {
        match op {
            Op::Insert(k, v) => {
                cache.insert(*k, *v);
                model.insert(*k, (*v, None));
            }
            Op::InsertWithTtl(k, v, ttl) => {
                let ttl = u64::from(*ttl % 40) + 1;
                cache.insert_with_ttl(*k, *v, Duration::from_millis(ttl));
                model.insert(*k, (*v, Some(now(&clock) + ttl)));
            }
            Op::Get(k) => {
                if let Some(got) = cache.get(k) {
                    assert!(allowed(&model, *k, got, now(&clock)), "get {k} gave {got}; model {:?}", model.get(k));
                }
            }
            Op::GetWith(k, v) => {
                let got = cache.get_with(*k, || *v);
                if got == *v {
                    // Loaded (or a hit on the same value): held with no deadline, or not at all.
                    model.insert(*k, (got, None));
                } else {
                    assert!(allowed(&model, *k, got, now(&clock)), "get_with {k} gave {got}");
                }
            }
            Op::Remove(k) => {
                if let Some(got) = cache.remove(k) {
                    assert!(allowed(&model, *k, got, now(&clock)), "remove {k} gave {got}");
                }
                model.remove(k);
            }
            Op::Invalidate(k) => {
                cache.invalidate(k);
                model.remove(k);
            }
            Op::InvalidateIf(m) => {
                let m = m % 4 + 1;
                cache.invalidate_if(|k, _| k % m == 0);
                model.retain(|k, _| k % m != 0);
            }
            Op::InsertMany(pairs) => {
                let pairs: Vec<(u8, u16)> = pairs.iter().take(16).copied().collect();
                cache.insert_many(pairs.iter().copied());
                for (k, v) in pairs {
                    model.insert(k, (v, None));
                }
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(*ms % 30))),
            Op::SetMaxCapacity(c) => {
                capacity = u64::from(c % 32) + 1;
                cache.set_max_capacity(capacity);
            }
            Op::RunPendingTasks => cache.run_pending_tasks(),
            Op::SnapshotRoundTrip => {
                let mut bytes = Vec::new();
                cache.save_snapshot(&mut bytes).expect("a snapshot into memory");
                let copy = build(&input, capacity, &clock);
                copy.load_snapshot(bytes.as_slice()).expect("the snapshot just written loads");
                for (k, v) in copy.iter() {
                    assert!(allowed(&model, k, v, now(&clock)), "restored {k} = {v}; model {:?}", model.get(&k));
                }
                copy.validate();
            }
        }
        cache.validate();
        assert!(cache.weighted_size() <= capacity, "{} over {capacity}", cache.weighted_size());
        let t = now(&clock);
        for (k, v) in cache.iter() {
            assert!(allowed(&model, k, v, t), "iter gave {k} = {v}; model {:?}", model.get(&k));
        }
    }
});
