//! Hostile tests of `Cache::get_with_async` / `try_get_with_async`, written from the docs only.
//!
//! A manual poll harness (counting wakers, gated loaders) drives deterministic interleavings; a few
//! bounded multi-threaded stress tests mix tokio tasks with sync `get_with` threads.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use cachefs::{Cache, ManualClock};

// ---------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------

/// A waker that counts its wakes.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting() -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting::default());
    (c.clone(), Waker::from(c))
}

fn wakes(c: &Counting) -> usize {
    c.0.load(SeqCst)
}

fn poll<F: Future + ?Sized>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// Counts loaders running now, started, and the most ever running at once (per key).
#[derive(Default)]
struct Tracker {
    started: AtomicUsize,
    running: AtomicUsize,
    most: AtomicUsize,
    finished: AtomicUsize,
}

impl Tracker {
    fn enter(&self) {
        self.started.fetch_add(1, SeqCst);
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
    }
    fn exit(&self) {
        self.running.fetch_sub(1, SeqCst);
    }
    fn most(&self) -> usize {
        self.most.load(SeqCst)
    }
    fn started(&self) -> usize {
        self.started.load(SeqCst)
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    Value(u64),
    Err(String),
    Panic,
}

/// The control side of a gated loader: opened with an outcome, it wakes whoever polled it last.
#[derive(Default)]
struct Ctl {
    outcome: Mutex<Option<Outcome>>,
    waker: Mutex<Option<Waker>>,
    polls: AtomicUsize,
}

impl Ctl {
    fn open(&self, o: Outcome) {
        *self.outcome.lock().unwrap() = Some(o);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
    fn polled(&self) -> bool {
        self.polls.load(SeqCst) > 0
    }
}

/// A loader that stays pending until its `Ctl` is opened. Counts itself as running in `tracker` from its
/// first poll until it completes, panics or is dropped.
struct Gate {
    ctl: Arc<Ctl>,
    tracker: Arc<Tracker>,
    entered: bool,
    done: bool,
}

impl Gate {
    fn new(ctl: &Arc<Ctl>, tracker: &Arc<Tracker>) -> Self {
        Gate { ctl: ctl.clone(), tracker: tracker.clone(), entered: false, done: false }
    }
}

impl Future for Gate {
    type Output = Result<u64, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64, String>> {
        assert!(!self.done, "a loader was polled after it completed");
        self.ctl.polls.fetch_add(1, SeqCst);
        if !self.entered {
            self.entered = true;
            self.tracker.enter();
        }
        let o = self.ctl.outcome.lock().unwrap().clone();
        match o {
            None => {
                *self.ctl.waker.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(o) => {
                self.done = true;
                self.tracker.exit();
                self.tracker.finished.fetch_add(1, SeqCst);
                match o {
                    Outcome::Value(v) => Poll::Ready(Ok(v)),
                    Outcome::Err(e) => Poll::Ready(Err(e)),
                    Outcome::Panic => panic!("gate told to panic"),
                }
            }
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if self.entered && !self.done {
            self.tracker.exit();
        }
    }
}

async fn infallible(g: Gate) -> u64 {
    g.await.expect("infallible gate given an error")
}

/// Runs `f` on its own thread; fails (rather than hangs) if it takes longer than `secs`.
fn bounded<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("hang: did not finish within {secs} s"),
    }
}

/// Waits (bounded) until `cond` holds.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
/// A caller under test: its wake counter, its waker and its future (`None` once dropped or done).
type Slot<'a, T> = Option<(Arc<Counting>, Waker, BoxFut<'a, T>)>;

fn quiet_panics() {
    // Expected panics from gates would otherwise clutter the output.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if !msg.contains("gate told to panic") && !msg.contains("sync loader panics") {
                prev(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------------------
// Deterministic interleavings
// ---------------------------------------------------------------------------------------------------------

#[test]
fn waiters_init_is_never_polled_when_the_leader_succeeds() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let mut waiters = Vec::new();
    for _ in 0..8 {
        let c = Arc::new(Ctl::default());
        let (cnt, w) = counting();
        let mut f = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
        assert!(poll(f.as_mut(), &w).is_pending());
        waiters.push((c, cnt, w, f));
    }
    lead.open(Outcome::Value(11));
    assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(11));
    for (c, cnt, w, mut f) in waiters {
        assert!(wakes(&cnt) >= 1, "a waiter was not woken when the load finished");
        assert_eq!(poll(f.as_mut(), &w), Poll::Ready(11));
        assert!(!c.polled(), "a waiter's init was polled although it did not lead");
    }
    assert_eq!(t.started(), 1);
    assert_eq!(cache.get(&1), Some(11));
}

#[test]
fn waker_replaced_between_polls_the_new_one_is_woken() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());

    let c = Arc::new(Ctl::default());
    let mut waiter = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    let (a, wa) = counting();
    let (b, wb) = counting();
    assert!(poll(waiter.as_mut(), &wa).is_pending());
    assert!(poll(waiter.as_mut(), &wb).is_pending());
    lead.open(Outcome::Value(5));
    assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(5));
    assert!(wakes(&b) >= 1, "waker B (the latest) was not woken; A woken {} times", wakes(&a));
    assert_eq!(poll(waiter.as_mut(), &wb), Poll::Ready(5));
}

#[test]
fn waker_replaced_then_leader_cancelled_the_new_one_is_woken() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let c = Arc::new(Ctl::default());
    let mut waiter = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    let (_a, wa) = counting();
    let (b, wb) = counting();
    assert!(poll(waiter.as_mut(), &wa).is_pending());
    assert!(poll(waiter.as_mut(), &wb).is_pending());
    drop(leader);
    assert!(wakes(&b) >= 1, "waker B not woken after the leader was dropped");
    assert!(poll(waiter.as_mut(), &wb).is_pending()); // it now leads, its gate is closed
    assert!(c.polled());
    assert_eq!(t.running.load(SeqCst), 1);
    c.open(Outcome::Value(9));
    assert!(poll(waiter.as_mut(), &wb) == Poll::Ready(9));
    assert_eq!(cache.get(&1), Some(9));
}

