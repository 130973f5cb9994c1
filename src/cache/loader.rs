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
//! Lock order: a flight table's mutex may be held while taking its shard's lock (the re-check), never
//! the other way round.

use hashbrown::HashTable;

use super::stats::{Counter, Counters};
use crate::sync::{Arc, Condvar, Mutex};

#[derive(Debug)]
enum State<V> {
    Loading,
    Loaded(V),
    Failed,
}

/// One load in progress; waiters block on it.
#[derive(Debug)]
pub(crate) struct Flight<V> {
    /// Protects the outcome; `ready` is signalled when it leaves `Loading`.
    state: Mutex<State<V>>,
    ready: Condvar,
}

impl<V: Clone> Flight<V> {
    /// Waits for the leader: its value, or `None` if it failed (the caller should start over).
    pub(crate) fn wait(&self) -> Option<V> {
        let mut state = self.state.lock();
        loop {
            match &*state {
                State::Loading => state = self.ready.wait(state),
                State::Loaded(v) => return Some(v.clone()),
                State::Failed => return None,
            }
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

impl<K: Eq + Clone, V> Flights<K, V> {
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
        let flight = Arc::new(Flight { state: Mutex::new(State::Loading), ready: Condvar::new() });
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
        *self.flight.state.lock() = match outcome {
            Some(v) => State::Loaded(v),
            None => State::Failed,
        };
        self.flight.ready.notify_all();
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
