//! Write-back: the dirty-byte budget (back-pressure), the background flusher, and `flush`.
//!
//! # Design
//! Dirty data lives in the stripes' resident maps (see `resident.rs`); this module bounds it and writes
//! it out. One mutex guards the budget's bookkeeping (bytes, entries, flusher requests); it is never held
//! while a stripe is locked, and never across I/O. Two condition variables hang off it: `freed` wakes
//! writers waiting for room, `work` wakes the flusher early (room needed, or shutdown).
//!
//! A flush writes a file to the backend with its stripe locked, so a newer write to the same file waits
//! for it and cannot be overtaken, and two flushes of one file never race. A failed write leaves the
//! file dirty with an exponential back-off (100 ms doubling to 30 s) and counts it in `flush_errors`;
//! `flush()` retries every dirty file regardless of back-off and reports those that fail again.
//!
//! A writer waits while dirty bytes would exceed the budget (unless nothing is dirty, so that one file
//! larger than the budget can still be written). If the flusher completes a pass without writing
//! anything because the backend keeps failing, waiting writers get [`Error::WriteBackStalled`] instead
//! of waiting forever; their data was not accepted, so nothing acknowledged is lost.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{Condvar, JoinHandle, Mutex};

use super::resident::Stripe;
use super::stats::{Count, Counters};
use super::{CacheFs, Error, FlushFailure, Inner, OP_FLUSH, checked};

#[derive(Debug, Default)]
struct Budget {
    bytes: u64,
    entries: u64,
    /// Flusher passes completed (writers use it to wait for at least one before giving up).
    passes: u64,
    /// Set when the last pass that had to make room wrote nothing because every write failed.
    stalled: Option<String>,
    /// A writer needs room: the flusher should write everything dirty, not only what is due.
    urgent: bool,
    /// Writers waiting for room.
    waiting: u32,
    stop: bool,
}

#[derive(Debug)]
pub(crate) struct DirtyBudget {
    max: u64,
    state: Mutex<Budget>,
    /// Writers waiting for room.
    freed: Condvar,
    /// The flusher, waiting for its next tick.
    work: Condvar,
}

impl DirtyBudget {
    pub(crate) fn new(max: u64) -> Self {
        DirtyBudget { max, state: Mutex::new(Budget::default()), freed: Condvar::new(), work: Condvar::new() }
    }

    /// Dirty entries and bytes now.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.entries, s.bytes)
    }

    /// Reserves `len` dirty bytes for a write to `path`, waiting for the flusher while over budget.
    pub(crate) fn reserve(&self, path: &str, len: u64, counters: &Counters) -> Result<(), Error> {
        let mut s = self.state.lock();
        if self.over(&s, len) {
            counters.add(Count::BackpressureWait, 1);
            let since = s.passes;
            s.waiting += 1;
            while self.over(&s, len) {
                if let Some(last_error) = s.stalled.clone().filter(|_| s.passes > since) {
                    s.waiting -= 1;
                    return Err(Error::WriteBackStalled { path: path.to_string(), dirty_bytes: s.bytes, last_error });
                }
                s.urgent = true;
                self.work.notify_one();
                // Woken by a release, a pass that found the backend failing, or shutdown; the timeout
                // only bounds the cost of a lost wake-up.
                s = self.freed.wait_for(s, Duration::from_millis(100));
            }
            s.waiting -= 1;
        }
        s.bytes += len;
        Ok(())
    }

    /// Whether `len` more bytes would exceed the budget (never when nothing is dirty, or at shutdown).
    fn over(&self, s: &Budget, len: u64) -> bool {
        s.bytes > 0 && s.bytes.saturating_add(len) > self.max && !s.stop
    }

    /// A new dirty file (its bytes were reserved). If writers are waiting for room, the flusher is asked
    /// to write it: its bytes may be what they wait for.
    pub(crate) fn add_entry(&self) {
        let mut s = self.state.lock();
        s.entries += 1;
        if s.waiting > 0 {
            s.urgent = true;
            drop(s);
            self.work.notify_one();
        }
    }

    /// `len` bytes and `entries` files are no longer dirty.
    pub(crate) fn release(&self, len: u64, entries: u64) {
        let mut s = self.state.lock();
        s.bytes = s.bytes.saturating_sub(len);
        s.entries = s.entries.saturating_sub(entries);
        drop(s);
        self.freed.notify_all();
    }

    pub(crate) fn stop(&self) {
        self.state.lock().stop = true;
        self.work.notify_all();
        self.freed.notify_all();
    }
}

/// Starts the flusher: every `tick` (a quarter of `delay`, 1–250 ms) it writes files whose delay has
/// passed, or everything when a writer is waiting for room.
pub(crate) fn spawn_flusher(inner: Arc<Inner>, delay: Duration) -> JoinHandle<()> {
    let tick = (delay / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
    crate::sync::spawn_named("cachefs-flusher", move || {
        loop {
            let urgent = {
                let mut s = inner.dirty.state.lock();
                if !s.urgent && !s.stop {
                    s = inner.dirty.work.wait_for(s, tick);
                }
                if s.stop {
                    return;
                }
                std::mem::take(&mut s.urgent)
            };
            let pass = inner.flush_pass(urgent);
            let mut s = inner.dirty.state.lock();
            s.passes += 1;
            if pass.written > 0 {
                // Each written file already woke the waiting writers through `release`.
                s.stalled = None;
            } else if let Some(e) = pass.last_error.filter(|_| urgent) {
                s.stalled = Some(e);
                drop(s);
                // Waiting writers must hear that the backend is failing.
                inner.dirty.freed.notify_all();
            }
        }
    })
}

#[derive(Debug, Default)]
struct Pass {
    written: u64,
    last_error: Option<String>,
}

/// Back-off after `attempts` failures in a row.
fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempts.min(9))).min(Duration::from_secs(30))
}