#[test]
fn leader_cancelled_in_a_chain_each_new_leader_also_cancelled() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    struct W<'a> {
        ctl: Arc<Ctl>,
        cnt: Arc<Counting>,
        waker: Waker,
        fut: Option<BoxFut<'a, u64>>,
    }
    let mut ws: Vec<W> = (0..10)
        .map(|_| {
            let ctl = Arc::new(Ctl::default());
            let (cnt, waker) = counting();
            let fut: BoxFut<u64> = Box::pin(cache.get_with_async(7, infallible(Gate::new(&ctl, &t))));
            W { ctl, cnt, waker, fut: Some(fut) }
        })
        .collect();
    for w in ws.iter_mut() {
        assert!(poll(w.fut.as_mut().unwrap().as_mut(), &w.waker).is_pending());
    }
    // Cancel whoever leads, nine times; after each, poll the woken ones, exactly one must lead.
    for round in 0..9 {
        let leaders: Vec<usize> = (0..ws.len()).filter(|&i| ws[i].fut.is_some() && ws[i].ctl.polled()).collect();
        assert_eq!(leaders.len(), 1, "round {round}: leaders {leaders:?}");
        let l = leaders[0];
        let before: Vec<usize> = ws.iter().map(|w| wakes(&w.cnt)).collect();
        ws[l].fut = None;
        ws[l].ctl = Arc::new(Ctl::default()); // not polled any more
        assert_eq!(t.running.load(SeqCst), 0, "a dropped leader's loader still counted as running");
        let woken: Vec<usize> =
            (0..ws.len()).filter(|&i| ws[i].fut.is_some() && wakes(&ws[i].cnt) > before[i]).collect();
        assert!(!woken.is_empty(), "round {round}: no waiter woken after the leader was dropped");
        for i in woken {
            let w = &mut ws[i];
            assert!(poll(w.fut.as_mut().unwrap().as_mut(), &w.waker).is_pending());
        }
        assert!(t.most() <= 1, "two loaders ran at once");
    }
    let last: Vec<usize> = (0..ws.len()).filter(|&i| ws[i].fut.is_some()).collect();
    assert_eq!(last.len(), 1);
    let w = &mut ws[last[0]];
    assert!(w.ctl.polled(), "the last caller does not lead");
    w.ctl.open(Outcome::Value(77));
    assert_eq!(poll(w.fut.as_mut().unwrap().as_mut(), &w.waker), Poll::Ready(77));
    assert_eq!(cache.get(&7), Some(77));
    assert_eq!(t.started(), 10);
}

#[test]
fn woken_successor_dropped_before_it_polls_another_waiter_still_takes_over() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let mk = |c: &Arc<Ctl>| Box::pin(cache.get_with_async(3, infallible(Gate::new(c, &t))));
    let (l, w1c, w2c) = (Arc::new(Ctl::default()), Arc::new(Ctl::default()), Arc::new(Ctl::default()));
    let mut leader = mk(&l);
    let mut w1 = mk(&w1c);
    let mut w2 = mk(&w2c);
    let (_c0, k0) = counting();
    let (c1, k1) = counting();
    let (c2, k2) = counting();
    assert!(poll(leader.as_mut(), &k0).is_pending());
    assert!(poll(w1.as_mut(), &k1).is_pending());
    assert!(poll(w2.as_mut(), &k2).is_pending());
    drop(leader);
    // Whichever waiter was woken to take over is dropped before polling; the other must not be stranded.
    let (gone, mut stay, stay_k, stay_c, stay_cnt) =
        if wakes(&c1) > 0 { (w1, w2, k2, w2c, c2) } else { (w2, w1, k1, w1c, c1) };
    drop(gone);
    assert!(
        wakes(&stay_cnt) > 0,
        "the remaining waiter was never woken after the leader and the woken successor were dropped"
    );
    assert!(poll(stay.as_mut(), &stay_k).is_pending());
    assert!(stay_c.polled(), "the remaining waiter did not take the load over");
    stay_c.open(Outcome::Value(4));
    assert_eq!(poll(stay.as_mut(), &stay_k), Poll::Ready(4));
}

#[test]
fn dropping_waiters_while_the_leader_settles_leaves_the_rest_served() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let mut ws: Vec<Slot<u64>> = (0..20)
        .map(|_| {
            let (c, w) = counting();
            let mut f: BoxFut<u64> =
                Box::pin(cache.get_with_async(1, infallible(Gate::new(&Arc::new(Ctl::default()), &t))));
            assert!(poll(f.as_mut(), &w).is_pending());
            Some((c, w, f))
        })
        .collect();
    // Drop every other waiter, then open the gate (the leader's value is ready), drop more, then settle.
    for i in (0..20).step_by(2) {
        ws[i] = None;
    }
    lead.open(Outcome::Value(31));
    for i in (1..20).step_by(4) {
        ws[i] = None;
    }
    assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(31));
    drop(leader);
    for (c, w, mut f) in ws.into_iter().flatten() {
        assert!(wakes(&c) >= 1);
        assert_eq!(poll(f.as_mut(), &w), Poll::Ready(31));
    }
    assert_eq!(t.started(), 1);
}

#[test]
fn leader_dropped_after_its_gate_opened_but_before_repoll_stores_nothing_and_hands_over() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let c = Arc::new(Ctl::default());
    let (wc, wk) = counting();
    let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    assert!(poll(w.as_mut(), &wk).is_pending());
    lead.open(Outcome::Value(1)); // ready, but the leader is never polled again
    drop(leader);
    assert_eq!(cache.get(&1), None, "a cancelled load stored its value");
    assert!(wakes(&wc) >= 1);
    assert!(poll(w.as_mut(), &wk).is_pending());
    c.open(Outcome::Value(2));
    assert_eq!(poll(w.as_mut(), &wk), Poll::Ready(2));
    assert_eq!(cache.get(&1), Some(2));
}

