//! Reads: whole files from the content cache or the backend; large files in cached chunks.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};

use super::resident::{Chunked, Stripe};
use super::stats::Count;
use super::{CacheFs, Error, Inner, OP_READ, checked, path};

/// The cache key of chunk `idx` of `path`, built in `buf`. NUL cannot occur in a path, so chunk keys
/// never collide with file keys (and a caller's string containing NUL is refused before any lookup).
pub(crate) fn chunk_key<'a>(buf: &'a mut String, path: &str, idx: u64) -> &'a str {
    buf.clear();
    buf.push_str(path);
    buf.push('\0');
    let _ = write!(buf, "{idx}");
    buf
}

/// The file a cache key belongs to.
pub(crate) fn file_of(key: &str) -> &str {
    key.split_once('\0').map_or(key, |(file, _)| file)
}

/// Where an open file's bytes come from.
#[derive(Debug)]
pub(crate) enum Opened {
    /// Held whole (cached, dirty, or read just now).
    Whole(Bytes),
    /// Large: read chunk by chunk while `generation` is current.
    Chunked { generation: u64, len: u64 },
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
            None => self.inner.read_slow(raw),
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
            None => self.inner.read_range_slow(raw, offset, len),
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
    /// The cached whole content of `raw`, counting a hit. Only canonical paths are keys, so a hit means
    /// `raw` was valid; NUL is refused first because chunk keys contain it.
    #[inline]
    pub(crate) fn cached(&self, raw: &str) -> Option<Bytes> {
        if raw.as_bytes().contains(&0) {
            return None;
        }
        self.cached_key(raw)
    }

    /// The cached entry under `key` (a file or chunk key), counting a hit.
    #[inline]
    fn cached_key(&self, key: &str) -> Option<Bytes> {
        let b = self.data.get(key)?;
        self.hit(b.len());
        Some(b)
    }

    #[inline]
    fn hit(&self, len: usize) {
        self.counters.add(Count::ReadHit, 1);
        self.counters.add(Count::BytesFromCache, len as u64);
    }

    fn read_slow(&self, raw: &str) -> Result<Bytes, Error> {
        let key = path::canonical(raw, false)?;
        match self.open_locked(&key)? {
            Opened::Whole(b) => Ok(b),
            Opened::Chunked { generation, len } => self.read_chunks(&key, generation, len, 0, len),
        }
    }

    fn read_range_slow(&self, raw: &str, offset: u64, len: u64) -> Result<Bytes, Error> {
        let key = path::canonical(raw, false)?;
        match self.open_locked(&key)? {
            Opened::Whole(b) => Ok(slice(&b, offset, len)),
            Opened::Chunked { generation, len: file_len } => {
                let start = offset.min(file_len);
                self.read_chunks(&key, generation, file_len, start, len.min(file_len - start))
            }
        }
    }

    /// Opens `key` (canonical) for reading: its whole content, or a chunk generation for a large file.
    pub(crate) fn open_locked(&self, key: &str) -> Result<Opened, Error> {
        if let Some(b) = self.cached(key) {
            return Ok(Opened::Whole(b));
        }
        let mut stripe = self.stripes.lock(key);
        if let Some(r) = stripe.resident.get(key) {
            let data = r.data.clone();
            self.cache_whole(&Arc::from(key), &data);
            self.hit(data.len());
            return Ok(Opened::Whole(data));
        }
        // Another reader may have filled it while we waited for the stripe.
        if let Some(b) = self.cached(key) {
            return Ok(Opened::Whole(b));
        }
        let meta = self.metadata_locked(&stripe, key)?;
        if meta.len > self.threshold {
            return Ok(Opened::Chunked {
                generation: self.chunk_generation(&mut stripe, key, meta.len),
                len: meta.len,
            });
        }
        let mut buf = self.pool.take(usize::try_from(meta.len).unwrap_or(0));
        self.backend.read(key, buf.vec())?;
        let data = buf.freeze();
        self.counters.add(Count::ReadMiss, 1);
        self.counters.add(Count::BytesFromBackend, data.len() as u64);
        let key: Arc<str> = Arc::from(key);
        if data.len() as u64 != meta.len {
            // Changed behind our back since its metadata was cached: trust the content, refresh the rest.
            self.meta.invalidate(&key);
        }
        if data.len() as u64 > self.threshold {
            return Ok(Opened::Whole(data));
        }
        self.cache_whole(&key, &data);
        Ok(Opened::Whole(data))
    }

    /// The generation under which `key`'s chunks are cached, recording one if there is none (or the
    /// recorded length is stale).
    fn chunk_generation(&self, stripe: &mut Stripe, key: &str, len: u64) -> u64 {
        if let Some(c) = stripe.chunked.get(key) {
            if c.len == len {
                return c.generation;
            }
            self.forget_locked(stripe, key, true);
        }
        let generation = self.generations.fetch_add(1, Relaxed);
        stripe.chunked.insert(Arc::from(key), Chunked { generation, len });
        generation
    }

    /// Chunk `idx` of large file `key` opened at `generation` (`len` bytes long). `buf` holds the key.
    pub(crate) fn chunk(
        &self,
        key: &str,
        generation: u64,
        len: u64,
        idx: u64,
        buf: &mut String,
    ) -> Result<Bytes, Error> {
        let ckey = chunk_key(buf, key, idx);
        if let Some(b) = self.cached_key(ckey) {
            return Ok(b);
        }
        let stripe = self.stripes.lock(key);
        if stripe.chunked.get(key).map(|c| c.generation) != Some(generation) {
            return Err(Error::Modified { path: key.to_string() });
        }
        if let Some(b) = self.cached_key(ckey) {
            return Ok(b);
        }
        let offset = idx * self.chunk_size;
        let want = self.chunk_size.min(len.saturating_sub(offset)) as usize;
        let mut pooled = self.pool.take(want);
        let v = pooled.vec();
        v.resize(want, 0);
        let got = self.backend.read_range(key, offset, v)?;
        if got != want {
            return Err(Error::Modified { path: key.to_string() });
        }
        let data = pooled.freeze();
        self.counters.add(Count::ReadMiss, 1);
        self.counters.add(Count::BytesFromBackend, data.len() as u64);
        self.data.insert(Arc::from(ckey), data.clone());
        drop(stripe);
        Ok(data)
    }

    /// `len` bytes of large file `key` (`file_len` long) from `offset`, assembled from chunks.
    fn read_chunks(&self, key: &str, generation: u64, file_len: u64, offset: u64, len: u64) -> Result<Bytes, Error> {
        let mut out = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut buf = String::with_capacity(key.len() + 21);
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let idx = at / self.chunk_size;
            let chunk = self.chunk(key, generation, file_len, idx, &mut buf)?;
            let from = (at - idx * self.chunk_size) as usize;
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

/// Reads for [`FileReader`](super::FileReader) and the warm code, which hold a canonical path.
impl Inner {
    pub(crate) fn open_path(&self, path: &Path) -> Result<(String, Opened), Error> {
        let key = checked(path)?.into_owned();
        let opened = self.open_locked(&key)?;
        Ok((key, opened))
    }
}
