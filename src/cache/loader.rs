//! Single-flight loading: concurrent misses on one key run the loader once.
//!
//! Each shard keeps a table of keys being loaded. The first caller to miss registers a [`Flight`] and
//! becomes its leader; later callers find the flight and wait on it. The leader stores the value in the
//! cache, then removes the flight from the table, then publishes the outcome to the waiters. A caller
//! that arrives after the removal finds the value in the cache (the table lookup re-checks the cache
//! under the table's lock for exactly that window).
//!
//! A leader whose loader fails or panics settles the flight as failed (its guard does so on unwind);
//! the waiters then start over, and one of them leads a new flight with its own loader. No lock is held
//! while a loader runs.
//!
//! Waiters are threads (blocked on the flight's condition variable) or tasks (a [`FlightWait`] future
//! whose waker the flight keeps): settling wakes both, so sync and async callers share one flight. An
//! async leader's guard lives in its future: dropping the future mid-load (a timeout, a client gone)
//! settles the flight as failed, and a waiting task or thread takes the load over.
//!
//! Lock order: a flight table's mutex may be held while taking its shard's lock (the re-check), never
//! the other way round.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use hashbrown::HashTable;

use super::stats::{Counter, Counters};
use crate::sync::{Arc, Condvar, Mutex};

#[derive(Debug)]
enum Outcome<V> {
    Loading,
    Loaded(V),
    Failed,
}

/// A flight's outcome and the tasks waiting for it.
#[derive(Debug)]
struct State<V> {
    outcome: Outcome<V>,
    /// Waiting tasks' wakers, by waiter number; taken (and woken) when the flight settles.
    wakers: Vec<(u64, Waker)>,
    next_waiter: u64,
}

/// One load in progress; waiters block (threads) or park (tasks) on it.
#[derive(Debug)]
pub(crate) struct Flight<V> {
    /// Protects the outcome and the wakers; `ready` is signalled, and the wakers woken, when the outcome
    /// leaves `Loading`.
    state: Mutex<State<V>>,
    ready: Condvar,
}

impl<V: Clone> Flight<V> {
    fn new() -> Self {
        let state = State { outcome: Outcome::Loading, wakers: Vec::new(), next_waiter: 0 };
        Flight { state: Mutex::new(state), ready: Condvar::new() }
    }

    /// Waits for the leader: its value, or `None` if it failed (the caller should start over).
    pub(crate) fn wait(&self) -> Option<V> {
        let mut state = self.state.lock();
        loop {
            match &state.outcome {
                Outcome::Loading => state = self.ready.wait(state),
                Outcome::Loaded(v) => return Some(v.clone()),
                Outcome::Failed => return None,
            }
        }
    }

    /// Waits for `flight`'s leader as a task: resolves to its value, or `None` if it failed.
    pub(crate) fn wait_async(flight: Arc<Self>) -> FlightWait<V> {
        FlightWait { flight, waiter: None }
    }
}

/// A task waiting for a flight (see [`Flight::wait_async`]). Dropped before it resolves, it takes its
/// waker back.
#[derive(Debug)]
pub(crate) struct FlightWait<V> {
    flight: Arc<Flight<V>>,
    /// This task's number among the flight's waiters, once it has registered a waker.
    waiter: Option<u64>,
}

impl<V: Clone> Future for FlightWait<V> {
    type Output = Option<V>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<V>> {
        let this = &mut *self;
        let mut state = this.flight.state.lock();
        match &state.outcome {
            Outcome::Loaded(v) => return Poll::Ready(Some(v.clone())),
            Outcome::Failed => return Poll::Ready(None),
            Outcome::Loading => {}
        }
        // Still loading: (re)register this task's current waker; the settle that follows wakes it.
        let state = &mut *state;
        match this.waiter.and_then(|id| state.wakers.iter_mut().find(|(w, _)| *w == id)) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => {
                let id = state.next_waiter;
                state.next_waiter += 1;
                state.wakers.push((id, cx.waker().clone()));
                this.waiter = Some(id);
            }
        }
        Poll::Pending
    }
}