#[test]
fn sync_thread_waiter_takes_over_when_the_async_leader_is_dropped() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let sync_ran = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let (c2, r2, s2, t2) = (cache.clone(), sync_ran.clone(), started.clone(), t.clone());
    let h = std::thread::spawn(move || {
        s2.store(true, SeqCst);
        c2.get_with(1, || {
            assert_eq!(t2.running.load(SeqCst), 0, "sync loader ran while the async one still ran");
            r2.store(true, SeqCst);
            55
        })
    });
    wait_until("sync thread started", || started.load(SeqCst));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!sync_ran.load(SeqCst), "sync waiter loaded while the async leader still ran");
    drop(leader);
    let v = bounded(10, move || h.join().unwrap());
    assert_eq!(v, 55);
    assert_eq!(cache.get(&1), Some(55));
}

#[test]
fn async_waiter_takes_over_when_a_sync_leader_panics() {
    quiet_panics();
    let cache: Cache<u64, u64> = Cache::new(100);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let in_init = Arc::new(AtomicBool::new(false));
    let (c2, i2) = (cache.clone(), in_init.clone());
    let h = std::thread::spawn(move || {
        catch_unwind(AssertUnwindSafe(|| {
            c2.get_with(1, || {
                i2.store(true, SeqCst);
                go_rx.recv_timeout(Duration::from_secs(10)).unwrap();
                panic!("sync loader panics")
            })
        }))
        .is_err()
    });
    wait_until("sync loader running", || in_init.load(SeqCst));
    let t = Arc::new(Tracker::default());
    let c = Arc::new(Ctl::default());
    let (wc, wk) = counting();
    let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    assert!(poll(w.as_mut(), &wk).is_pending());
    assert!(!c.polled(), "async waiter loaded while the sync leader ran");
    go_tx.send(()).unwrap();
    assert!(bounded(10, move || h.join().unwrap()), "sync caller did not see its loader's panic");
    wait_until("async waiter woken after the sync leader panicked", || wakes(&wc) >= 1);
    assert!(poll(w.as_mut(), &wk).is_pending());
    assert!(c.polled());
    c.open(Outcome::Value(8));
    assert_eq!(poll(w.as_mut(), &wk), Poll::Ready(8));
}

#[test]
fn async_leader_panic_reaches_it_and_sync_and_async_waiters_take_over() {
    quiet_panics();
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    // An async waiter and three sync threads.
    let c = Arc::new(Ctl::default());
    let (wc, wk) = counting();
    let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    assert!(poll(w.as_mut(), &wk).is_pending());
    let sync_loads = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    let ready = Arc::new(AtomicUsize::new(0));
    for i in 0..3u64 {
        let (c2, s2, t2, r2) = (cache.clone(), sync_loads.clone(), t.clone(), ready.clone());
        hs.push(std::thread::spawn(move || {
            r2.fetch_add(1, SeqCst);
            c2.get_with(1, || {
                t2.enter();
                s2.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                t2.exit();
                100 + i
            })
        }));
    }
    wait_until("sync threads started", || ready.load(SeqCst) == 3);
    std::thread::sleep(Duration::from_millis(50));
    lead.open(Outcome::Panic);
    let r = catch_unwind(AssertUnwindSafe(|| poll(leader.as_mut(), &lwk)));
    assert!(r.is_err(), "the leader's caller did not get the panic");
    drop(leader);
    let vals: Vec<u64> = bounded(15, move || hs.into_iter().map(|h| h.join().unwrap()).collect());
    // If the async waiter was chosen it needs a poll; drive it.
    let start = Instant::now();
    let got = loop {
        if wakes(&wc) > 0 || c.polled() {
            match poll(w.as_mut(), &wk) {
                Poll::Ready(v) => break v,
                Poll::Pending => {
                    if c.polled() {
                        c.open(Outcome::Value(200));
                    }
                }
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10), "async waiter never settled");
        std::thread::sleep(Duration::from_millis(1));
    };
    let all: HashSet<u64> = vals.iter().copied().chain([got]).collect();
    assert_eq!(all.len(), 1, "callers got different values after takeover: {vals:?} / {got}");
    assert!(t.most() <= 1, "two loaders ran at once");
    assert_eq!(sync_loads.load(SeqCst) + c.polled() as usize, 1, "more than one takeover load");
}

#[test]
fn try_errors_go_to_their_caller_and_each_waiter_runs_its_own_loader_one_at_a_time() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let n = 12;
    let ctls: Vec<Arc<Ctl>> = (0..n).map(|_| Arc::new(Ctl::default())).collect();
    let mut fs: Vec<Slot<Result<u64, String>>> = ctls
        .iter()
        .map(|c| {
            let (cnt, w) = counting();
            let f: BoxFut<Result<u64, String>> = Box::pin(cache.try_get_with_async(2, Gate::new(c, &t)));
            Some((cnt, w, f))
        })
        .collect();
    for (_, w, f) in fs.iter_mut().flatten() {
        assert!(poll(f.as_mut(), w).is_pending());
    }
    let mut results: HashMap<usize, Result<u64, String>> = HashMap::new();
    // Each load fails with the leader's own error, until all have run.
    for round in 0..n {
        let leaders: Vec<usize> = (0..n).filter(|&i| fs[i].is_some() && ctls[i].polled()).collect();
        assert_eq!(leaders.len(), 1, "round {round}: leaders {leaders:?}");
        let l = leaders[0];
        ctls[l].open(Outcome::Err(format!("err{l}")));
        let (_, w, mut f) = fs[l].take().unwrap();
        match poll(f.as_mut(), &w) {
            Poll::Ready(r) => {
                results.insert(l, r);
            }
            Poll::Pending => panic!("leader pending after its loader failed"),
        }
        drop(f);
        // Poll the woken ones (each must stay pending: its loader is gated, or it waits).
        for (i, slot) in fs.iter_mut().enumerate() {
            if let Some((c, w, f)) = slot.as_mut()
                && wakes(c) > 0
            {
                match poll(f.as_mut(), w) {
                    Poll::Pending => {}
                    Poll::Ready(r) => panic!("waiter {i} got {r:?} from someone else's load"),
                }
            }
        }
        assert!(t.most() <= 1, "two loaders ran at once");
        if round + 1 < n {
            let still: usize = fs.iter().flatten().count();
            assert_eq!(still, n - round - 1);
        }
    }
    for (i, r) in &results {
        assert_eq!(r, &Err(format!("err{i}")), "caller {i} got a foreign result");
    }
    assert_eq!(results.len(), n);
    assert_eq!(t.started(), n);
    assert_eq!(cache.get(&2), None);
}

