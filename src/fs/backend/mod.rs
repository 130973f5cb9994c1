//! The backing store under a [`CacheFs`](super::CacheFs): a trait, a directory on disk and an in-memory map.

mod mem;
mod os;

use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::time::SystemTime;

pub use mem::MemBackend;
pub use os::{OsBackend, TEMP_MARKER};

use super::error::Error;

/// What [`Backend::stat`] and [`CacheFs::stat`](super::CacheFs::stat) report about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Length in bytes.
    pub len: u64,
    /// Last modification time.
    pub modified: SystemTime,
}

/// A slower store of whole files that a [`CacheFs`](super::CacheFs) fronts: a directory, a network mount,
/// object storage.
///
/// Paths are relative, `/`-separated and already checked by the caller (no `..`, no leading `/`); an
/// implementation that can be called directly should check them again. Errors carry the path and keep
/// their kind: build them with [`Error::io`] from an `io::Error`, or directly.
///
/// # Guarantees an implementation must give
/// - `write` is atomic: a reader sees the old content or the new, never a mix or a prefix; once it
///   returns `Ok` the data survives a crash (that is what `CacheFs::flush` promises its caller).
/// - Calls may come from many threads at once.
///
/// ```
/// use cachefs::fs::{Backend, MemBackend};
///
/// let store = MemBackend::new();
/// store.write("a/b.txt", b"hello").unwrap();
/// assert_eq!(store.stat("a/b.txt").unwrap().len, 5);
/// assert_eq!(store.list("a").unwrap(), ["a/b.txt"]);
/// ```
pub trait Backend: Send + Sync + 'static {
    /// Appends the whole file to `buf`.
    fn read(&self, path: &str, buf: &mut Vec<u8>) -> Result<(), Error>;
    /// Fills `buf` from byte `offset`; returns the bytes read, fewer than `buf.len()` only at end of file.
    fn read_range(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error>;
    /// Replaces the file with `data`, atomically and durably, creating parent directories as needed.
    fn write(&self, path: &str, data: &[u8]) -> Result<(), Error>;
    /// As [`write`](Self::write), and the file's modification time becomes `modified`: write-back
    /// flushes a file with the time of the write it carries, so the time does not jump when it lands.
    /// The default ignores the time.
    fn write_modified(&self, path: &str, data: &[u8], modified: SystemTime) -> Result<(), Error> {
        let _ = modified;
        self.write(path, data)
    }
    /// The file's length and modification time; [`Error::NotAFile`] for a directory.
    fn stat(&self, path: &str) -> Result<Metadata, Error>;
    /// Every file below directory `dir` (recursively; `""` is the root), sorted.
    fn list(&self, dir: &str) -> Result<Vec<String>, Error>;
    /// Removes one file.
    fn remove(&self, path: &str) -> Result<(), Error>;
    /// Removes directory `dir` and everything below it (`""`: everything under the root, not the root
    /// itself); returns how many files went. A missing `dir` removes nothing; a `dir` that is a file is
    /// removed (one file), as `rm -r` does.
    fn remove_all(&self, dir: &str) -> Result<u64, Error>;
    /// Moves a file, replacing any file at `to`.
    fn rename(&self, from: &str, to: &str) -> Result<(), Error>;
    /// Starts writing `path` in pieces, for files too large to hold in memory. Nothing is visible under
    /// the name until [`BackendFile::commit`]; a file dropped uncommitted leaves the old content. The
    /// default buffers in memory and calls [`write`](Self::write) on commit; [`OsBackend`] streams to a
    /// temporary file beside the target.
    fn create(&self, path: &str) -> Result<Box<dyn BackendFile + '_>, Error> {
        Ok(Box::new(Buffered { backend: self, path: path.to_string(), buf: Cursor::new(Vec::new()) }))
    }
    /// Refuses a path this backend would never write (for `OsBackend`: one leading outside the root
    /// through a symlink). Write-back calls it before acknowledging a write, so that it never accepts
    /// data it cannot flush. The default accepts every path.
    fn check(&self, path: &str) -> Result<(), Error> {
        let _ = path;
        Ok(())
    }
}

/// A file being written to a [`Backend`] in pieces (from [`Backend::create`]).
pub trait BackendFile: Write + Seek + Send {
    /// Makes the written content the file's, atomically and durably, as [`Backend::write`] does.
    fn commit(self: Box<Self>) -> Result<(), Error>;
}

/// The default [`Backend::create`]: the content in memory, written whole on commit.
struct Buffered<'a, B: ?Sized> {
    backend: &'a B,
    path: String,
    buf: Cursor<Vec<u8>>,
}

impl<B: ?Sized> Write for Buffered<'_, B> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<B: ?Sized> Seek for Buffered<'_, B> {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        self.buf.seek(from)
    }
}

impl<B: Backend + ?Sized> BackendFile for Buffered<'_, B> {
    fn commit(self: Box<Self>) -> Result<(), Error> {
        self.backend.write(&self.path, self.buf.get_ref())
    }
}

/// A shared backend: keep one handle, give the other to a `CacheFs` (or to several).
impl<B: Backend + ?Sized + Send + Sync> Backend for std::sync::Arc<B> {
    fn read(&self, path: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
        (**self).read(path, buf)
    }
    fn read_range(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        (**self).read_range(path, offset, buf)
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        (**self).write(path, data)
    }
    fn write_modified(&self, path: &str, data: &[u8], modified: SystemTime) -> Result<(), Error> {
        (**self).write_modified(path, data, modified)
    }
    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        (**self).stat(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, Error> {
        (**self).list(dir)
    }
    fn remove(&self, path: &str) -> Result<(), Error> {
        (**self).remove(path)
    }
    fn remove_all(&self, dir: &str) -> Result<u64, Error> {
        (**self).remove_all(dir)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        (**self).rename(from, to)
    }
    fn create(&self, path: &str) -> Result<Box<dyn BackendFile + '_>, Error> {
        (**self).create(path)
    }
    fn check(&self, path: &str) -> Result<(), Error> {
        (**self).check(path)
    }
}
