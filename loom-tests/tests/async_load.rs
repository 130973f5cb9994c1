//! Loom model of the async single flight's hand-off (model 9): which task loads after a cancel. A test
//! binary of its own, so that a deadlock (loom aborts the process) hides no other model.
#![cfg(loom)]

use std::future::Future;
use std::task::{Context, Waker};

use cachefs::{Cache, Policy};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = std::env::var("LOOM_MAX_BRANCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    builder.check(f);
}

/// Model 9: a task's load is cancelled (its future dropped while its loader is parked) while another
/// task misses the same key. Whichever led first, the second task ends with its own value: woken by the
/// cancel if it was waiting, then leading a load of its own; the cancelled load stored nothing.
#[test]
fn cancelled_async_leader_hands_the_load_to_a_waiter() {
    model(|| {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(4).shards(1).policy(Policy::Lru).build();
        let c = cache.clone();
        let cancelled = thread::spawn(move || {
            let mut load = Box::pin(c.get_with_async(5, std::future::pending::<u64>()));
            // One poll: it leads (its loader never finishes) or it waits on the other task's load.
            let polled = load.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            drop(load);
            polled.is_ready()
        });
        // block_on parks this loom thread until its waker is woken: a hand-off that forgot to wake it
        // is a deadlock loom reports.
        let v = loom::future::block_on(cache.get_with_async(5, async { 50 }));
        let first_done = cancelled.join().unwrap();
        assert_eq!(v, 50);
        // The cancelled task can only have finished by finding this task's value.
        assert_eq!(cache.get(&5), Some(50));
        let s = cache.stats();
        assert_eq!(s.loads_ok, 1, "one load stored: this task's");
        // The cancelled load counts as failed if it led; if it only waited, nothing failed.
        assert!(s.loads_failed <= 1 && !(first_done && s.loads_failed == 1), "{s:?}");
    });
}