#[test]
fn key_inserted_during_sync_load_wins() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c2 = cache.clone();
    let v = cache.get_with(1, || {
        c2.insert(1, 99);
        7
    });
    assert_eq!(v, 99, "sync get_with: the inserted value must win");
    assert_eq!(cache.get(&1), Some(99));
}

#[test]
fn key_inserted_by_someone_else_during_async_load_wins() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let c = Arc::new(Ctl::default());
    let (_wc, wk) = counting();
    let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    assert!(poll(w.as_mut(), &wk).is_pending());
    cache.insert(1, 99);
    lead.open(Outcome::Value(7));
    let got = poll(leader.as_mut(), &lwk);
    let stored = cache.get(&1);
    let wgot = poll(w.as_mut(), &wk);
    assert_eq!(
        (got, stored, wgot),
        (Poll::Ready(99), Some(99), Poll::Ready(99)),
        "async load overwrote / ignored a value inserted while it ran"
    );
}

#[test]
fn loader_that_inserts_the_same_key_keeps_the_inserted_value() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let c2 = cache.clone();
    let v = futures::executor::block_on(cache.get_with_async(1, async move {
        c2.insert(1, 99);
        7
    }));
    assert_eq!((v, cache.get(&1)), (99, Some(99)));
}

#[test]
fn loader_that_invalidates_the_same_key_completes_and_stores() {
    let cache: Cache<u64, u64> = Cache::new(100);
    cache.insert(2, 2);
    let c2 = cache.clone();
    let v = bounded(10, move || {
        futures::executor::block_on(async {
            let c3 = c2.clone();
            let v = c2
                .get_with_async(1, async move {
                    c3.invalidate(&1);
                    c3.remove(&1);
                    7
                })
                .await;
            (v, c2.get(&1))
        })
    });
    assert_eq!(v, (7, Some(7)));
}

#[test]
fn loader_awaiting_get_with_async_on_another_key_with_waiters_on_both() {
    let v = bounded(20, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(100));
            let loads = Arc::new(AtomicUsize::new(0));
            let mut hs = Vec::new();
            for i in 0..40u64 {
                let (c, l) = (cache.clone(), loads.clone());
                hs.push(tokio::spawn(async move {
                    let key = i % 2; // key 0's loader needs key 1
                    let c2 = c.clone();
                    let l2 = l.clone();
                    c.get_with_async(key, async move {
                        l2.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if key == 0 {
                            let l3 = l2.clone();
                            c2.get_with_async(1, async move {
                                l3.fetch_add(1, SeqCst);
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                10
                            })
                            .await
                                + 1
                        } else {
                            10
                        }
                    })
                    .await
                }));
            }
            let mut out = Vec::new();
            for h in hs {
                out.push(h.await.unwrap());
            }
            (out, loads.load(SeqCst))
        })
    });
    let (out, loads) = v;
    for (i, x) in out.iter().enumerate() {
        assert_eq!(*x, if i % 2 == 0 { 11 } else { 10 });
    }
    assert_eq!(loads, 2, "one load per key");
}

#[test]
fn current_thread_runtime_waiters_do_not_block_the_thread() {
    let (loads, results) = bounded(20, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(100));
            let loads = Arc::new(AtomicUsize::new(0));
            let mut hs = Vec::new();
            for i in 0..200u64 {
                let (c, l) = (cache.clone(), loads.clone());
                hs.push(tokio::spawn(async move {
                    c.get_with_async(5, async move {
                        l.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        i
                    })
                    .await
                }));
            }
            let mut r = Vec::new();
            for h in hs {
                r.push(tokio::time::timeout(Duration::from_secs(10), h).await.expect("task hung").unwrap());
            }
            (loads.load(SeqCst), r)
        })
    });
    assert_eq!(loads, 1);
    assert!(results.iter().all(|&x| x == results[0]));
}

#[test]
fn current_thread_leader_cancelled_by_timeout_chain_hands_over() {
    let (max_running, results, started) = bounded(20, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(100));
            let t = Arc::new(Tracker::default());
            let mut hs = Vec::new();
            // Tasks 0..10 time out at 10 ms * (i+1) with loaders of 1 s; the rest wait without timeout
            // and load quickly.
            for i in 0..30u64 {
                let (c, t) = (cache.clone(), t.clone());
                hs.push(tokio::spawn(async move {
                    let slow = i < 10;
                    let init = async move {
                        t.enter();
                        struct Exit(Arc<Tracker>);
                        impl Drop for Exit {
                            fn drop(&mut self) {
                                self.0.exit();
                            }
                        }
                        let _e = Exit(t.clone());
                        tokio::time::sleep(Duration::from_millis(if slow { 1000 } else { 5 })).await;
                        t.finished.fetch_add(1, SeqCst);
                        i
                    };
                    if slow {
                        tokio::time::timeout(Duration::from_millis(10 * (i + 1)), c.get_with_async(9, init)).await.ok()
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Some(c.get_with_async(9, init).await)
                    }
                }));
            }
            let mut r = Vec::new();
            for h in hs {
                r.push(h.await.unwrap());
            }
            (t.most(), r, t.started())
        })
    });
    assert_eq!(max_running, 1, "two loaders ran at once");
    let vals: HashSet<u64> = results.iter().flatten().copied().collect();
    assert_eq!(vals.len(), 1, "different values: {results:?}");
    assert!(started >= 2);
}

