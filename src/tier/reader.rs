//! [`Blob`]: an open blob, read with `pread` at its own position.
//!
//! The handle keeps the blob pinned, so LRU eviction leaves it alone while it is open. An explicit
//! [`TieredStore::evict`](super::TieredStore::evict) (or a corruption found by `verify`) may still
//! unlink the file; the handle then keeps reading the unlinked file, which Linux keeps until the last
//! descriptor closes. Either way a handle reads one complete, verified version of the blob.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use super::shared::{Pinned, Shared};
use super::stats::Count;
use super::{Digest, Source};
use crate::sync::Arc;

/// An open blob: `Read + Seek` over the file on the disk tier, without buffering the blob.
///
/// Dropping it releases the blob for eviction.
#[derive(Debug)]
pub struct Blob {
    shared: Arc<Shared>,
    digest: Digest,
    file: File,
    len: u64,
    generation: u64,
    source: Source,
    pos: u64,
}

impl Blob {
    pub(crate) fn new(shared: Arc<Shared>, digest: Digest, pinned: Pinned) -> Self {
        let Pinned { file, size, generation, source } = pinned;
        Blob { shared, digest, file, len: size, generation, source, pos: 0 }
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for the empty blob.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where opening it found the blob: `Disk`, or the tier that filled it.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Reads up to `buf.len()` bytes at `offset` without moving the position; 0 at or past the end.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let n = read_full_at(&self.file, self.len, offset, buf)?;
        self.shared.counters.add(Count::BytesRead, n as u64);
        Ok(n)
    }
}

/// `pread` until `buf` is full or the blob (`len` bytes) ends; 0 at or past the end, whatever the offset.
pub(crate) fn read_full_at(file: &File, len: u64, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let want = len.saturating_sub(offset).min(buf.len() as u64) as usize;
    let buf = &mut buf[..want];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

impl Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = self.len.saturating_sub(self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        self.shared.counters.add(Count::BytesRead, n as u64);
        Ok(n)
    }
}

impl Seek for Blob {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

impl Drop for Blob {
    fn drop(&mut self) {
        self.shared.release(&self.digest, self.generation);
    }
}
