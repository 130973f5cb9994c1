//! Writes and removals, in the three write modes.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;

use super::content;
use super::path::{self, checked, checked_dir};
use super::stats::Count;
use super::{CacheFs, Error, Inner, Metadata, OP_WRITE, WriteMode};

impl CacheFs {
    /// Stores `data` as the whole content of `path`, replacing any earlier content.
    ///
    /// - `WriteThrough`: returns once the backend has it; then it is cached.
    /// - `WriteBack`: returns once it is in memory and marked dirty (it may wait for the flusher when
    ///   dirty bytes are at `max_dirty_bytes`); the flusher writes it later. It is refused at once if no
    ///   flush could write it: the backend refuses the path ([`Backend::check`](super::Backend::check)),
    ///   or another pending write makes `path` a directory ([`Error::NotAFile`]) or its parent a file
    ///   ([`Error::NotADirectory`]).
    /// - `WriteAround`: returns once the backend has it; any cached copy is dropped.
    ///
    /// On error nothing changed: the previous content is still what reads return (in write-through and
    /// write-around the backend's atomic write guarantees this on disk too; a backend that fails after
    /// writing leaves the new content, which the next read fetches).
    pub fn write(&self, path: impl AsRef<Path>, data: impl Into<Bytes>) -> Result<(), Error> {
        let key = checked(path.as_ref())?;
        self.inner.write(&key, data.into())
    }

    /// Writes every dirty file to the backend now. `Ok` means every write acknowledged before this call
    /// is on the backend. On failure the failing files stay dirty (and are retried by the flusher); the
    /// error lists each of them. Other modes have nothing to flush.
    pub fn flush(&self) -> Result<(), Error> {
        let inner = &self.inner;
        inner.with_env(|env| inner.write_back.flush_all(env)).map(|_| ())
    }

    /// Removes the file from the backend, the dirty set and the cache. A file that existed only as dirty
    /// write-back data counts as removed. If the backend refuses, the file's content is unchanged (its
    /// cached copies are dropped: the backend may have removed it before failing).
    pub fn remove(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let key = checked(path.as_ref())?;
        let mut guard = self.inner.locks.lock(&key);
        let mut slot = guard.slot();
        let dirty = slot.dirty().is_some();
        match self.inner.backend.remove(&key) {
            Err(e) if !(dirty && e.is_not_found()) => {
                // Dirty data is the newest content and stays; anything else may be stale now.
                if !dirty {
                    self.inner.write_back.drop_held(&mut slot);
                }
                self.inner.forget(&mut slot, true);
                return Err(e);
            }
            _ => {}
        }
        self.inner.replaced(&mut slot);
        self.inner.counters.add(Count::Removed, 1);
        Ok(())
    }

    /// Moves a file to `to`, replacing any file there. Dirty data of both paths is written first (the
    /// move happens on the backend); then the move, after which cached copies of both paths are dropped,
    /// whether it succeeded or not (it may have taken effect before failing). If the move fails, the
    /// backend holds each path's latest content, and reads fetch it.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<(), Error> {
        let (from, to) = (checked(from.as_ref())?, checked(to.as_ref())?);
        if from == to {
            return self.stat(&*from).map(|_| ());
        }
        let inner = &self.inner;
        // The move may create `to`'s directories on the backend: no write-back write may be acknowledged
        // meanwhile that would need one of them to be a file.
        let _claim = inner.write_back.claim(&to)?;
        // Both paths locked together: no flush of `to`'s old data can land after the move.
        let mut pair = inner.locks.lock_pair(&from, &to);
        inner.with_env(|env| {
            let wb = &inner.write_back;
            wb.flush_slot(env, &mut pair.a()).transpose()?;
            wb.flush_slot(env, &mut pair.b()).transpose()
        })?;
        let moved = inner.backend.rename(&from, &to);
        inner.replaced(&mut pair.a());
        inner.replaced(&mut pair.b());
        moved
    }

    /// Removes directory `dir` and every file below it (`""`: every file) from the backend, the dirty set
    /// and the cache; a `dir` that names a file removes that file, as `rm -r` does. Returns how many files
    /// went. Every path is locked meanwhile, so no flush can bring
    /// a file back. If the backend fails part-way, dirty data is kept (it is flushed later) and everything
    /// else held or cached below `dir` is dropped (some may be gone from the backend).
    pub fn remove_all(&self, dir: impl AsRef<Path>) -> Result<u64, Error> {
        let dir = checked_dir(dir.as_ref())?;
        let inner = &self.inner;
        let mut all = inner.locks.lock_all();
        // Dirty files below `dir` that the backend does not have yet count as removed too: one `stat`
        // each (dirty files are few), rather than listing the whole tree on top of the backend's walk.
        let dirty = all.dirty_paths(|p| path::is_within(p, &dir));
        let only_in_memory =
            dirty.iter().filter(|p| inner.backend.stat(p).is_err_and(|e| e.is_not_found())).count() as u64;
        let removed = inner.backend.remove_all(&dir);
        for p in all.paths(|p| path::is_within(p, &dir)) {
            let mut slot = all.slot(&p);
            if removed.is_ok() || slot.dirty().is_none() {
                inner.write_back.drop_held(&mut slot);
            }
            slot.take_chunks();
        }
        inner.forget_where(|p| path::is_within(p, &dir));
        drop(all);
        let removed = removed? + only_in_memory;
        inner.counters.add(Count::Removed, removed);
        Ok(removed)
    }
}

impl Inner {
    /// Stores `data` as `key`'s content in the configured mode (see [`CacheFs::write`]).
    pub(crate) fn write(&self, key: &str, data: Bytes) -> Result<(), Error> {
        let started = self.start();
        let data = content::compact(data);
        let len = data.len() as u64;
        let result = match self.mode {
            WriteMode::WriteBack { .. } => self.write_back_write(key, data),
            WriteMode::WriteThrough | WriteMode::WriteAround => {
                let mut guard = self.locks.lock(key);
                let mut slot = guard.slot();
                let written = self.backend.write(key, &data);
                // Whatever happened, what was held or cached may no longer match the backend.
                self.replaced(&mut slot);
                written.map(|()| {
                    if self.mode == WriteMode::WriteThrough {
                        self.content.store(key, &data);
                    }
                    self.meta.put(key, Metadata { len, modified: SystemTime::now() });
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

    /// Acknowledges a write-back write: within the dirty budget, checked against the pending writes and
    /// then the backend, then held dirty and cached.
    fn write_back_write(&self, key: &str, data: Bytes) -> Result<(), Error> {
        let len = data.len() as u64;
        // Claimed first, checked second: a conflicting write holds its claim until its flush has
        // changed the backend, so either this claim sees that one, or this check sees the backend after it.
        self.write_back.reserve(key, len, &self.counters)?;
        if let Err(e) = self.backend.check(key) {
            self.write_back.unreserve(key, len);
            return Err(e);
        }
        let mut guard = self.locks.lock(key);
        let mut slot = guard.slot();
        self.forget(&mut slot, true);
        let modified = self.write_back.store(&mut slot, data.clone());
        self.content.store(key, &data);
        self.meta.put(key, Metadata { len, modified });
        Ok(())
    }
}
