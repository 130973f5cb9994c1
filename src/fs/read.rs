//! Reads: whole files from the content cache or the backend; large files in chunks of one version.

use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::locks::{Chunks, Slot};
use super::stats::Count;
use super::{CacheFs, Error, Inner, OP_READ, path};

/// Where an open file's bytes come from.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Held whole (cached, dirty, pinned, or read just now).
    Whole(Bytes),
    /// Large: read chunk by chunk while its chunk generation is current.
    Chunked(Chunks),
}

impl CacheFs {
    /// The whole file. From memory when cached (no lock, no allocation); otherwise read from the
    /// backend once however many threads ask, and cached if it is below the large-file threshold.
    /// A large file is assembled from its (cached) chunks; prefer [`open`](Self::open) to stream it.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Bytes, Error> {
        let started = self.inner.start();
        let raw = path::as_str(path.as_ref())?;
        let result = match self.inner.cached(raw) {
            Some(b) => Ok(b),
            None => self.inner.read_slow(raw, 0, u64::MAX),
        };
        self.inner.record(OP_READ, started);
        result
    }

    /// `len` bytes from `offset` (fewer at the end of the file). Large files read only the chunks the
    /// range covers.
    pub fn read_range(&self, path: impl AsRef<Path>, offset: u64, len: u64) -> Result<Bytes, Error> {
        let started = self.inner.start();
        let raw = path::as_str(path.as_ref())?;
        let result = match self.inner.cached(raw) {
            Some(b) => Ok(slice(&b, offset, len)),
            None => self.inner.read_slow(raw, offset, len),
        };
        self.inner.record(OP_READ, started);
        result
    }
}

fn slice(b: &Bytes, offset: u64, len: u64) -> Bytes {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
    let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(b.len());
    b.slice(start..end)
}

impl Inner {
    /// The cached whole content of `raw` (the caller's string), counting a hit.
    #[inline]
    pub(crate) fn cached(&self, raw: &str) -> Option<Bytes> {
        let b = self.content.get(raw)?;
        self.hit(b.len());
        Some(b)
    }

    #[inline]
    fn hit(&self, len: usize) {
        self.counters.add(Count::ReadHit, 1);
        self.counters.add(Count::BytesFromCache, len as u64);
    }

    fn read_slow(&self, raw: &str, offset: u64, len: u64) -> Result<Bytes, Error> {
        let key = path::canonical(raw, false)?;
        match self.open(&key)? {
            Opened::Whole(b) => Ok(slice(&b, offset, len)),
            Opened::Chunked(chunks) => {
                let start = offset.min(chunks.len);
                self.read_chunks(&key, chunks, start, len.min(chunks.len - start))
            }
        }
    }

    /// Opens `key` (canonical) for reading: its whole content, or a chunk generation for a large file.
    pub(crate) fn open(&self, key: &str) -> Result<Opened, Error> {
        if let Some(b) = self.cached(key) {
            return Ok(Opened::Whole(b));
        }
        self.open_locked(&mut self.locks.lock(key).slot())
    }

    /// Opens `key` as [`open`](Self::open) does and pins a small file's content (see `locks.rs`) before
    /// its lock is released, so that what is pinned is the current content.
    pub(crate) fn open_pinned(&self, key: &str) -> Result<Opened, Error> {
        let mut guard = self.locks.lock(key);
        let mut slot = guard.slot();
        let opened = self.open_locked(&mut slot)?;
        if let Opened::Whole(data) = &opened {
            slot.pin(data);
        }
        Ok(opened)
    }

    /// [`open`](Self::open) with the path locked.
    fn open_locked(&self, slot: &mut Slot<'_>) -> Result<Opened, Error> {
        let key = slot.path();
        if let Some(held) = slot.held() {
            let data = held.clone();
            self.content.store(key, &data);
            self.hit(data.len());
            return Ok(Opened::Whole(data));
        }
        // Another reader may have filled it while we waited for the lock.
        if let Some(b) = self.cached(key) {
            return Ok(Opened::Whole(b));
        }
        let meta = self.metadata(slot)?;
        if self.content.is_large(meta.len) {
            return Ok(Opened::Chunked(self.content.generation(slot, meta.len)));
        }
        let read = self.content.fill(usize::try_from(meta.len).unwrap_or(0), |buf| self.backend.read(key, buf));
        let data = match read {
            Ok(data) => data,
            Err(e) => {
                // Whatever the backend has now, the cached metadata may not describe it.
                self.meta.invalidate(key);
                return Err(e);
            }
        };
        self.counters.add(Count::ReadMiss, 1);
        self.counters.add(Count::BytesFromBackend, data.len() as u64);
        if data.len() as u64 != meta.len {
            // Changed behind our back since its metadata was cached: trust the content, refresh the rest.
            self.meta.invalidate(key);
        }
        self.content.store(key, &data);
        Ok(Opened::Whole(data))
    }

    /// Chunk `idx` of large file `key` opened under `chunks`: from the cache, or from the backend if
    /// `chunks` is still the file's generation ([`Error::Modified`] if not). `buf` holds chunk keys.
    pub(crate) fn chunk(&self, key: &str, chunks: Chunks, idx: u64, buf: &mut String) -> Result<Bytes, Error> {
        if let Some(b) = self.content.chunk(buf, key, chunks, idx) {
            self.hit(b.len());
            return Ok(b);
        }
        let mut guard = self.locks.lock(key);
        if guard.slot().chunks() != Some(chunks) {
            return Err(Error::Modified { path: key.to_string() });
        }
        if let Some(b) = self.content.chunk(buf, key, chunks, idx) {
            self.hit(b.len());
            return Ok(b);
        }
        let (offset, want) = self.content.chunk_span(chunks.len, idx);
        let data = self.content.fill(want, |v| {
            v.resize(want, 0);
            match self.backend.read_range(key, offset, v)? {
                got if got == want => Ok(()),
                _ => Err(Error::Modified { path: key.to_string() }),
            }
        })?;
        self.counters.add(Count::ReadMiss, 1);
        self.counters.add(Count::BytesFromBackend, data.len() as u64);
        self.content.store_chunk(buf, key, chunks, idx, &data);
        Ok(data)
    }

    /// `len` bytes of large file `key` from `offset`, assembled from chunks of one generation.
    fn read_chunks(&self, key: &str, chunks: Chunks, offset: u64, len: u64) -> Result<Bytes, Error> {
        let mut out = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut buf = String::with_capacity(key.len() + path::CHUNK_SUFFIX);
        let (mut at, end) = (offset, offset + len);
        let size = self.content.chunk_size();
        while at < end {
            let idx = at / size;
            let chunk = self.chunk(key, chunks, idx, &mut buf)?;
            let from = (at - idx * size) as usize;
            let to = chunk.len().min(from + (end - at) as usize);
            if from >= to {
                break;
            }
            out.extend_from_slice(&chunk[from..to]);
            at += (to - from) as u64;
        }
        Ok(out.freeze())
    }
}