#[test]
fn zero_capacity_cache_waiters_share_the_value_and_nothing_is_stored() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(0).build();
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let (_lw, lwk) = counting();
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let mut ws: Vec<_> = (0..5)
        .map(|_| {
            let c = Arc::new(Ctl::default());
            let (cnt, w) = counting();
            let mut f = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
            assert!(poll(f.as_mut(), &w).is_pending());
            (c, cnt, w, f)
        })
        .collect();
    lead.open(Outcome::Value(3));
    assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(3));
    for (c, cnt, w, f) in ws.iter_mut() {
        assert!(wakes(cnt) >= 1, "waiter not woken when the load was refused by a zero capacity");
        match poll(f.as_mut(), w) {
            Poll::Ready(v) => assert_eq!(v, 3),
            Poll::Pending => {
                // It re-loads for itself: allowed only if the promise is read loosely; record it.
                assert!(c.polled(), "waiter neither served nor loading");
                panic!("waiter re-loaded instead of sharing the leader's value (one load per key)");
            }
        }
    }
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.len(), 0);
    // Sequential calls load again (nothing stored).
    let v = futures::executor::block_on(cache.get_with_async(1, async { 4 }));
    assert_eq!(v, 4);
}

#[test]
fn rejected_by_weigher_waiters_share_the_value_and_rejection_is_counted() {
    let cache: Cache<u64, u64> =
        Cache::builder().max_capacity(10).shards(1).weigher(|_k, v: &u64| if *v >= 1000 { 1000 } else { 1 }).build();
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let (_lw, lwk) = counting();
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let c = Arc::new(Ctl::default());
    let (cnt, wk) = counting();
    let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
    assert!(poll(w.as_mut(), &wk).is_pending());
    let rej = cache.stats().rejections;
    lead.open(Outcome::Value(5000));
    assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(5000));
    assert!(wakes(&cnt) >= 1);
    assert_eq!(poll(w.as_mut(), &wk), Poll::Ready(5000));
    assert!(!c.polled());
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.stats().rejections, rej + 1);
    assert!(cache.weighted_size() <= 10);
}

#[test]
fn tiny_capacity_loaded_value_evicted_immediately_still_returned() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(1).shards(1).build();
    futures::executor::block_on(async {
        for k in 0..50u64 {
            let v = cache.get_with_async(k, async move { k * 3 }).await;
            assert_eq!(v, k * 3);
            assert!(cache.weighted_size() <= 1);
        }
    });
}

#[test]
fn ttl_expired_value_is_reloaded_by_async_caller() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> =
        Cache::builder().max_capacity(100).time_to_live(Duration::from_secs(10)).clock(clock.clone()).build();
    let n = AtomicUsize::new(0);
    futures::executor::block_on(async {
        let v = cache.get_with_async(1, async { n.fetch_add(1, SeqCst) as u64 + 100 }).await;
        assert_eq!(v, 100);
        clock.advance(Duration::from_secs(11));
        let v = cache.get_with_async(1, async { n.fetch_add(1, SeqCst) as u64 + 100 }).await;
        assert_eq!(v, 101, "expired value returned by get_with_async");
    });
}

#[test]
fn value_inserted_during_load_that_expires_before_the_load_ends_does_not_win() {
    let clock = ManualClock::new();
    let cache: Cache<u64, u64> =
        Cache::builder().max_capacity(100).time_to_live(Duration::from_secs(60)).clock(clock.clone()).build();
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let (_lw, lwk) = counting();
    let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    cache.insert_with_ttl(1, 99, Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    lead.open(Outcome::Value(7));
    let got = poll(leader.as_mut(), &lwk);
    assert_eq!(got, Poll::Ready(7), "an expired value was returned");
    assert_eq!(cache.get(&1), Some(7));
}

#[test]
fn futures_are_send_across_tokio_spawn_and_hits_need_no_executor() {
    fn send<T: Send>(t: T) -> T {
        t
    }
    let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(100));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let c = cache.clone();
    let v = rt.block_on(async move {
        let c2 = c.clone();
        tokio::spawn(async move {
            let a = send(c2.get_with_async(1, async { 1 })).await;
            let b = send(c2.try_get_with_async(2, async { Ok::<_, String>(2) })).await.unwrap();
            a + b
        })
        .await
        .unwrap()
    });
    assert_eq!(v, 3);
    let mut f = Box::pin(cache.get_with_async(1, async { unreachable!() }));
    assert_eq!(poll(f.as_mut(), Waker::noop()), Poll::Ready(1));
}

// The hit path's cost is measured by `cargo bench --bench engine -- loading_hit` (docs/benchmarks.md),
// not by a timed test.

// ---------------------------------------------------------------------------------------------------------
// Randomized deterministic model: many callers, random polls, drops, gate outcomes, inserts
// ---------------------------------------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Caller<'a> {
    id: usize,
    key: u64,
    ctl: Arc<Ctl>,
    cnt: Arc<Counting>,
    waker: Waker,
    seen: usize,
    polled: bool,
    fut: BoxFut<'a, Result<u64, String>>,
}

