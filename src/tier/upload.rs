//! The queue of blobs waiting to be uploaded to the remote tier.
//!
//! Bounded: `offer` never blocks; when the queue is full the upload is dropped (and counted by the
//! caller), because a reader must never wait for the remote tier's write path. Uploader threads take
//! from it with `next`. One mutex protects the pending digests, the count of uploads in progress and
//! the closed flag; one condition variable signals both "work available" and "became idle".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Digest;
use crate::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    pending: VecDeque<Digest>,
    busy: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct UploadQueue {
    capacity: usize,
    state: Mutex<State>,
    changed: Condvar,
}

impl UploadQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        UploadQueue { capacity, state: Mutex::new(State::default()), changed: Condvar::new() }
    }

    /// Queues `d` unless the queue is full or closed; false means dropped.
    pub(crate) fn offer(&self, d: Digest) -> bool {
        let mut s = self.state.lock();
        if s.closed || s.pending.len() >= self.capacity {
            return false;
        }
        s.pending.push_back(d);
        drop(s);
        self.changed.notify_all();
        true
    }

    /// The next digest to upload, waiting for one; `None` once closed. The caller calls `done` after.
    pub(crate) fn next(&self) -> Option<Digest> {
        let mut s = self.state.lock();
        loop {
            if s.closed {
                return None;
            }
            if let Some(d) = s.pending.pop_front() {
                s.busy += 1;
                return Some(d);
            }
            s = self.changed.wait(s);
        }
    }

    pub(crate) fn done(&self) {
        self.state.lock().busy -= 1;
        self.changed.notify_all();
    }

    /// Waits until nothing is queued or uploading, at most `timeout`; true if idle.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        while !(s.pending.is_empty() && s.busy == 0) {
            let now = Instant::now();
            if now >= deadline || s.closed {
                return s.pending.is_empty() && s.busy == 0;
            }
            s = self.changed.wait_for(s, deadline - now);
        }
        true
    }

    /// Stops the uploaders after their current upload; returns the uploads left undone.
    pub(crate) fn close(&self) -> usize {
        let mut s = self.state.lock();
        s.closed = true;
        let left = s.pending.len();
        s.pending.clear();
        drop(s);
        self.changed.notify_all();
        left
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().pending.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bounded_never_blocks_and_reports_idle() {
        let q = UploadQueue::new(2);
        let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
        assert!(q.offer(a) && q.offer(b));
        assert!(!q.offer(c), "full: dropped");
        assert!(!q.wait_idle(Duration::from_millis(10)));
        std::thread::scope(|s| {
            s.spawn(|| {
                while let Some(_d) = q.next() {
                    q.done();
                }
            });
            assert!(q.wait_idle(Duration::from_secs(10)));
            assert_eq!(q.len(), 0);
            assert_eq!(q.close(), 0);
        });
        assert!(!q.offer(a), "closed");
    }
}
