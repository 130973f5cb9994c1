//! File handles: a reader with `Read + Seek`, a writer with `Write + Seek`.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::read::Opened;
use super::stats::Count;
use super::{BackendFile, CacheFs, Error, FlushFailure, Inner, Metadata, WriteMode, checked};

/// An open file for reading, from [`CacheFs::open`].
///
/// A small file is a snapshot: the content at `open`, whatever is written later. A large file is read
/// chunk by chunk (each chunk cached), so memory stays bounded however large the file; if the file is
/// written or removed while it is being read, the next chunk read fails with [`Error::Modified`]
/// (as an `io::Error` whose source is that error) rather than mixing versions.
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
    Chunked { generation: u64, current: Option<(u64, Bytes)>, key: String },
}

impl CacheFs {
    /// Opens `path` for reading (see [`FileReader`]).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<FileReader, Error> {
        FileReader::open(&self.inner, path.as_ref())
    }

    /// Creates (or truncates) `path` for writing. Nothing is stored until the writer is flushed or
    /// closed; then the whole content is written as by [`write`](Self::write).
    pub fn create(&self, path: impl AsRef<Path>) -> Result<FileWriter<'_>, Error> {
        let key = checked(path.as_ref())?.into_owned();
        self.inner.backend.check(&key)?;
        Ok(FileWriter { fs: self, path: key, buf: Vec::new(), stream: None, pos: 0, len: 0, unsaved: true })
    }
}

