//! Moving slot bytes between the shard files and memory, behind one trait with two back ends:
//! [`MmapStore`] (shared mappings) and [`PreadStore`] (`pread`/`pwritev`).
//!
//! Stores know nothing of frames, ids or concurrency: callers decide when a slot may be read or written
//! (see `pins.rs` and the seqlock in `read.rs`). Both back ends use the page cache, so a ring written in
//! one mode is read consistently in the other, by any process.

mod mmap;
mod pread;

use std::fmt;

pub(crate) use mmap::MmapStore;
pub(crate) use pread::PreadStore;

use super::Error;
use super::record::FRAME_HEADER;

/// Slot I/O.
pub(crate) trait Store: Send + Sync + fmt::Debug {
    /// Copies the frame at the start of `slot` into `out` (one slot long): at least the frame header and
    /// the stored payload its header claims (bounded by the slot). Returns how many bytes are valid.
    ///
    /// The copy may race a writer in another process or handle: it is made without undefined
    /// behaviour (atomic word loads, or the kernel's copy), and the caller validates what it got.
    fn read_frame(&self, slot: u64, out: &mut [u8]) -> Result<usize, Error>;

    /// Copies whole slots `first..first + out.len() / record_size`, all in one shard, into `out` with one
    /// read (for batches in `pread` mode). Same caveats as `read_frame`.
    fn read_run(&self, first: u64, out: &mut [u8]) -> Result<(), Error>;

    /// The address of `slot`'s first byte, if the slot is mapped in this process.
    fn mapped(&self, slot: u64) -> Option<*const u8>;

    /// Writes `header` and `payload` at the start of `slot`. The caller has claimed the slot.
    fn write_frame(&self, slot: u64, header: &[u8; FRAME_HEADER], payload: &[u8]) -> Result<(), Error>;

    /// Makes everything written to shard `shard` durable (`fdatasync`: for mapped files this also
    /// writes the pages dirtied through the mapping).
    fn sync(&self, shard: u32) -> Result<(), Error>;
}

/// The stored payload length a frame header claims, bounded by what fits in a slot of `slot_len` bytes.
pub(crate) fn claimed_len(header: &[u8], slot_len: usize) -> usize {
    let claimed = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes")) as usize;
    claimed.min(slot_len - FRAME_HEADER)
}
