//! Size-bucketed buffers for file and chunk reads, returned to the pool when the last reader lets go.
//!
//! A read fills a `Vec<u8>` taken from the bucket for its size (powers of two from 4 KiB), wraps it in
//! [`Bytes`] through [`Bytes::from_owner`], and hands that to the cache and the caller. When the cache
//! evicts the entry and no caller holds a clone, the owner's `Drop` puts the vector back. So a workload
//! that keeps missing on similar sizes reuses the same few buffers instead of allocating on every miss.
//! Each bucket keeps a bounded number of bytes; beyond that, buffers are freed.

use std::sync::{Arc, Weak};

use crate::sync::Mutex;
use bytes::Bytes;

/// Smallest bucket: 4 KiB.
const MIN_SHIFT: u32 = 12;
/// Buckets 4 KiB, 8 KiB, …, 64 MiB; larger buffers are not pooled.
const BUCKETS: usize = 15;

#[derive(Debug)]
struct Buckets {
    /// One free list per size class. Each lock guards its list only, held for one push or pop.
    free: [Mutex<Vec<Vec<u8>>>; BUCKETS],
    /// Bytes each bucket may keep.
    keep_per_bucket: usize,
}

/// The pool; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    inner: Arc<Buckets>,
}

fn bucket(capacity: usize) -> Option<usize> {
    let shift = capacity.max(1).next_power_of_two().trailing_zeros().max(MIN_SHIFT);
    let i = (shift - MIN_SHIFT) as usize;
    (i < BUCKETS).then_some(i)
}

impl BufferPool {
    /// A pool keeping at most `keep_per_bucket` bytes of idle buffers in each size class.
    pub(crate) fn new(keep_per_bucket: usize) -> Self {
        BufferPool { inner: Arc::new(Buckets { free: Default::default(), keep_per_bucket }) }
    }

    /// An empty buffer with room for at least `len` bytes.
    pub(crate) fn take(&self, len: usize) -> PooledBuf {
        let buf = match bucket(len) {
            Some(i) => match self.inner.free[i].lock().pop() {
                Some(buf) => buf,
                None => Vec::with_capacity(1 << (i as u32 + MIN_SHIFT)),
            },
            None => Vec::with_capacity(len),
        };
        PooledBuf { buf, pool: Arc::downgrade(&self.inner) }
    }

    /// The capacity of the buffer [`take`](Self::take) gives for `len` bytes.
    pub(crate) fn bucket_size(len: usize) -> usize {
        bucket(len).map_or(len, |i| 1 << (i as u32 + MIN_SHIFT))
    }

    /// Idle bytes held.
    #[cfg(test)]
    pub(crate) fn idle_bytes(&self) -> usize {
        self.inner.free.iter().map(|f| f.lock().iter().map(Vec::capacity).sum::<usize>()).sum()
    }
}

/// A buffer that goes back to its pool when dropped.
#[derive(Debug)]
pub(crate) struct PooledBuf {
    buf: Vec<u8>,
    pool: Weak<Buckets>,
}

impl PooledBuf {
    /// The vector to fill.
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Freezes the filled buffer into `Bytes` that return it to the pool when the last clone drops.
    pub(crate) fn freeze(self) -> Bytes {
        if self.buf.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else { return };
        // Only buffers whose capacity is exactly a bucket size go back, so each bucket holds one size.
        let cap = self.buf.capacity();
        let Some(i) = bucket(cap).filter(|&i| cap == 1 << (i as u32 + MIN_SHIFT)) else { return };
        let mut free = pool.free[i].lock();
        if (free.len() + 1) * cap <= pool.keep_per_bucket {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_clone_drops() {
        let pool = BufferPool::new(1 << 20);
        let mut b = pool.take(5000);
        b.vec().extend_from_slice(&[7; 5000]);
        let bytes = b.freeze();
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0);
        drop(clone);
        assert_eq!(pool.idle_bytes(), 8192);
        let again = pool.take(6000);
        assert_eq!(again.buf.capacity(), 8192);
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn buckets_are_bounded_and_odd_sizes_are_not_kept() {
        let pool = BufferPool::new(8192);
        let bufs: Vec<_> = (0..3).map(|_| pool.take(4096)).collect();
        drop(bufs);
        assert_eq!(pool.idle_bytes(), 8192);
        let mut odd = pool.take(1 << 30);
        odd.vec().push(1);
        drop(odd.freeze());
        assert_eq!(pool.idle_bytes(), 8192);
        assert!(pool.take(0).freeze().is_empty());
    }
}
