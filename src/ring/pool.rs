//! Slot-sized buffers for reads that copy (`pread` mode, read-only handles, compressed records),
//! reused so that reading allocates nothing in steady state.
//!
//! Free buffers sit in a few lists striped by thread (`crate::stripe`), each behind its own lock held
//! for one push or pop; a thread mostly meets only its own list. Each list keeps at most 8 buffers and
//! at most 16 MiB (at least one buffer); the rest are freed when returned, so rings of huge records do
//! not keep gigabytes of idle buffers.

use std::ops::{Deref, DerefMut};

use crate::stripe::{default_stripes, thread_index};
use crate::sync::Mutex;

/// Most buffers kept per stripe.
const KEEP: usize = 8;
/// Most idle bytes kept per stripe (but always one buffer).
const KEEP_BYTES: usize = 16 << 20;

/// One stripe's free buffers; its lock guards the list only.
type FreeList = Mutex<Vec<Box<[u8]>>>;

/// A pool of buffers of one size.
#[derive(Debug)]
pub(crate) struct FramePool {
    size: usize,
    /// Buffers kept per stripe.
    keep: usize,
    free: Box<[FreeList]>,
}

/// A buffer on loan; goes back to its pool when dropped.
#[derive(Debug)]
pub(crate) struct PooledFrame<'a> {
    buf: Option<Box<[u8]>>,
    pool: &'a FramePool,
}

impl FramePool {
    /// A pool of `size`-byte buffers.
    pub(crate) fn new(size: usize) -> FramePool {
        let keep = (KEEP_BYTES / size.max(1)).clamp(1, KEEP);
        FramePool { size, keep, free: (0..default_stripes()).map(|_| Mutex::new(Vec::with_capacity(keep))).collect() }
    }

    fn stripe(&self) -> &FreeList {
        &self.free[thread_index() % self.free.len()]
    }

    /// A buffer of the pool's size (contents unspecified).
    pub(crate) fn take(&self) -> PooledFrame<'_> {
        let buf = self.stripe().lock().pop().unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice());
        PooledFrame { buf: Some(buf), pool: self }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.iter().map(|f| f.lock().len()).sum()
    }
}

impl Deref for PooledFrame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().expect("present until dropped")
    }
}

impl DerefMut for PooledFrame<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().expect("present until dropped")
    }
}

impl Drop for PooledFrame<'_> {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        let mut free = self.pool.stripe().lock();
        if free.len() < self.pool.keep {
            free.push(buf);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let pool = FramePool::new(256);
        let a = pool.take();
        assert_eq!(a.len(), 256);
        let ptr = a.as_ptr();
        drop(a);
        assert_eq!(pool.idle(), 1);
        assert_eq!(pool.take().as_ptr(), ptr, "the same buffer comes back");
        let many: Vec<_> = (0..KEEP + 5).map(|_| pool.take()).collect();
        drop(many);
        assert_eq!(pool.idle(), KEEP);
        // Huge buffers: one kept per stripe.
        let big = FramePool::new(KEEP_BYTES);
        let two = (big.take(), big.take());
        drop(two);
        assert_eq!(big.idle(), 1);
    }
}