impl Inner {
    fn has_dirty(&self) -> bool {
        self.dirty.state.lock().entries > 0
    }

    /// Writes dirty files that are due (all of them if `urgent`).
    fn flush_pass(&self, urgent: bool) -> Pass {
        let mut pass = Pass::default();
        if !self.has_dirty() {
            return pass;
        }
        let now = Instant::now();
        let (written, failures) = self.flush_keys(self.dirty_keys(|d| urgent || d.due <= now));
        pass.written = written;
        pass.last_error = failures.last().map(|f| f.error.to_string());
        pass
    }

    /// Every dirty file satisfying `due`, stripe by stripe.
    fn dirty_keys(&self, due: impl Fn(&super::resident::Dirty) -> bool) -> Vec<Arc<str>> {
        let mut keys = Vec::new();
        for stripe in self.stripes.each() {
            keys.extend(due_keys(&stripe, &due));
        }
        keys
    }

    /// Flushes `keys` (those still dirty) with up to `flush_workers` threads; returns how many were
    /// written and every failure. Each file is written with its stripe locked, as always, so workers
    /// never write one file twice or out of order.
    fn flush_keys(&self, keys: Vec<Arc<str>>) -> (u64, Vec<FlushFailure>) {
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results = Mutex::new((0u64, Vec::new()));
        let work = || {
            // Relaxed: the counter only hands out distinct indices.
            while let Some(key) = keys.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
                let outcome = self.flush_one(key);
                let mut r = results.lock();
                match outcome {
                    Ok(written) => r.0 += u64::from(written),
                    Err(e) => r.1.push(FlushFailure { path: key.to_string(), error: Box::new(e) }),
                }
            }
        };
        // Loom models run on loom threads only; flushing there stays on the calling thread.
        let workers = if cfg!(loom) { 1 } else { self.flush_workers.min(keys.len()) };
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..workers {
                    s.spawn(work);
                }
            });
        }
        results.into_inner()
    }

    /// Writes `key`'s dirty data to the backend (its stripe locked). `None` if it was not dirty.
    pub(crate) fn flush_locked(&self, stripe: &mut Stripe, key: &str) -> Option<Result<(), Error>> {
        let r = stripe.resident.get_mut(key)?;
        let dirty = r.dirty.as_mut()?;
        let started = self.start();
        let result = self.backend.write(key, &r.data);
        self.record(OP_FLUSH, started);
        match result {
            Ok(()) => {
                let len = r.data.len() as u64;
                r.dirty = None;
                stripe.tidy(key);
                self.dirty.release(len, 1);
                self.counters.add(Count::Flush, 1);
                self.counters.add(Count::FlushedBytes, len);
                Some(Ok(()))
            }
            Err(e) => {
                dirty.attempts += 1;
                dirty.due = Instant::now() + backoff(dirty.attempts);
                self.counters.add(Count::FlushError, 1);
                Some(Err(e))
            }
        }
    }

    /// Writes every dirty file now; reports each that fails.
    pub(crate) fn flush_all(&self) -> Result<u64, Error> {
        if !self.has_dirty() {
            return Ok(0);
        }
        let (written, failures) = self.flush_keys(self.dirty_keys(|_| true));
        if failures.is_empty() { Ok(written) } else { Err(Error::Flush { failures }) }
    }

    /// Flushes one file if it is dirty; `Ok(false)` if it was not.
    pub(crate) fn flush_one(&self, key: &str) -> Result<bool, Error> {
        let mut stripe = self.stripes.lock(key);
        self.flush_locked(&mut stripe, key).transpose().map(|r| r.is_some())
    }
}

fn due_keys(stripe: &Stripe, due: impl Fn(&super::resident::Dirty) -> bool) -> Vec<Arc<str>> {
    stripe.resident.iter().filter(|(_, r)| r.dirty.as_ref().is_some_and(&due)).map(|(k, _)| Arc::clone(k)).collect()
}

impl CacheFs {
    /// Writes every dirty file to the backend now. `Ok` means every write acknowledged before this call
    /// is on the backend. On failure the failing files stay dirty (and are retried by the flusher); the
    /// error lists each of them. Other modes have nothing to flush.
    pub fn flush(&self) -> Result<(), Error> {
        self.inner.flush_all().map(|_| ())
    }

    /// Flushes the given files if they are dirty, attempting every one even after failures. Returns how
    /// many were written; the error lists every failure (including invalid paths).
    pub fn batch_flush<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>) -> Result<u64, Error> {
        let mut failures = Vec::new();
        let mut written = 0;
        for p in paths {
            let p = p.as_ref();
            let result = checked(p).and_then(|key| self.inner.flush_one(&key));
            match result {
                Ok(flushed) => written += u64::from(flushed),
                Err(e) => failures.push(FlushFailure { path: p.to_string_lossy().into_owned(), error: Box::new(e) }),
            }
        }
        if failures.is_empty() { Ok(written) } else { Err(Error::Flush { failures }) }
    }
}
