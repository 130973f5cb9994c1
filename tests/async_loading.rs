//! `get_with_async` and `try_get_with_async`: one load per key across tasks and threads, waiters parked as
//! tasks, cancellation at every await point of the loader handing the load to a waiter, panics, errors,
//! sync and async callers sharing one flight, and more than one executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use cachefs::Cache;

/// A waker that counts its wakes.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Pending once, then ready: one await point.
struct Yield(bool);

impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Counts loaders running now and the most ever running at once.
#[derive(Default)]
struct Loads {
    started: AtomicUsize,
    running: AtomicUsize,
    most: AtomicUsize,
}

struct Running<'a>(&'a Loads);

impl Loads {
    fn enter(&self) -> Running<'_> {
        self.started.fetch_add(1, SeqCst);
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        Running(self)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

/// A loader with `points` await points that yields `value`.
async fn loader(loads: &Loads, points: usize, value: u64) -> u64 {
    let _running = loads.enter();
    for _ in 0..points {
        Yield(false).await;
    }
    value
}

fn poll<F: Future>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

#[test]
fn a_thousand_tasks_on_two_workers_racing_one_key_load_it_once() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let cache: Arc<Cache<u32, u64>> = Arc::new(Cache::new(100));
    let loads = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_with_async(7, async {
                            loads.fetch_add(1, SeqCst);
                            // Long enough for every task to arrive and wait; waiters that blocked a worker
                            // thread would stall this sleep's wake-up (two workers only).
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            42
                        })
                        .await
                })
            })
            .collect();
        let all = async {
            for t in tasks {
                assert_eq!(t.await.unwrap(), 42);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all).await.expect("every task finished");
    });
    assert_eq!(loads.load(SeqCst), 1);
    assert_eq!(cache.stats().loads_ok, 1);
}

#[test]
fn cancelling_the_leader_at_every_await_point_hands_the_load_to_a_waiter() {
    const POINTS: usize = 4;
    for cancel_after in 1..=POINTS + 1 {
        let cache: Cache<u32, u64> = Cache::new(10);
        let loads = Loads::default();
        let (wa, wb) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        let (waker_a, waker_b) = (Waker::from(wa.clone()), Waker::from(wb.clone()));
        let mut a = Box::pin(cache.get_with_async(1, loader(&loads, POINTS, 100)));
        let mut a_done = None;
        for _ in 0..cancel_after {
            if let Poll::Ready(v) = poll(a.as_mut(), &waker_a) {
                a_done = Some(v);
                break;
            }
        }
        let mut b = Box::pin(cache.get_with_async(1, loader(&loads, POINTS, 200)));
        if let Some(v) = a_done {
            // The leader finished before anyone waited: the second caller gets its value, loading nothing.
            assert_eq!((cancel_after, v), (POINTS + 1, 100));
            assert_eq!(poll(b.as_mut(), &waker_b), Poll::Ready(100));
            assert_eq!(loads.started.load(SeqCst), 1);
            continue;
        }
        assert_eq!(poll(b.as_mut(), &waker_b), Poll::Pending, "cancel after {cancel_after}: b waits");
        assert_eq!(cache.get(&1), None, "cancel after {cancel_after}: nothing half-built is visible");
        assert_eq!(wb.0.load(SeqCst), 0);
        drop(a);
        assert!(wb.0.load(SeqCst) >= 1, "cancel after {cancel_after}: the waiter was woken");
        assert_eq!(cache.get(&1), None, "cancel after {cancel_after}: the cancelled load stored nothing");
        // The waiter takes over: its own loader, to the end.
        let mut value = None;
        for _ in 0..=POINTS {
            if let Poll::Ready(v) = poll(b.as_mut(), &waker_b) {
                value = Some(v);
                break;
            }
        }
        assert_eq!(value, Some(200), "cancel after {cancel_after}");
        assert_eq!(cache.get(&1), Some(200));
        assert_eq!(loads.started.load(SeqCst), 2, "cancel after {cancel_after}: one load each");
        assert_eq!(loads.most.load(SeqCst), 1, "cancel after {cancel_after}: never two loads at once");
    }
}

