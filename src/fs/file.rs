//! File handles: a reader with `Read + Seek`, a writer with `Write + Seek`.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::locks::Chunks;
use super::path::{self, checked};
use super::read::Opened;
use super::stats::Count;
use super::{BackendFile, CacheFs, Error, FlushFailure, Inner, Metadata};

/// An open file for reading, from [`CacheFs::open`].
///
/// A small file is a snapshot: the content at `open`, whatever is written later. A large file is read
/// chunk by chunk (each chunk cached), so memory stays bounded however large the file; every byte comes
/// from the version that was current at `open`: if the file is written or removed while it is being
/// read, a later read may fail with [`Error::Modified`] (as an `io::Error` whose source is that error),
/// never return bytes of another version.
#[derive(Debug)]
pub struct FileReader {
    inner: Arc<Inner>,
    path: String,
    source: Source,
    len: u64,
    pos: u64,
}

#[derive(Debug)]
enum Source {
    Whole(Bytes),
    Chunked { chunks: Chunks, current: Option<(u64, Bytes)>, key: String },
}

impl CacheFs {
    /// Opens `path` for reading (see [`FileReader`]).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<FileReader, Error> {
        FileReader::open(&self.inner, path.as_ref())
    }

    /// Starts writing `path` (see [`FileWriter`]): nothing is stored until the writer is closed. Refused
    /// at once if the backend would refuse the path, or (write-back) another pending write conflicts.
    pub fn create(&self, path: impl AsRef<Path>) -> Result<FileWriter<'_>, Error> {
        let key = checked(path.as_ref())?.into_owned();
        self.inner.backend.check(&key)?;
        self.inner.write_back.conflict(&key)?;
        Ok(FileWriter { fs: self, path: key, buf: Vec::new(), stream: None, pos: 0, len: 0, failed: None })
    }
}

impl FileReader {
    fn open(inner: &Arc<Inner>, path: &Path) -> Result<FileReader, Error> {
        // Fast path: a cached whole file needs neither a copy of the path nor a lock.
        let (path, len, source) = match path.to_str().and_then(|raw| inner.cached(raw)) {
            Some(b) => (String::new(), b.len() as u64, Source::Whole(b)),
            None => {
                let key = checked(path)?.into_owned();
                match inner.open(&key)? {
                    Opened::Whole(b) => (key, b.len() as u64, Source::Whole(b)),
                    Opened::Chunked(chunks) => {
                        // Room for the chunk key suffix so that building chunk keys never reallocates.
                        let buf = String::with_capacity(key.len() + path::CHUNK_SUFFIX);
                        (key, chunks.len, Source::Chunked { chunks, current: None, key: buf })
                    }
                }
            }
        };
        Ok(FileReader { inner: Arc::clone(inner), path, source, len, pos: 0 })
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes at the current position, up to the end of the current chunk (whole file if small).
    fn window(&mut self) -> Result<(Bytes, usize), Error> {
        match &mut self.source {
            Source::Whole(b) => Ok((b.clone(), self.pos as usize)),
            Source::Chunked { chunks, current, key } => {
                let cs = self.inner.content.chunk_size();
                let idx = self.pos / cs;
                let chunk = match current {
                    Some((i, b)) if *i == idx => b.clone(),
                    _ => {
                        let b = self.inner.chunk(&self.path, *chunks, idx, key)?;
                        *current = Some((idx, b.clone()));
                        b
                    }
                };
                Ok((chunk, (self.pos - idx * cs) as usize))
            }
        }
    }
}

impl Read for FileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let (bytes, at) = self.window()?;
        let n = out.len().min(bytes.len().saturating_sub(at));
        out[..n].copy_from_slice(&bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// The new position for `from`, or an `InvalidInput` error for a position before the start.
fn seek_to(pos: u64, len: u64, from: SeekFrom) -> io::Result<u64> {
    let target = match from {
        SeekFrom::Start(n) => Some(n),
        SeekFrom::End(d) => len.checked_add_signed(d),
        SeekFrom::Current(d) => pos.checked_add_signed(d),
    };
    target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the file"))
}

impl Seek for FileReader {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        self.pos = seek_to(self.pos, self.len, from)?;
        Ok(self.pos)
    }
}

/// A file being written, from [`CacheFs::create`]: a transaction on the file's content.
///
/// - [`close`](Self::close) stores the content, replacing the old content as
///   [`CacheFs::write`] does (and, in write-back mode with flush-on-close, writes it to the backend).
/// - Nothing is visible before `close`: reads return the old content.
/// - A writer whose write, seek or flush failed is *failed*: later writes fail too, and `close` returns
///   [`Error::WriterFailed`] and stores nothing, so a failure part-way can never leave a truncated file.
/// - [`abort`](Self::abort), or dropping the writer without `close` (as `?` does on an error), discards
///   everything written and leaves the old content. Dropping is counted in
///   [`FsStats::abandoned_writers`](super::FsStats::abandoned_writers).
///
/// Small files are buffered in memory. A file that grows past the large-file threshold is streamed to
/// the backend instead ([`Backend::create`](super::Backend::create): for `OsBackend` a temporary file
/// beside the target), so memory stays bounded however large it gets; it replaces the old content,
/// atomically, at `close`, in every write mode.
pub struct FileWriter<'a> {
    fs: &'a CacheFs,
    path: String,
    buf: Vec<u8>,
    /// Set once the file outgrew the large-file threshold.
    stream: Option<Box<dyn BackendFile + 'a>>,
    pos: u64,
    len: u64,
    /// Why the writer failed, once one of its operations did.
    failed: Option<String>,
}