fn run_model(seed: u64, steps: usize) {
    quiet_panics();
    let cache: Cache<u64, u64> = Cache::new(1000);
    let trackers: Vec<Arc<Tracker>> = (0..3).map(|_| Arc::new(Tracker::default())).collect();
    let mut rng = Rng(seed | 1);
    let mut callers: Vec<Caller> = Vec::new();
    let mut next_id = 0usize;
    let mut produced: HashMap<u64, HashSet<u64>> = HashMap::new(); // values a caller may see per key
    let mut opened: HashMap<usize, Outcome> = HashMap::new();
    let mut log: Vec<String> = Vec::new();

    let check = |trackers: &Vec<Arc<Tracker>>, log: &Vec<String>| {
        for (k, t) in trackers.iter().enumerate() {
            assert!(
                t.running.load(SeqCst) <= 1 && t.most() <= 1,
                "seed {seed}: two loaders of key {k} at once; log tail {:?}",
                &log[log.len().saturating_sub(15)..]
            );
        }
    };

    // Returns whether the caller finished (and must be removed).
    let poll_one = |c: &mut Caller,
                    produced: &mut HashMap<u64, HashSet<u64>>,
                    opened: &HashMap<usize, Outcome>,
                    log: &mut Vec<String>|
     -> bool {
        c.seen = wakes(&c.cnt);
        c.polled = true;
        let r = catch_unwind(AssertUnwindSafe(|| poll(c.fut.as_mut(), &c.waker)));
        match r {
            Err(_) => {
                log.push(format!("{} panicked", c.id));
                assert!(
                    matches!(opened.get(&c.id), Some(Outcome::Panic)),
                    "seed {seed}: caller {} panicked but its own loader was not told to",
                    c.id
                );
                true
            }
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(Ok(v))) => {
                log.push(format!("{} ready {v}", c.id));
                let ok = produced.get(&c.key).is_some_and(|s| s.contains(&v));
                assert!(ok, "seed {seed}: caller {} got {v} that no load or insert produced", c.id);
                true
            }
            Ok(Poll::Ready(Err(e))) => {
                log.push(format!("{} err {e}", c.id));
                assert_eq!(e, format!("e{}", c.id), "seed {seed}: caller {} got a foreign error", c.id);
                true
            }
        }
    };

    for _ in 0..steps {
        match rng.below(100) {
            0..=19 if callers.len() < 12 => {
                let key = rng.below(3);
                let ctl = Arc::new(Ctl::default());
                let (cnt, waker) = counting();
                let g = Gate::new(&ctl, &trackers[key as usize]);
                let fut: BoxFut<Result<u64, String>> = if rng.below(2) == 0 {
                    Box::pin(cache.try_get_with_async(key, g))
                } else {
                    {
                        let cache = &cache;
                        Box::pin(
                            async move { Ok(cache.get_with_async(key, async move { g.await.unwrap_or(0) }).await) },
                        )
                    }
                };
                log.push(format!("new {next_id} key {key}"));
                callers.push(Caller { id: next_id, key, ctl, cnt, waker, seen: 0, polled: false, fut });
                next_id += 1;
            }
            0..=54 if !callers.is_empty() => {
                // Poll a woken or never-polled caller mostly; sometimes a spurious poll.
                let i = rng.below(callers.len() as u64) as usize;
                let c = &mut callers[i];
                if !c.polled || wakes(&c.cnt) > c.seen || rng.below(4) == 0 {
                    log.push(format!("poll {}", c.id));
                    if poll_one(c, &mut produced, &opened, &mut log) {
                        callers.swap_remove(i);
                    }
                }
            }
            55..=69 if !callers.is_empty() => {
                let i = rng.below(callers.len() as u64) as usize;
                log.push(format!("drop {}", callers[i].id));
                callers.swap_remove(i);
            }
            70..=89 if !callers.is_empty() => {
                let i = rng.below(callers.len() as u64) as usize;
                let c = &callers[i];
                if c.ctl.polled() && !opened.contains_key(&c.id) {
                    let o = match rng.below(10) {
                        0..=5 => {
                            let v = 1_000_000 + c.id as u64;
                            produced.entry(c.key).or_default().insert(v);
                            Outcome::Value(v)
                        }
                        6..=7 => Outcome::Err(format!("e{}", c.id)),
                        _ => Outcome::Panic,
                    };
                    // get_with_async callers map an error to 0.
                    if matches!(o, Outcome::Err(_)) {
                        produced.entry(c.key).or_default().insert(0);
                    }
                    log.push(format!("open {} {:?}", c.id, o));
                    opened.insert(c.id, o.clone());
                    c.ctl.open(o);
                }
            }
            90..=94 => {
                let key = rng.below(3);
                let v = 2_000_000 + rng.below(1000);
                produced.entry(key).or_default().insert(v);
                log.push(format!("insert {key} {v}"));
                cache.insert(key, v);
            }
            95..=99 => {
                let key = rng.below(3);
                log.push(format!("invalidate {key}"));
                cache.invalidate(&key);
            }
            _ => {}
        }
        check(&trackers, &log);
    }

    // Liveness: open every gate with a value, then poll only woken callers until none is left.
    let mut rounds = 0;
    while !callers.is_empty() {
        rounds += 1;
        assert!(rounds < 10_000, "seed {seed}: no progress");
        for c in callers.iter() {
            if c.ctl.polled() && !opened.contains_key(&c.id) {
                let v = 1_000_000 + c.id as u64;
                produced.entry(c.key).or_default().insert(v);
                opened.insert(c.id, Outcome::Value(v));
                c.ctl.open(Outcome::Value(v));
            }
        }
        let mut progressed = false;
        let mut i = 0;
        while i < callers.len() {
            let c = &mut callers[i];
            if !c.polled || wakes(&c.cnt) > c.seen {
                progressed = true;
                log.push(format!("final poll {}", c.id));
                if poll_one(c, &mut produced, &opened, &mut log) {
                    callers.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        check(&trackers, &log);
        if !progressed && !callers.is_empty() {
            let stuck: Vec<(usize, u64, bool)> = callers.iter().map(|c| (c.id, c.key, c.ctl.polled())).collect();
            panic!(
                "seed {seed}: lost wakeup: callers {stuck:?} (id, key, leads) pending and never woken; log tail {:?}",
                &log[log.len().saturating_sub(25)..]
            );
        }
    }
}

#[test]
fn randomized_model_of_polls_drops_outcomes_and_inserts() {
    let start = Instant::now();
    for seed in 1..=300u64 {
        run_model(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 400);
        if start.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Multi-threaded stress: tasks with random cancellation and sync threads on a few keys
// ---------------------------------------------------------------------------------------------------------

#[test]
fn stress_random_cancellation_mixed_sync_threads_and_tasks() {
    const KEYS: u64 = 64;
    let (most, res) = bounded(28, || {
        let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(1000));
        let trackers: Arc<Vec<Tracker>> = Arc::new((0..KEYS).map(|_| Tracker::default()).collect());
        let results: Arc<Mutex<HashMap<u64, HashSet<u64>>>> = Arc::default();
        let seq = Arc::new(AtomicU64::new(1));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut threads = Vec::new();
        for th in 0..2u64 {
            let (c, t, res, seq) = (cache.clone(), trackers.clone(), results.clone(), seq.clone());
            threads.push(std::thread::spawn(move || {
                let mut r = Rng(th + 77);
                for _ in 0..400 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let key = r.below(KEYS);
                    let pause = r.below(300);
                    let v = c.get_with(key, || {
                        t[key as usize].enter();
                        std::thread::sleep(Duration::from_micros(pause));
                        t[key as usize].exit();
                        seq.fetch_add(1, SeqCst)
                    });
                    res.lock().unwrap().entry(key).or_default().insert(v);
                }
            }));
        }
        rt.block_on(async {
            let mut hs = Vec::new();
            for task in 0..600u64 {
                let (c, t, res, seq) = (cache.clone(), trackers.clone(), results.clone(), seq.clone());
                hs.push(tokio::spawn(async move {
                    let mut r = Rng(task * 31 + 5);
                    let key = r.below(KEYS);
                    let k = key as usize;
                    let delay = r.below(3000);
                    let init = async move {
                        t[k].enter();
                        struct Exit(Arc<Vec<Tracker>>, usize);
                        impl Drop for Exit {
                            fn drop(&mut self) {
                                self.0[self.1].exit();
                            }
                        }
                        let _e = Exit(t.clone(), k);
                        tokio::time::sleep(Duration::from_micros(delay)).await;
                        tokio::task::yield_now().await;
                        seq.fetch_add(1, SeqCst)
                    };
                    let fut = c.get_with_async(key, init);
                    let v = if r.below(2) == 0 {
                        tokio::time::timeout(Duration::from_micros(r.below(2500)), fut).await.ok()
                    } else {
                        Some(fut.await)
                    };
                    if let Some(v) = v {
                        res.lock().unwrap().entry(key).or_default().insert(v);
                    }
                }));
            }
            for h in hs {
                tokio::time::timeout(Duration::from_secs(15), h).await.expect("task hung").unwrap();
            }
        });
        for h in threads {
            h.join().unwrap();
        }
        let most: Vec<usize> = trackers.iter().map(|t| t.most()).collect();
        let res = results.lock().unwrap().clone();
        (most, res)
    });
    for (k, m) in most.iter().enumerate() {
        assert!(*m <= 1, "key {k}: {m} loaders ran at once");
    }
    for (k, vals) in res {
        assert_eq!(vals.len(), 1, "key {k}: callers saw different loaded values {vals:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Re-entrant wakers, panicking keys, listeners calling back
// ---------------------------------------------------------------------------------------------------------

/// A waker whose `wake` calls back into the cache (a custom executor may do this).
struct Reentrant {
    cache: Cache<u64, u64>,
    woken: AtomicUsize,
}

impl Wake for Reentrant {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.fetch_add(1, SeqCst);
        self.cache.insert(1000, 1);
        let _ = self.cache.get(&1);
        self.cache.invalidate(&1000);
        let _ = self.cache.get_with(2000, || 5);
    }
}

#[test]
fn a_waker_that_calls_into_the_cache_does_not_deadlock() {
    let woken = bounded(10, || {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(100).shards(1).build();
        let t = Arc::new(Tracker::default());
        let lead = Arc::new(Ctl::default());
        let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
        let (_lw, lwk) = counting();
        assert!(poll(leader.as_mut(), &lwk).is_pending());
        let r = Arc::new(Reentrant { cache: cache.clone(), woken: AtomicUsize::new(0) });
        let wk = Waker::from(r.clone());
        let c = Arc::new(Ctl::default());
        let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
        assert!(poll(w.as_mut(), &wk).is_pending());
        lead.open(Outcome::Value(6));
        assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(6));
        assert_eq!(poll(w.as_mut(), &wk), Poll::Ready(6));
        // Cancellation path too.
        let lead = Arc::new(Ctl::default());
        let mut leader = Box::pin(cache.get_with_async(3, infallible(Gate::new(&lead, &t))));
        assert!(poll(leader.as_mut(), &lwk).is_pending());
        let mut w = Box::pin(cache.get_with_async(3, async { 8 }));
        assert!(poll(w.as_mut(), &wk).is_pending());
        drop(leader);
        assert_eq!(poll(w.as_mut(), &wk), Poll::Ready(8));
        r.woken.load(SeqCst)
    });
    assert!(woken >= 2);
}

/// A key whose `Eq` and `Hash` panic while a global switch is on.
#[derive(Clone, Debug)]
struct Touchy(u64);
static TOUCHY_PANIC: AtomicBool = AtomicBool::new(false);
impl PartialEq for Touchy {
    fn eq(&self, o: &Self) -> bool {
        if TOUCHY_PANIC.load(SeqCst) {
            panic!("gate told to panic (Eq)");
        }
        self.0 == o.0
    }
}
impl Eq for Touchy {}
impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if TOUCHY_PANIC.load(SeqCst) {
            panic!("gate told to panic (Hash)");
        }
        self.0.hash(h)
    }
}

#[test]
fn key_eq_and_hash_panicking_while_the_leader_is_dropped_leaves_the_cache_usable() {
    quiet_panics();
    let cache: Cache<Touchy, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.get_with_async(Touchy(1), infallible(Gate::new(&lead, &t))));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let c = Arc::new(Ctl::default());
    let (_wc, wk) = counting();
    let mut w = Box::pin(cache.get_with_async(Touchy(1), infallible(Gate::new(&c, &t))));
    assert!(poll(w.as_mut(), &wk).is_pending());
    TOUCHY_PANIC.store(true, SeqCst);
    let _ = catch_unwind(AssertUnwindSafe(|| drop(leader)));
    TOUCHY_PANIC.store(false, SeqCst);
    // Whatever happened, the waiter must make progress: lead (pending on its gate) or be served.
    let r = poll(w.as_mut(), &wk);
    if r.is_pending() {
        assert!(c.polled(), "waiter stranded after the leader's drop panicked in Eq/Hash");
        c.open(Outcome::Value(2));
        assert_eq!(poll(w.as_mut(), &wk), Poll::Ready(2));
    }
    // The cache still loads the key.
    let v = futures::executor::block_on(cache.get_with_async(Touchy(1), async { 3 }));
    assert!(v == 2 || v == 3);
}

