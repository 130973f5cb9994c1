//! Write-back: acknowledging writes (the dirty-byte budget and the pending namespace), discarding dirty
//! data, flushing it, and the background flusher.
//!
//! # Design
//! Dirty data lives in the per-path slots (see `locks.rs`); this module decides when a write may become
//! dirty and writes it out. One mutex guards the ledger: dirty bytes and files, the [`Claims`] on paths,
//! and the flusher's requests. It may be taken while a stripe is locked, never the other way round, and
//! never across I/O; [`WriteBack::reserve`], which may wait, is called with no stripe locked. Two
//! condition variables hang off it: `freed` wakes writers waiting for room, `work` wakes the flusher early
//! (room needed, or shutdown).
//!
//! A write is acknowledged only if a flush could complete it: no pending write makes the path a directory
//! or its parent a file ([`Claims`]), and then the backend's check passes (the caller runs it after
//! reserving, so that a conflicting write, which holds its claim until its flush has changed the backend,
//! is seen either here or there). Each pending write holds a claim and its bytes from reservation until
//! its data is written, replaced by a newer write, or discarded.
//!
//! A flush writes a file with its path locked, so a newer write to the same file waits for it and cannot
//! be overtaken, and two flushes of one file never race. A failed write leaves the file dirty with an
//! exponential back-off (100 ms doubling to 30 s) and counts it in `flush_errors`; `flush()` retries every
//! dirty file regardless of back-off and reports those that fail again.
//!
//! A writer waits while dirty bytes would exceed the budget (unless nothing is dirty, so that one file
//! larger than the budget can still be written). If the flusher completes a pass without writing
//! anything because the backend keeps failing, waiting writers get [`Error::WriteBackStalled`] instead
//! of waiting forever; their data was not accepted, so nothing acknowledged is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::claims::Claims;
use super::error::{Error, FlushFailure};
use super::locks::{Dirty, PathLocks, Slot};
use super::stats::{Count, Counters};
use super::workers::run_on_threads;
use crate::sync::{Condvar, Mutex};

/// What the ledger mutex guards.
#[derive(Debug, Default)]
struct Ledger {
    bytes: u64,
    entries: u64,
    claims: Claims,
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

/// The write-back machinery of one `CacheFs`. In the other write modes it holds nothing dirty, and its
/// claims are not kept.
#[derive(Debug)]
pub(crate) struct WriteBack {
    enabled: bool,
    delay: Duration,
    max_bytes: u64,
    flush_workers: usize,
    flush_on_close: bool,
    ledger: Mutex<Ledger>,
    /// Writers waiting for room.
    freed: Condvar,
    /// The flusher, waiting for its next tick.
    work: Condvar,
}

/// Writes a whole file to the backend, with the modification time of the write it carries.
pub(crate) type Store<'a> = dyn Fn(&str, &[u8], SystemTime) -> Result<(), Error> + Sync + 'a;

/// The rest of the file system, as flushing uses it.
pub(crate) struct Env<'a> {
    pub(crate) locks: &'a PathLocks,
    pub(crate) counters: &'a Counters,
    pub(crate) store: &'a Store<'a>,
}

/// What one flusher pass did.
#[derive(Debug, Default)]
struct Pass {
    written: u64,
    last_error: Option<String>,
}

/// Back-off after `attempts` failures in a row.
fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempts.min(9))).min(Duration::from_secs(30))
}

/// A claim on a path for the duration of an operation that creates it on the backend directly (see
/// `claims.rs`); released on drop.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    write_back: &'a WriteBack,
    path: &'a str,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if self.write_back.enabled {
            self.write_back.ledger.lock().claims.remove(self.path);
        }
    }
}

impl WriteBack {
    /// Write-back with a flush `delay` and at most `max_bytes` dirty; `None` for the other modes.
    pub(crate) fn new(settings: Option<(Duration, u64)>, flush_workers: usize, flush_on_close: bool) -> Self {
        let (delay, max_bytes) = settings.unwrap_or((Duration::ZERO, u64::MAX));
        WriteBack {
            enabled: settings.is_some(),
            delay,
            max_bytes,
            flush_workers: flush_workers.max(1),
            flush_on_close,
            ledger: Mutex::new(Ledger::default()),
            freed: Condvar::new(),
            work: Condvar::new(),
        }
    }

    /// Whether closing a writer flushes its file.
    pub(crate) fn flushes_on_close(&self) -> bool {
        self.enabled && self.flush_on_close
    }