#[test]
fn a_waiter_dropped_before_the_load_ends_takes_its_waker_back() {
    let cache: Cache<u32, u64> = Cache::new(10);
    let loads = Loads::default();
    let leader_waker = Waker::from(Arc::new(Counting::default()));
    let (gone, live) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    let (gone_waker, live_waker) = (Waker::from(gone.clone()), Waker::from(live.clone()));
    let mut leader = Box::pin(cache.get_with_async(1, loader(&loads, 2, 5)));
    assert!(poll(leader.as_mut(), &leader_waker).is_pending());
    for _ in 0..100 {
        let mut w = Box::pin(cache.get_with_async(1, async { unreachable!("a waiter never loads") }));
        assert!(poll(w.as_mut(), &gone_waker).is_pending());
    }
    let mut stays = Box::pin(cache.get_with_async(1, async { unreachable!("a waiter never loads") }));
    for _ in 0..3 {
        assert!(poll(stays.as_mut(), &live_waker).is_pending(), "polled again: its waker is replaced");
    }
    while poll(leader.as_mut(), &leader_waker).is_pending() {}
    assert_eq!(gone.0.load(SeqCst), 0, "dropped waiters are not woken: their wakers went with them");
    assert_eq!(live.0.load(SeqCst), 1, "the waiting task is woken once, however often it polled");
    assert_eq!(poll(stays.as_mut(), &live_waker), Poll::Ready(5));
}

#[test]
fn a_loader_that_panics_lets_the_waiters_retry() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let cache: Arc<Cache<u32, u64>> = Arc::new(Cache::new(10));
    let loads = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let c = cache.clone();
        let l = loads.clone();
        let panicking = tokio::spawn(async move {
            c.get_with_async(3, async move {
                l.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("loader failed");
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let (c, l) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    c.get_with_async(3, async move {
                        l.fetch_add(1, SeqCst);
                        9
                    })
                    .await
                })
            })
            .collect();
        assert!(panicking.await.unwrap_err().is_panic());
        for w in waiters {
            assert_eq!(w.await.unwrap(), 9);
        }
    });
    assert_eq!(loads.load(SeqCst), 2, "the panicking load, then one retry");
    assert_eq!(cache.stats().loads_failed, 1);
}

#[test]
fn errors_go_to_their_caller_only_and_waiters_retry() {
    futures::executor::block_on(async {
        let cache: Cache<u32, u64> = Cache::new(10);
        assert_eq!(cache.try_get_with_async(1, async { Err::<u64, _>("down") }).await, Err("down"));
        assert_eq!(cache.get(&1), None);
        assert_eq!(cache.try_get_with_async(1, async { Ok::<_, &str>(4) }).await, Ok(4));
        assert_eq!(cache.try_get_with_async(1, async { Err::<u64, _>("not asked") }).await, Ok(4));
    });
    // A failing leader with a waiter: the waiter runs its own loader.
    let cache: Cache<u32, u64> = Cache::new(10);
    let waker = Waker::from(Arc::new(Counting::default()));
    let loads = Loads::default();
    let mut failing = Box::pin(cache.try_get_with_async(2, async {
        let _r = loads.enter();
        Yield(false).await;
        Err::<u64, &str>("down")
    }));
    assert!(poll(failing.as_mut(), &waker).is_pending());
    let mut waiter = Box::pin(cache.try_get_with_async(2, async { Ok::<_, &str>(8) }));
    assert!(poll(waiter.as_mut(), &waker).is_pending());
    assert_eq!(poll(failing.as_mut(), &waker), Poll::Ready(Err("down")));
    assert_eq!(poll(waiter.as_mut(), &waker), Poll::Ready(Ok(8)));
}

#[test]
fn sync_and_async_callers_share_one_flight() {
    // A thread leads; tasks wait for it.
    let cache: Arc<Cache<u32, u64>> = Arc::new(Cache::new(10));
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let c = cache.clone();
    let thread = std::thread::spawn(move || {
        c.get_with(1, || {
            started_tx.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
            11
        })
    });
    started_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = cache.clone();
            rt.spawn(async move { c.get_with_async(1, async { unreachable!("the thread is loading") }).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    release_tx.send(()).unwrap();
    assert_eq!(thread.join().unwrap(), 11);
    for t in tasks {
        assert_eq!(rt.block_on(t).unwrap(), 11);
    }

    // A task leads; threads wait for it.
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let c = cache.clone();
    let leader = rt.spawn(async move {
        c.get_with_async(2, async {
            go_rx.await.unwrap();
            22
        })
        .await
    });
    while cache.stats().misses == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = cache.clone();
            std::thread::spawn(move || c.get_with(2, || unreachable!("the task is loading")))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    go_tx.send(()).unwrap();
    assert_eq!(rt.block_on(leader).unwrap(), 22);
    for t in threads {
        assert_eq!(t.join().unwrap(), 22);
    }
}

#[test]
fn the_futures_are_send_and_hits_need_no_executor() {
    fn send<T: Send>(t: T) -> T {
        t
    }
    let cache: Cache<String, Arc<str>> = Cache::new(10);
    cache.insert("k".into(), "v".into());
    let waker = Waker::noop();
    let mut hit = Box::pin(send(cache.get_with_async("k".into(), async { unreachable!() })));
    assert_eq!(poll(hit.as_mut(), waker), Poll::Ready("v".into()), "a hit is ready at the first poll");
    drop(send(cache.try_get_with_async("x".into(), async { Ok::<_, ()>("y".into()) })));
}
