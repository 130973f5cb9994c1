//! Writes and removals, in the three write modes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::resident::{Dirty, Resident};
use super::stats::Count;
use super::{CacheFs, Error, Inner, Metadata, OP_WRITE, WriteMode, checked, checked_dir, path};

impl CacheFs {
    /// Stores `data` as the whole content of `path`, replacing any earlier content.
    ///
    /// - `WriteThrough`: returns once the backend has it; then it is cached.
    /// - `WriteBack`: returns once it is in memory and marked dirty (it may wait for the flusher when
    ///   dirty bytes are at `max_dirty_bytes`); the flusher writes it later.
    /// - `WriteAround`: returns once the backend has it; any cached copy is dropped.
    ///
    /// On error nothing changed: the previous content is still what reads return (in write-through and
    /// write-around the backend's atomic write guarantees this on disk too).
    pub fn write(&self, path: impl AsRef<Path>, data: impl Into<Bytes>) -> Result<(), Error> {
        let key = checked(path.as_ref())?;
        self.inner.write(&key, data.into())
    }

    /// Removes the file from the backend, the dirty set and the cache. A file that existed only as dirty
    /// write-back data counts as removed. If the backend refuses, nothing changed.
    pub fn remove(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let key = checked(path.as_ref())?;
        let mut stripe = self.inner.stripes.lock(&key);
        let dirty = stripe.resident.get(&*key).is_some_and(|r| r.dirty.is_some());
        match self.inner.backend.remove(&key) {
            Ok(()) => {}
            Err(e) if dirty && e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.inner.discard_dirty(&mut stripe, &key);
        self.inner.forget_locked(&mut stripe, &key, true);
        self.inner.counters.add(Count::Removed, 1);
        Ok(())
    }

    /// Moves a file to `to`, replacing any file there. Dirty data of `from` is written first (the move
    /// happens on the backend); once the move succeeds, dirty data of `to` is discarded (it was replaced)
    /// and cached copies of both paths are dropped. If it fails, nothing changed.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<(), Error> {
        let (from, to) = (checked(from.as_ref())?, checked(to.as_ref())?);
        if from == to {
            return self.stat(&*from).map(|_| ());
        }
        // Both paths' stripes, held together: no flush of `to`'s old dirty data can land after the move.
        let (mut from_stripe, mut to_stripe) = self.inner.stripes.lock_pair(&from, &to);
        if let Some(Err(e)) = self.inner.flush_locked(&mut from_stripe, &from) {
            return Err(e);
        }
        self.inner.backend.rename(&from, &to)?;
        let target = match to_stripe.as_deref_mut() {
            Some(stripe) => stripe,
            None => &mut *from_stripe,
        };
        self.inner.discard_dirty(target, &to);
        self.inner.forget_locked(target, &to, true);
        self.inner.forget_locked(&mut from_stripe, &from, true);
        Ok(())
    }

    /// Removes directory `dir` and every file below it (`""`: every file) from the backend, the dirty set
    /// and the cache. Returns how many files went. Every stripe is held meanwhile, so no flush can bring
    /// a file back. If the backend fails part-way, dirty data is kept (it is flushed later) and cached
    /// copies below `dir` are dropped (some may be gone from the backend).
    pub fn remove_all(&self, dir: impl AsRef<Path>) -> Result<u64, Error> {
        let dir = checked_dir(dir.as_ref())?;
        let mut stripes: Vec<_> = self.inner.stripes.each().collect();
        // Dirty files below `dir` that the backend does not have yet count as removed too: one `stat`
        // each (dirty files are few), rather than listing the whole tree on top of the backend's walk.
        let mut only_in_memory = 0;
        for stripe in &stripes {
            for (key, _) in stripe.resident.iter().filter(|(k, r)| r.dirty.is_some() && path::is_within(k, &dir)) {
                if self.inner.backend.stat(key).is_err_and(|e| e.is_not_found()) {
                    only_in_memory += 1;
                }
            }
        }
        let removed = match self.inner.backend.remove_all(&dir) {
            Ok(n) => n,
            Err(e) => {
                self.inner.invalidate_where(|p| path::is_within(p, &dir));
                return Err(e);
            }
        };
        for stripe in &mut stripes {
            let gone: Vec<Arc<str>> = stripe.resident.keys().filter(|k| path::is_within(k, &dir)).cloned().collect();
            for key in gone {
                self.inner.discard_dirty(stripe, &key);
                stripe.resident.remove(&key);
            }
            stripe.chunked.retain(|k, _| !path::is_within(k, &dir));
        }
        self.inner.invalidate_where(|p| path::is_within(p, &dir));
        drop(stripes);
        self.inner.counters.add(Count::Removed, removed + only_in_memory);
        Ok(removed + only_in_memory)
    }
}

impl Inner {
    pub(crate) fn write(&self, key: &str, data: Bytes) -> Result<(), Error> {
        let started = self.start();
        let len = data.len() as u64;
        let result = match self.mode {
            WriteMode::WriteBack { delay, .. } => self.write_back(key, data, delay),
            WriteMode::WriteThrough | WriteMode::WriteAround => {
                let mut stripe = self.stripes.lock(key);
                let written = self.backend.write(key, &data);
                // Whatever happened, the cached copy may no longer match the backend.
                self.forget_locked(&mut stripe, key, true);
                written.map(|()| {
                    let key: Arc<str> = Arc::from(key);
                    if self.mode == WriteMode::WriteThrough {
                        self.cache_whole(&key, &data);
                    }
                    self.meta.put(&key, Metadata { len, modified: SystemTime::now() });
                })
            }
        };
        if result.is_ok() {
            self.counters.add(Count::Write, 1);
            self.counters.add(Count::BytesWritten, len);
        }
        self.record(OP_WRITE, started);
        result
    }

    fn write_back(&self, key: &str, data: Bytes, delay: std::time::Duration) -> Result<(), Error> {
        let len = data.len() as u64;
        self.backend.check(key)?;
        self.dirty.reserve(key, len, &self.counters)?;
        let mut stripe = self.stripes.lock(key);
        self.forget_locked(&mut stripe, key, true);
        let modified = SystemTime::now();
        let dirty = Dirty { due: Instant::now() + delay, modified, attempts: 0 };
        let key: Arc<str> = Arc::from(key);
        // A warm's pins survive the new content.
        let pins = stripe.resident.get(&*key).map_or(0, |r| r.pins);
        let previous =
            stripe.resident.insert(Arc::clone(&key), Resident { data: data.clone(), dirty: Some(dirty), pins });
        match previous.and_then(|p| p.dirty.map(|_| p.data.len() as u64)) {
            // It replaces older dirty data: one dirty file still, with the old bytes' budget returned.
            Some(old_len) => self.dirty.release(old_len, 0),
            None => self.dirty.add_entry(),
        }
        self.cache_whole(&key, &data);
        self.meta.put(&key, Metadata { len, modified });
        Ok(())
    }

    /// Drops `key`'s dirty data, if any (its stripe locked), returning its budget. True if it was dirty.
    pub(crate) fn discard_dirty(&self, stripe: &mut super::resident::Stripe, key: &str) -> bool {
        let Some(r) = stripe.resident.get_mut(key) else { return false };
        let Some(_) = r.dirty.take() else { return false };
        let len = r.data.len() as u64;
        stripe.tidy(key);
        self.dirty.release(len, 1);
        true
    }
}