impl FileReader {
    pub(crate) fn open(inner: &Arc<Inner>, path: &Path) -> Result<FileReader, Error> {
        // Fast path: a cached whole file needs neither a copy of the path nor a lock.
        let (path, len, source) = match path.to_str().and_then(|raw| inner.cached(raw)) {
            Some(b) => (String::new(), b.len() as u64, Source::Whole(b)),
            None => {
                let (key, opened) = inner.open_path(path)?;
                match opened {
                    Opened::Whole(b) => (key, b.len() as u64, Source::Whole(b)),
                    Opened::Chunked { generation, len } => {
                        // Room for `path\0<index>` so that building chunk keys never reallocates.
                        let buf = String::with_capacity(key.len() + 21);
                        (key, len, Source::Chunked { generation, current: None, key: buf })
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
            Source::Chunked { generation, current, key } => {
                let cs = self.inner.chunk_size;
                let idx = self.pos / cs;
                let chunk = match current {
                    Some((i, b)) if *i == idx => b.clone(),
                    _ => {
                        let b = self.inner.chunk(&self.path, *generation, self.len, idx, key)?;
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

/// A file being written, from [`CacheFs::create`].
///
/// Small files are buffered in memory: `flush` (the `io::Write` one) stores the content so far, and
/// [`close`](Self::close) stores it and, in write-back mode with flush-on-close, writes it to the backend.
/// A file that grows past the large-file threshold is streamed to the backend instead
/// ([`Backend::create`](super::Backend::create): for `OsBackend` a temporary file beside the target), so
/// memory stays bounded however large it gets; it replaces the old content, atomically, only at `close`,
/// in every write mode, and its cached copies are dropped then.
///
/// Dropping a writer stores an unsaved small file or commits a streamed one, but can only count a
/// failure: call `close` to see errors.
pub struct FileWriter<'a> {
    fs: &'a CacheFs,
    path: String,
    buf: Vec<u8>,
    /// Set once the file outgrew the large-file threshold.
    stream: Option<Box<dyn BackendFile + 'a>>,
    pos: u64,
    len: u64,
    unsaved: bool,
}

impl std::fmt::Debug for FileWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("streaming", &self.stream.is_some())
            .finish_non_exhaustive()
    }
}

impl FileWriter<'_> {
    /// Stores the content and, with flush-on-close in write-back mode, writes it to the backend. A
    /// streamed file is committed to the backend. [`Error::Flush`] means the content was stored (it
    /// is dirty and will be retried) but could not be written to the backend yet; any other error
    /// means nothing was stored.
    pub fn close(mut self) -> Result<(), Error> {
        let result = self.finish();
        // One attempt: a close that reported failure must not store the file after all when dropped.
        self.unsaved = false;
        result
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.stream.is_some() {
            return self.commit();
        }
        self.save()?;
        if self.fs.inner.flush_on_close && matches!(self.fs.inner.mode, WriteMode::WriteBack { .. }) {
            // Stored (dirty) already: a failure here is a flush failure, and says so.
            if let Err(error) = self.fs.inner.flush_one(&self.path) {
                let failure = FlushFailure { path: self.path.clone(), error: Box::new(error) };
                return Err(Error::Flush { failures: vec![failure] });
            }
        }
        Ok(())
    }

    fn save(&mut self) -> Result<(), Error> {
        if self.unsaved {
            self.fs.inner.write(&self.path, Bytes::copy_from_slice(&self.buf))?;
            self.unsaved = false;
        }
        Ok(())
    }

    /// Commits a streamed file with its path's stripe locked (as every backend write of a path is):
    /// older dirty data is superseded, cached copies go, metadata is the new file's.
    fn commit(&mut self) -> Result<(), Error> {
        let Some(stream) = self.stream.take() else { return Ok(()) };
        // One attempt: the stream is consumed either way, and a failed commit must not fall back to
        // storing the (emptied) buffer when the writer is dropped.
        self.unsaved = false;
        let inner = &self.fs.inner;
        let mut stripe = inner.stripes.lock(&self.path);
        stream.commit()?;
        inner.discard_dirty(&mut stripe, &self.path);
        inner.forget_locked(&mut stripe, &self.path, true);
        inner.meta.put(&self.path, Metadata { len: self.len, modified: SystemTime::now() });
        inner.counters.add(Count::Write, 1);
        inner.counters.add(Count::BytesWritten, self.len);
        Ok(())
    }

    /// Moves the buffered content into a backend stream once the file outgrows the threshold.
    fn spill(&mut self) -> Result<(), Error> {
        let mut stream = self.fs.inner.backend.create(&self.path)?;
        let io = |e: io::Error| Error::io(self.path.clone(), e);
        stream.write_all(&self.buf).map_err(io)?;
        stream.seek(SeekFrom::Start(self.pos)).map_err(io)?;
        self.buf = Vec::new();
        self.stream = Some(stream);
        Ok(())
    }
}

impl Write for FileWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let end = self.pos.checked_add(data.len() as u64).ok_or_else(|| io::Error::other("file too large"))?;
        if self.stream.is_none() && end > self.fs.inner.threshold {
            self.spill()?;
        }
        let n = match &mut self.stream {
            Some(stream) => stream.write(data)?,
            None => {
                let (start, end) = (self.pos as usize, end as usize);
                if end > self.buf.len() {
                    self.buf.resize(end, 0);
                }
                self.buf[start..end].copy_from_slice(data);
                data.len()
            }
        };
        self.pos += n as u64;
        self.len = self.len.max(self.pos);
        self.unsaved = true;
        Ok(n)
    }

    /// Stores a small file's content so far; a streamed file is only flushed to the backend's buffers
    /// (it is stored at `close`).
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Some(stream) => stream.flush(),
            None => self.save().map_err(io::Error::from),
        }
    }
}

impl Seek for FileWriter<'_> {
    /// Seeking past the end and writing leaves a gap of zeros, as on a file system.
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        let pos = seek_to(self.pos, self.len, from)?;
        if let Some(stream) = &mut self.stream {
            stream.seek(SeekFrom::Start(pos))?;
        }
        self.pos = pos;
        Ok(pos)
    }
}

impl Drop for FileWriter<'_> {
    fn drop(&mut self) {
        if self.unsaved {
            // Counted in stats if it fails; `close` reports it.
            let _ = self.finish();
        }
    }
}