#[test]
fn eviction_listener_may_call_get_with_async_on_the_loaded_key() {
    let v = bounded(10, || {
        let slot: Arc<Mutex<Option<Cache<u64, u64>>>> = Arc::default();
        let s2 = slot.clone();
        let seen = Arc::new(AtomicU64::new(0));
        let seen2 = seen.clone();
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(1)
            .shards(1)
            .policy(cachefs::Policy::Lru)
            .eviction_listener(move |_k, _v, _cause| {
                let c = s2.lock().unwrap().clone();
                if let Some(c) = c {
                    // The key being loaded right now (2): the listener runs after waiters are released.
                    let v = spin_on(c.get_with_async(2, async { 999 }));
                    seen2.store(v, SeqCst);
                }
            })
            .build();
        *slot.lock().unwrap() = Some(cache.clone());
        cache.insert(1, 1);
        let v = futures::executor::block_on(cache.get_with_async(2, async { 22 }));
        *slot.lock().unwrap() = None;
        (v, seen.load(SeqCst))
    });
    assert_eq!(v.0, 22);
    assert_eq!(v.1, 22, "listener did not run, or saw a second load: {v:?}");
}

#[test]
fn try_error_with_sync_thread_waiters_each_run_their_own_loader() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let t = Arc::new(Tracker::default());
    let lead = Arc::new(Ctl::default());
    let mut leader = Box::pin(cache.try_get_with_async(4, Gate::new(&lead, &t)));
    let (_lw, lwk) = counting();
    assert!(poll(leader.as_mut(), &lwk).is_pending());
    let ready = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for i in 0..4u64 {
        let (c, t2, r2) = (cache.clone(), t.clone(), ready.clone());
        hs.push(std::thread::spawn(move || {
            r2.fetch_add(1, SeqCst);
            c.try_get_with(4, || {
                t2.enter();
                std::thread::sleep(Duration::from_millis(10));
                t2.exit();
                Err::<u64, String>(format!("s{i}"))
            })
        }));
    }
    wait_until("threads started", || ready.load(SeqCst) == 4);
    std::thread::sleep(Duration::from_millis(50));
    lead.open(Outcome::Err("lead".into()));
    assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(Err("lead".to_string())));
    let rs: Vec<Result<u64, String>> = bounded(15, move || hs.into_iter().map(|h| h.join().unwrap()).collect());
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r, &Err(format!("s{i}")), "thread {i} got a foreign result");
    }
    assert_eq!(t.started(), 5);
    assert!(t.most() <= 1, "two loaders at once");
}

