//! [`ReadBatch`]: the reusable output of [`RingBuffer::read_many`](super::RingBuffer::read_many).

use std::ops::Range;

/// Records read by [`RingBuffer::read_many`](super::RingBuffer::read_many): payloads packed into one
/// buffer, in id order. Reuse one batch across calls: once its buffers have grown, reading allocates
/// nothing.
///
/// ```
/// # use cachefs::ring::ReadBatch;
/// let batch = ReadBatch::new();
/// assert!(batch.is_empty());
/// for (id, payload) in batch.iter() {
///     println!("{id}: {} bytes", payload.len());
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    data: Vec<u8>,
    records: Vec<(u64, Range<usize>)>,
    corrupt: Vec<u64>,
    /// Raw slots read in runs (`pread` mode), kept for reuse.
    frames: Vec<u8>,
}

impl ReadBatch {
    /// An empty batch.
    pub fn new() -> Self {
        ReadBatch::default()
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// `(id, payload)` of each record, in id order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u64, &[u8])> + '_ {
        self.records.iter().map(|(id, r)| (*id, &self.data[r.clone()]))
    }

    /// Ids in the range whose frames failed their checks (counted as CRC failures, not served).
    pub fn corrupt(&self) -> &[u64] {
        &self.corrupt
    }

    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.corrupt.clear();
    }

    /// The buffer to append record `id`'s payload to, then `commit`.
    pub(crate) fn data(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Records the payload appended since `start` as record `id`.
    pub(crate) fn commit(&mut self, id: u64, start: usize) {
        self.records.push((id, start..self.data.len()));
    }

    /// The scratch buffer for raw slots (taken out, then put back with `put_frames`, to borrow it
    /// alongside the batch).
    pub(crate) fn take_frames(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.frames)
    }

    pub(crate) fn put_frames(&mut self, frames: Vec<u8>) {
        self.frames = frames;
    }

    pub(crate) fn push_corrupt(&mut self, id: u64) {
        self.corrupt.push(id);
    }
}
