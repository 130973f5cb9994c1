//! What a slot holds: the entry readers see, the bookkeeping only the writer touches, and the expiry
//! state a slot carries when its cache has deadlines.
//!
//! The split is what makes lock-free reads sound: a reader holds `&Entry` (the key and the value) and
//! touches the slot's atomics (the mark, the timer's deadline and last access); the writer mutates
//! [`Meta`] and [`Wheel`], which no reader ever references, so writer and readers never alias.

use crate::clock::NEVER;
use crate::sync::{AtomicU64, Ordering};

use super::slab::Link;

/// Marks a timer that sits in no timer-wheel bucket.
pub(crate) const NO_BUCKET: u16 = u16::MAX;

/// A key and its value. Written into a vacant slot before the slot is published, then only read until
/// the slot is reclaimed.
#[derive(Debug)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
}

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Free: on the writer's free list; its entry is uninitialised.
    Vacant,
    /// Holds a live entry (reachable from the index).
    Occupied,
    /// Removed from the index; its entry waits for the readers that may still hold it (see `slab.rs`).
    Retired,
}

/// A slot's bookkeeping, read and written only by the shard's writer (its lock held).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) hash: u64,
    pub(crate) weight: u32,
    /// Which queue of the policy holds the entry (policy-specific meaning).
    pub(crate) queue: u8,
    /// The entry's own frequency counter (LFU).
    pub(crate) freq: u8,
    pub(crate) state: State,
    /// Links in the policy's queues (or, for a vacant slot, the free list).
    pub(crate) link: Link,
}

impl Default for Meta {
    fn default() -> Self {
        Meta { hash: 0, weight: 0, queue: 0, freq: 0, state: State::Vacant, link: Link::UNLINKED }
    }
}

/// A slot's expiry state. Kept in a side table of the slab that exists only once some entry of the
/// shard may expire, so caches without TTL or time-to-idle pay nothing for it.
#[derive(Debug)]
pub(crate) struct Timer {
    /// Absolute time-to-live deadline in clock nanoseconds, or [`NEVER`]. Set by the writer before the
    /// slot is published, read by readers after. Relaxed: the index publishes it (see `index.rs`).
    expires_at: AtomicU64,
    /// Last read, for time-to-idle. Readers store it; Relaxed suffices: it orders no other memory, and a
    /// lost race moves it by nanoseconds at most.
    accessed_at: AtomicU64,
}

/// A slot's place in the timer wheel: the writer's alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wheel {
    /// Links in a timer-wheel bucket.
    pub(crate) link: Link,
    /// Timer-wheel bucket holding the slot, or [`NO_BUCKET`].
    pub(crate) bucket: u16,
    /// The deadline the timer wheel filed the slot under.
    pub(crate) filed: u64,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel { link: Link::UNLINKED, bucket: NO_BUCKET, filed: NEVER }
    }
}

impl Default for Timer {
    fn default() -> Self {
        Timer { expires_at: AtomicU64::new(NEVER), accessed_at: AtomicU64::new(0) }
    }
}

impl Timer {
    /// Starts the timer of a value about to be stored (its slot not yet published).
    pub(crate) fn start(&self, expires_at: u64, now: u64) {
        self.expires_at.store(expires_at, Ordering::Relaxed);
        self.accessed_at.store(now, Ordering::Relaxed);
    }

    /// The time-to-live deadline.
    pub(crate) fn expires_at(&self) -> u64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    /// Notes a read at `now`, for time-to-idle.
    pub(crate) fn touch(&self, now: u64) {
        self.accessed_at.store(now, Ordering::Relaxed);
    }

    /// The moment the entry stops being servable: the TTL deadline or `tti` after the last read.
    pub(crate) fn deadline(&self, tti: Option<u64>) -> u64 {
        let expires_at = self.expires_at();
        match tti {
            None => expires_at,
            Some(tti) => {
                let idle = self.accessed_at.load(Ordering::Relaxed).saturating_add(tti);
                idle.min(expires_at)
            }
        }
    }

    pub(crate) fn is_expired(&self, tti: Option<u64>, now: u64) -> bool {
        self.deadline(tti) <= now
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_earlier_of_ttl_and_idle() {
        let t = Timer::default();
        assert_eq!(t.deadline(None), NEVER);
        assert_eq!(t.deadline(Some(u64::MAX)), NEVER);
        t.start(100, 10);
        assert_eq!(t.deadline(None), 100);
        assert_eq!(t.deadline(Some(50)), 60);
        assert_eq!(t.deadline(Some(500)), 100);
        assert!(!t.is_expired(Some(50), 59));
        assert!(t.is_expired(Some(50), 60));
        t.touch(40);
        assert_eq!(t.deadline(Some(50)), 90);
    }
}