/// Polls `f` to completion on this thread (no executor), failing after 5 s.
fn spin_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let start = Instant::now();
    loop {
        if let Poll::Ready(v) = poll(f.as_mut(), Waker::noop()) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "spin_on: future never completed (hang)");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn waiter_repolled_after_the_loaded_value_was_evicted_or_invalidated_still_gets_it_without_loading() {
    for invalidate in [false, true] {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(1).shards(1).policy(cachefs::Policy::Lru).build();
        let t = Arc::new(Tracker::default());
        let lead = Arc::new(Ctl::default());
        let mut leader = Box::pin(cache.get_with_async(1, infallible(Gate::new(&lead, &t))));
        let (_lw, lwk) = counting();
        assert!(poll(leader.as_mut(), &lwk).is_pending());
        let c = Arc::new(Ctl::default());
        let (wc, wk) = counting();
        let mut w = Box::pin(cache.get_with_async(1, infallible(Gate::new(&c, &t))));
        assert!(poll(w.as_mut(), &wk).is_pending());
        lead.open(Outcome::Value(10));
        assert_eq!(poll(leader.as_mut(), &lwk), Poll::Ready(10));
        drop(leader);
        assert!(wakes(&wc) >= 1);
        if invalidate {
            cache.invalidate(&1);
        } else {
            cache.insert(2, 2); // evicts key 1
        }
        assert_eq!(cache.get(&1), None);
        let r = poll(w.as_mut(), &wk);
        assert!(!c.polled(), "invalidate={invalidate}: the waiter ran a second load instead of sharing the first");
        assert_eq!(r, Poll::Ready(10), "invalidate={invalidate}");
    }
}
