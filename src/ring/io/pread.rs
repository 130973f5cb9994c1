//! `pread`/`pwritev` I/O: each slot is read with one `pread` of the whole slot (slots over 64 KiB: the
//! frame header, then the payload it claims) into the caller's (pooled) buffer and written with one `pwritev` of the frame header and the payload, so the payload
//! is never copied in user space on the way out. Record data is never mapped.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::{Store, claimed_len};

/// Slots up to this size are read whole with one `pread`; larger ones header first.
const WHOLE_SLOT_READ: usize = 64 << 10;
use crate::ring::Error;
use crate::ring::geometry::{HEADER_BYTES, Layout};
use crate::ring::record::FRAME_HEADER;
use crate::ring::shard::Shards;

/// The shard files, read and written with positioned system calls.
#[derive(Debug)]
pub(crate) struct PreadStore {
    shards: Shards,
    layout: Layout,
}

impl PreadStore {
    /// The store over `shards`; the files are advised `POSIX_FADV_SEQUENTIAL` if `sequential`.
    pub(crate) fn new(shards: Shards, sequential: bool) -> PreadStore {
        if sequential {
            for shard in shards.iter() {
                // SAFETY: `posix_fadvise` on an open descriptor; a hint that touches no memory of ours.
                // Failure changes nothing but speed.
                unsafe { libc::posix_fadvise(shard.file().as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
            }
        }
        let layout = shards.layout();
        PreadStore { shards, layout }
    }

    fn file_offset(&self, slot: u64) -> (u32, u64) {
        let (shard, offset) = self.layout.locate(slot);
        (shard, HEADER_BYTES + offset)
    }
}

impl Store for PreadStore {
    fn read_frame(&self, slot: u64, out: &mut [u8]) -> Result<usize, Error> {
        let (shard, at) = self.file_offset(slot);
        let file = self.shards.get(shard);
        let size = self.layout.record_size();
        let read = |buf: &mut [u8], at: u64| file.file().read_exact_at(buf, at).map_err(|e| Error::io(file.path(), e));
        if size <= WHOLE_SLOT_READ {
            read(&mut out[..size], at)?;
            return Ok(size);
        }
        // A large slot: the header first, then only the payload it claims (bounded by the slot).
        read(&mut out[..FRAME_HEADER], at)?;
        let n = FRAME_HEADER + claimed_len(&out[..FRAME_HEADER], size);
        read(&mut out[FRAME_HEADER..n], at + FRAME_HEADER as u64)?;
        Ok(n)
    }

    fn read_run(&self, first: u64, out: &mut [u8]) -> Result<(), Error> {
        let (shard, at) = self.file_offset(first);
        let file = self.shards.get(shard);
        debug_assert!(out.len() as u64 <= self.layout.slots_left_in_shard(first) * self.layout.record_size() as u64);
        file.file().read_exact_at(out, at).map_err(|e| Error::io(file.path(), e))
    }

    fn mapped(&self, _slot: u64) -> Option<*const u8> {
        None
    }

    fn write_frame(&self, slot: u64, header: &[u8; FRAME_HEADER], payload: &[u8]) -> Result<(), Error> {
        let (shard, mut at) = self.file_offset(slot);
        let file = self.shards.get(shard);
        let (mut head, mut body) = (&header[..], payload);
        while !head.is_empty() || !body.is_empty() {
            let iov = [
                libc::iovec { iov_base: head.as_ptr().cast_mut().cast(), iov_len: head.len() },
                libc::iovec { iov_base: body.as_ptr().cast_mut().cast(), iov_len: body.len() },
            ];
            // SAFETY: both iovecs describe live, initialised slices that `pwritev` only reads; the
            // descriptor is open for writing; the offset is within the preallocated file.
            let n = unsafe { libc::pwritev(file.file().as_raw_fd(), iov.as_ptr(), 2, at as libc::off_t) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io(file.path(), e));
            }
            if n == 0 {
                return Err(Error::io(file.path(), io::Error::from(io::ErrorKind::WriteZero)));
            }
            let n = n as usize;
            at += n as u64;
            let from_head = n.min(head.len());
            head = &head[from_head..];
            body = &body[n - from_head..];
        }
        Ok(())
    }

    fn sync(&self, shard: u32) -> Result<(), Error> {
        self.shards.get(shard).datasync()
    }
}