impl std::fmt::Debug for FileWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("streaming", &self.stream.is_some())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl FileWriter<'_> {
    /// Stores the content (see [`FileWriter`]). [`Error::Flush`] means the content was stored (it is
    /// dirty and will be retried) but could not be written to the backend yet. Any other error means this
    /// layer did not store it; a streamed file whose backend commit failed *after* taking effect (say,
    /// the directory fsync failed) may nonetheless be on the backend, and reads then return what the
    /// backend holds (cached copies are dropped on every failure).
    pub fn close(mut self) -> Result<(), Error> {
        if let Some(reason) = self.failed.take() {
            return Err(Error::WriterFailed { path: std::mem::take(&mut self.path), reason });
        }
        // From here on the writer is spent, whatever happens: drop has nothing left to discard.
        self.failed = Some(String::new());
        match self.stream.take() {
            Some(stream) => self.commit(stream),
            None => self.store(),
        }
    }

    /// Discards everything written; the old content stays. (Dropping the writer does the same.)
    pub fn abort(mut self) {
        self.failed = Some(String::new());
    }

    fn store(&mut self) -> Result<(), Error> {
        let inner = &self.fs.inner;
        inner.write(&self.path, Bytes::from(std::mem::take(&mut self.buf)))?;
        if inner.write_back.flushes_on_close() {
            // Stored (dirty) already: a failure here is a flush failure, and says so.
            if let Err(error) = inner.with_env(|env| inner.write_back.flush_path(env, &self.path)) {
                let failure = FlushFailure { path: self.path.clone(), error: Box::new(error) };
                return Err(Error::Flush { failures: vec![failure] });
            }
        }
        Ok(())
    }

    /// Commits a streamed file with its path locked (as every backend change of a path is). Dirty data
    /// of the path is written first, so that nothing older can land after the new file; then, whether
    /// the commit succeeded or not (it may have taken effect before failing), cached copies are dropped.
    fn commit(&mut self, stream: Box<dyn BackendFile + '_>) -> Result<(), Error> {
        let inner = &self.fs.inner;
        let _claim = inner.write_back.claim(&self.path)?;
        let mut guard = inner.locks.lock(&self.path);
        let mut slot = guard.slot();
        inner.with_env(|env| inner.write_back.flush_slot(env, &mut slot).transpose())?;
        let committed = stream.commit();
        inner.replaced(&mut slot);
        committed?;
        inner.meta.put(&self.path, Metadata { len: self.len, modified: SystemTime::now() });
        inner.counters.add(Count::Write, 1);
        inner.counters.add(Count::BytesWritten, self.len);
        Ok(())
    }

    /// Moves the buffered content into a backend stream once the file outgrows the threshold.
    fn spill(&mut self) -> io::Result<()> {
        let mut stream = self.fs.inner.backend.create(&self.path)?;
        stream.write_all(&self.buf)?;
        stream.seek(SeekFrom::Start(self.pos))?;
        self.buf = Vec::new();
        self.stream = Some(stream);
        Ok(())
    }

    /// Runs `op` unless the writer has failed; a failure fails the writer.
    fn guarded<T>(&mut self, op: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if let Some(reason) = &self.failed {
            let e = Error::WriterFailed { path: self.path.clone(), reason: reason.clone() };
            return Err(io::Error::other(e));
        }
        op(self).inspect_err(|e| self.failed = Some(e.to_string()))
    }
}

impl Write for FileWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.guarded(|w| {
            let end = w.pos.checked_add(data.len() as u64).ok_or_else(|| io::Error::other("file too large"))?;
            if w.stream.is_none() && w.fs.inner.content.is_large(end) {
                w.spill()?;
            }
            let n = match &mut w.stream {
                Some(stream) => stream.write(data)?,
                None => {
                    let (start, end) = (w.pos as usize, end as usize);
                    if end > w.buf.len() {
                        w.buf.resize(end, 0);
                    }
                    w.buf[start..end].copy_from_slice(data);
                    data.len()
                }
            };
            w.pos += n as u64;
            w.len = w.len.max(w.pos);
            Ok(n)
        })
    }

    /// Flushes a streamed file to the backend's buffers. Stores nothing: only `close` does.
    fn flush(&mut self) -> io::Result<()> {
        self.guarded(|w| w.stream.as_mut().map_or(Ok(()), |s| s.flush()))
    }
}

impl Seek for FileWriter<'_> {
    /// Seeking past the end and writing leaves a gap of zeros, as on a file system.
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        self.guarded(|w| {
            let pos = seek_to(w.pos, w.len, from)?;
            if let Some(stream) = &mut w.stream {
                stream.seek(SeekFrom::Start(pos))?;
            }
            w.pos = pos;
            Ok(pos)
        })
    }
}

impl Drop for FileWriter<'_> {
    /// Discards: the stream (if any) is dropped uncommitted, which leaves the old content.
    fn drop(&mut self) {
        if self.failed.is_none() {
            self.fs.inner.counters.add(Count::AbandonedWriter, 1);
        }
    }
}
