//! Single flight per digest: one thread fills (or verifies, or evicts) a blob, the others wait for it.
//!
//! The table (a mutex over a map from digest to flight) is held only to find, add or remove a flight;
//! the leader does its I/O with no lock held, then removes its flight from the table and publishes the
//! result to the waiters (in that order, so a thread arriving after the publication starts from the
//! disk index, which the leader has already updated). Each flight's result slot has its own mutex and
//! condition variable. A leader that panics publishes [`Error::FillAbandoned`] from its guard's `Drop`,
//! so waiters never hang.
//!
//! This is per process. Another process cannot fill the same directory at the same time: the disk
//! tier's lock file keeps it out (see `disk.rs`).

use std::collections::HashMap;

use super::{Digest, Error};
use crate::sync::{Arc, Condvar, Mutex};

#[derive(Debug, Default)]
struct Flight {
    /// `None` while the leader works; then its result.
    result: Mutex<Option<Result<(), Error>>>,
    done: Condvar,
}

#[derive(Debug, Default)]
pub(crate) struct Flights {
    /// Protects the set of digests in flight. Never held while waiting or doing I/O.
    table: Mutex<HashMap<Digest, Arc<Flight>>>,
}

/// What [`Flights::join`] made of the caller.
#[derive(Debug)]
pub(crate) enum Role<'a> {
    /// No flight was running: the caller leads one and must `finish` it.
    Leader(Leader<'a>),
    /// Another thread led; this is its result.
    Waited(Result<(), Error>),
}

/// The leader of one flight. Finishing (or dropping) it wakes the waiters.
#[derive(Debug)]
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    digest: Digest,
    flight: Arc<Flight>,
    finished: bool,
}

impl Flights {
    /// Leads a flight for `digest`, or waits for the one running and returns its result.
    pub(crate) fn join(&self, digest: &Digest) -> Role<'_> {
        let flight = {
            let mut table = self.table.lock();
            match table.get(digest) {
                Some(f) => Arc::clone(f),
                None => {
                    let flight = Arc::new(Flight::default());
                    table.insert(*digest, Arc::clone(&flight));
                    return Role::Leader(Leader { flights: self, digest: *digest, flight, finished: false });
                }
            }
        };
        let mut result = flight.result.lock();
        loop {
            if let Some(r) = result.as_ref() {
                return Role::Waited(r.clone());
            }
            result = flight.done.wait(result);
        }
    }

    /// Leads a flight for `digest` only if none is running (eviction must not wait for a fill).
    pub(crate) fn try_lead(&self, digest: &Digest) -> Option<Leader<'_>> {
        let mut table = self.table.lock();
        if table.contains_key(digest) {
            return None;
        }
        let flight = Arc::new(Flight::default());
        table.insert(*digest, Arc::clone(&flight));
        Some(Leader { flights: self, digest: *digest, flight, finished: false })
    }

    /// Flights running now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().len()
    }
}

impl Leader<'_> {
    /// Ends the flight with `result`, handing it to every waiter.
    pub(crate) fn finish(mut self, result: Result<(), Error>) {
        self.publish(result);
    }

    fn publish(&mut self, result: Result<(), Error>) {
        self.finished = true;
        self.flights.table.lock().remove(&self.digest);
        *self.flight.result.lock() = Some(result);
        self.flight.done.notify_all();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let digest = self.digest.to_string();
            self.publish(Err(Error::FillAbandoned { digest }));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    #[test]
    fn one_leader_however_many_ask() {
        let flights = Flights::default();
        let d = Digest::of(b"x");
        let led = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| match flights.join(&d) {
                    Role::Leader(l) => {
                        led.fetch_add(1, SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        l.finish(Ok(()));
                    }
                    Role::Waited(r) => r.unwrap(),
                });
            }
        });
        // Threads that arrive after a flight ended lead a new one; with a 50 ms flight and 16 threads
        // started together, almost always one leads. At most a few, never zero.
        assert!((1..=16).contains(&led.load(SeqCst)));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn waiters_get_the_leaders_error_and_a_panicking_leader_releases_them() {
        let flights = Flights::default();
        let d = Digest::of(b"y");
        let Role::Leader(l) = flights.join(&d) else { panic!("first caller leads") };
        assert!(flights.try_lead(&d).is_none());
        std::thread::scope(|s| {
            let waiter = s.spawn(|| flights.join(&d));
            std::thread::sleep(Duration::from_millis(20));
            l.finish(Err(Error::NotFound { digest: d.to_string() }));
            assert!(matches!(waiter.join().unwrap(), Role::Waited(Err(Error::NotFound { .. })) | Role::Leader(_)));
        });
        let Role::Leader(l) = flights.join(&d) else { panic!("the flight ended") };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(flights.join(&d), Role::Waited(Err(Error::FillAbandoned { .. }))));
            std::thread::sleep(Duration::from_millis(20));
            drop(l); // as a panic would
            assert!(waiter.join().unwrap());
        });
        assert!(flights.try_lead(&d).is_some());
    }
}