    /// Dirty files and bytes now.
    pub(crate) fn usage(&self) -> (u64, u64) {
        let l = self.ledger.lock();
        (l.entries, l.bytes)
    }

    /// Why a write of `path` could not be acknowledged because of other pending writes, if so.
    pub(crate) fn conflict(&self, path: &str) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        self.ledger.lock().claims.conflict(path).map_or(Ok(()), Err)
    }

    /// Claims `path` while an operation creates it on the backend directly (a rename's target, a
    /// streamed file's commit), so that no write-back write can be acknowledged that would conflict.
    pub(crate) fn claim<'a>(&'a self, path: &'a str) -> Result<Claim<'a>, Error> {
        if self.enabled {
            let mut l = self.ledger.lock();
            if let Some(e) = l.claims.conflict(path) {
                return Err(e);
            }
            l.claims.add(path);
        }
        Ok(Claim { write_back: self, path })
    }

    /// Reserves `len` dirty bytes and a claim for a write of `path`, waiting for the flusher while over
    /// budget. Called with no stripe locked.
    pub(crate) fn reserve(&self, path: &str, len: u64, counters: &Counters) -> Result<(), Error> {
        let mut l = self.ledger.lock();
        if self.over(&l, len) {
            counters.add(Count::BackpressureWait, 1);
            let since = l.passes;
            l.waiting += 1;
            while self.over(&l, len) {
                if let Some(last_error) = l.stalled.clone().filter(|_| l.passes > since) {
                    l.waiting -= 1;
                    return Err(Error::WriteBackStalled { path: path.to_string(), dirty_bytes: l.bytes, last_error });
                }
                l.urgent = true;
                self.work.notify_one();
                // Woken by a release, a pass that found the backend failing, or shutdown; the timeout
                // only bounds the cost of a lost wake-up.
                l = self.freed.wait_for(l, Duration::from_millis(100));
            }
            l.waiting -= 1;
        }
        if let Some(e) = l.claims.conflict(path) {
            return Err(e);
        }
        l.claims.add(path);
        l.bytes += len;
        Ok(())
    }

    /// Gives back a reservation that did not become dirty data (its write was refused after all).
    pub(crate) fn unreserve(&self, path: &str, len: u64) {
        let mut l = self.ledger.lock();
        l.bytes = l.bytes.saturating_sub(len);
        l.claims.remove(path);
        drop(l);
        self.freed.notify_all();
    }

    /// Whether `len` more bytes would exceed the budget (never when nothing is dirty, or at shutdown).
    fn over(&self, l: &Ledger, len: u64) -> bool {
        l.bytes > 0 && l.bytes.saturating_add(len) > self.max_bytes && !l.stop
    }

    /// Makes `data` the dirty content of the slot's path (reserved by [`reserve`](Self::reserve)); returns
    /// its modification time.
    pub(crate) fn store(&self, slot: &mut Slot<'_>, data: Bytes) -> SystemTime {
        let modified = SystemTime::now();
        let replaced = slot.set_dirty(data, Dirty { due: Instant::now() + self.delay, modified, attempts: 0 });
        let mut l = self.ledger.lock();
        match replaced {
            // It replaces older dirty data: one dirty file still; the older write's bytes and claim go.
            Some(old) => {
                l.bytes = l.bytes.saturating_sub(old);
                l.claims.remove(slot.path());
                drop(l);
                self.freed.notify_all();
            }
            None => {
                l.entries += 1;
                // Writers waiting for room may be waiting for exactly these bytes: have them written.
                if l.waiting > 0 {
                    l.urgent = true;
                    drop(l);
                    self.work.notify_one();
                }
            }
        }
        modified
    }

    /// Drops whatever the slot's path holds in memory (dirty data, pinned content): its content changed by
    /// another route or is unknown. True if dirty data was dropped.
    pub(crate) fn drop_held(&self, slot: &mut Slot<'_>) -> bool {
        let Some(len) = slot.replace_held() else { return false };
        self.release(slot.path(), len);
        true
    }

    /// `len` dirty bytes of `path` are gone (written or dropped).
    fn release(&self, path: &str, len: u64) {
        let mut l = self.ledger.lock();
        l.bytes = l.bytes.saturating_sub(len);
        l.entries = l.entries.saturating_sub(1);
        l.claims.remove(path);
        drop(l);
        self.freed.notify_all();
    }

    /// Writes the slot's dirty data, if any. `None` if it was not dirty.
    pub(crate) fn flush_slot(&self, env: &Env<'_>, slot: &mut Slot<'_>) -> Option<Result<(), Error>> {
        let (data, dirty) = slot.dirty()?;
        let (data, modified) = (data.clone(), dirty.modified);
        Some(match (env.store)(slot.path(), &data, modified) {
            Ok(()) => {
                let len = slot.mark_clean().unwrap_or(0);
                self.release(slot.path(), len);
                env.counters.add(Count::Flush, 1);
                env.counters.add(Count::FlushedBytes, len);
                Ok(())
            }
            Err(e) => {
                slot.flush_failed(|attempts| Instant::now() + backoff(attempts));
                env.counters.add(Count::FlushError, 1);
                Err(e)
            }
        })
    }

    /// Flushes `path` if it is dirty; `Ok(false)` if it was not.
    pub(crate) fn flush_path(&self, env: &Env<'_>, path: &str) -> Result<bool, Error> {
        let mut guard = env.locks.lock(path);
        self.flush_slot(env, &mut guard.slot()).transpose().map(|r| r.is_some())
    }

    fn has_dirty(&self) -> bool {
        self.ledger.lock().entries > 0
    }

    /// Writes every dirty file now; reports each that fails.
    pub(crate) fn flush_all(&self, env: &Env<'_>) -> Result<u64, Error> {
        if !self.has_dirty() {
            return Ok(0);
        }
        let (written, failures) = self.flush_paths(env, env.locks.dirty_paths(|_| true));
        if failures.is_empty() { Ok(written) } else { Err(Error::Flush { failures }) }
    }

    /// Flushes `paths` (those still dirty) with up to `flush_workers` threads; returns how many were
    /// written and every failure. Each file is written with its path locked, as always, so workers never
    /// write one file twice or out of order.
    fn flush_paths(&self, env: &Env<'_>, paths: Vec<Arc<str>>) -> (u64, Vec<FlushFailure>) {
        let next = AtomicUsize::new(0);
        let results = Mutex::new((0u64, Vec::new()));
        let work = || {
            // Relaxed: the counter only hands out distinct indices.
            while let Some(path) = paths.get(next.fetch_add(1, Relaxed)) {
                let outcome = self.flush_path(env, path);
                let mut r = results.lock();
                match outcome {
                    Ok(written) => r.0 += u64::from(written),
                    Err(e) => r.1.push(FlushFailure { path: path.to_string(), error: Box::new(e) }),
                }
            }
        };
        // Loom models run on loom threads only; flushing there stays on the calling thread.
        let workers = if cfg!(loom) { 1 } else { self.flush_workers.min(paths.len()) };
        if workers <= 1 {
            work();
        } else {
            run_on_threads(workers, &work);
        }
        results.into_inner()
    }

    /// Writes dirty files that are due (all of them if `urgent`).
    fn pass(&self, env: &Env<'_>, urgent: bool) -> Pass {
        if !self.has_dirty() {
            return Pass::default();
        }
        let now = Instant::now();
        let (written, failures) = self.flush_paths(env, env.locks.dirty_paths(|d| urgent || d.due <= now));
        Pass { written, last_error: failures.last().map(|f| f.error.to_string()) }
    }

    /// The flusher's loop: every tick (a quarter of the delay, 1–250 ms) it writes the files whose delay
    /// has passed, or everything when a writer is waiting for room; returns at [`stop`](Self::stop).
    pub(crate) fn run_flusher(&self, env: &Env<'_>) {
        let tick = (self.delay / 4).clamp(Duration::from_millis(1), Duration::from_millis(250));
        loop {
            let urgent = {
                let mut l = self.ledger.lock();
                if !l.urgent && !l.stop {
                    l = self.work.wait_for(l, tick);
                }
                if l.stop {
                    return;
                }
                std::mem::take(&mut l.urgent)
            };
            let pass = self.pass(env, urgent);
            let mut l = self.ledger.lock();
            l.passes += 1;
            if pass.written > 0 {
                // Each written file already woke the waiting writers through `release`.
                l.stalled = None;
            } else if let Some(e) = pass.last_error.filter(|_| urgent) {
                l.stalled = Some(e);
                drop(l);
                // Waiting writers must hear that the backend is failing.
                self.freed.notify_all();
            }
        }
    }

    /// Stops the flusher and releases waiting writers.
    pub(crate) fn stop(&self) {
        self.ledger.lock().stop = true;
        self.work.notify_all();
        self.freed.notify_all();
    }
}
