//! [`Record`]: a record's payload lent to the caller by [`RingBuffer::get`](super::RingBuffer::get).

use std::fmt;
use std::ops::{Deref, Range};

use super::pins::Pin;
use super::pool::PooledFrame;

/// A record's payload, borrowed from the ring until dropped.
///
/// From the writer's handle in [`IoMode::Mmap`](super::IoMode::Mmap), an uncompressed record is lent in
/// place: the bytes are the mapped file's, not a copy, and the slot is pinned so that the writer cannot
/// overwrite it while the guard lives (a write that needs the slot, one lap later, waits for the guard,
/// at most a second). Otherwise (`pread` mode, read-only handles, compressed records) the guard owns a
/// validated copy in a pooled buffer and pins nothing. Either way the bytes passed the CRC and do not
/// change while borrowed.
///
/// Keep guards short-lived, and do not write to the ring from a thread that holds one: a write that must
/// overwrite the guarded slot waits for it and then fails with [`Error::SlotPinned`](super::Error::SlotPinned).
pub struct Record<'a> {
    id: u64,
    bytes: Bytes<'a>,
}

enum Bytes<'a> {
    /// Mapped bytes, valid while `_pin` holds the slot.
    Mapped { bytes: &'a [u8], _pin: Pin<'a> },
    /// A copy (or decoded payload) in a pooled buffer.
    Owned { frame: PooledFrame<'a>, range: Range<usize> },
    /// A decoded payload too large for a slot-sized buffer.
    Decoded(Vec<u8>),
}

impl<'a> Record<'a> {
    pub(crate) fn mapped(id: u64, bytes: &'a [u8], pin: Pin<'a>) -> Self {
        Record { id, bytes: Bytes::Mapped { bytes, _pin: pin } }
    }

    pub(crate) fn owned(id: u64, frame: PooledFrame<'a>, range: Range<usize>) -> Self {
        Record { id, bytes: Bytes::Owned { frame, range } }
    }

    pub(crate) fn decoded(id: u64, bytes: Vec<u8>) -> Self {
        Record { id, bytes: Bytes::Decoded(bytes) }
    }

    /// The record's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the bytes are the mapped file's own (no copy was made).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped { .. })
    }
}

impl Deref for Record<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped { bytes, .. } => bytes,
            Bytes::Owned { frame, range } => &frame[range.clone()],
            Bytes::Decoded(v) => v,
        }
    }
}

impl AsRef<[u8]> for Record<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("len", &self.len())
            .field("zero_copy", &self.is_zero_copy())
            .finish()
    }
}