impl<V> Drop for FlightWait<V> {
    fn drop(&mut self) {
        if let Some(id) = self.waiter {
            self.flight.state.lock().wakers.retain(|(w, _)| *w != id);
        }
    }
}

#[derive(Debug)]
struct Pending<K, V> {
    hash: u64,
    key: K,
    flight: Arc<Flight<V>>,
}

/// A shard's table of loads in progress.
#[derive(Debug)]
pub(crate) struct Flights<K, V> {
    table: Mutex<HashTable<Pending<K, V>>>,
}

/// What joining a key's flight gave.
#[derive(Debug)]
pub(crate) enum Joined<'a, K, V> {
    /// The value turned up in the cache meanwhile.
    Found(V),
    /// Someone else is loading: wait on it.
    Follower(Arc<Flight<V>>),
    /// This caller must load; settle through the guard.
    Leader(Leader<'a, K, V>),
}

impl<K, V> Flights<K, V> {
    pub(crate) fn new() -> Self {
        Flights { table: Mutex::new(HashTable::new()) }
    }
}

impl<K: Eq + Clone, V: Clone> Flights<K, V> {
    /// Joins the load of `key`, or starts one. `recheck` looks the key up in the cache again while
    /// the table is locked, closing the window between a leader's insert and its flight's removal. It
    /// runs under the table's lock, so it must not run user code (a listener, a value's `Drop`): it may
    /// read, never reclaim.
    pub(crate) fn join<'a>(
        &'a self,
        hash: u64,
        key: &K,
        counters: &'a Counters,
        recheck: impl FnOnce() -> Option<V>,
    ) -> Joined<'a, K, V> {
        let mut table = self.table.lock();
        if let Some(p) = table.find(hash, |p| p.key == *key) {
            return Joined::Follower(p.flight.clone());
        }
        if let Some(v) = recheck() {
            return Joined::Found(v);
        }
        let flight = Arc::new(Flight::new());
        table.insert_unique(hash, Pending { hash, key: key.clone(), flight: flight.clone() }, |p| p.hash);
        Joined::Leader(Leader { flights: self, hash, flight, counters, settled: false })
    }
}

/// The leader's duty to settle its flight; settles it as failed if dropped unsettled (a panic).
#[derive(Debug)]
pub(crate) struct Leader<'a, K, V> {
    flights: &'a Flights<K, V>,
    hash: u64,
    flight: Arc<Flight<V>>,
    counters: &'a Counters,
    settled: bool,
}

impl<K, V> Leader<'_, K, V> {
    /// Publishes the outcome to the waiters and retires the flight.
    pub(crate) fn settle(mut self, outcome: Option<V>) {
        self.settle_inner(outcome);
    }

    fn settle_inner(&mut self, outcome: Option<V>) {
        self.settled = true;
        let counter = if outcome.is_some() { Counter::LoadOk } else { Counter::LoadFailed };
        self.counters.add(counter, 1);
        // Retire the flight *before* publishing: a waiter woken by a failure starts over, and must not
        // find this flight again (it would spin on it until the leader got round to removing it; loom
        // found that). On success the value is already in the cache, where newcomers look next.
        let retired = {
            let mut table = self.flights.table.lock();
            table.find_entry(self.hash, |p| Arc::ptr_eq(&p.flight, &self.flight)).ok().map(|e| e.remove().0)
        };
        let wakers = {
            let mut state = self.flight.state.lock();
            state.outcome = match outcome {
                Some(v) => Outcome::Loaded(v),
                None => Outcome::Failed,
            };
            std::mem::take(&mut state.wakers)
        };
        self.flight.ready.notify_all();
        // Woken outside the lock: a waker may run its task right here, and that task polls the flight.
        for (_, waker) in wakers {
            waker.wake();
        }
        // The key is dropped here, outside the table's lock.
        drop(retired);
    }
}

impl<K, V> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle_inner(None);
        }
    }
}
