//! One cached entry, and the expiry bookkeeping a slot carries when its cache has deadlines.

use crate::clock::NEVER;
use crate::sync::{AtomicU8, AtomicU64, Ordering};

use super::slab::Link;

/// Marks a timer that sits in no timer-wheel bucket.
pub(crate) const NO_BUCKET: u16 = u16::MAX;

/// A key, its value and what every policy keeps about it. Changed only under the shard's exclusive lock.
#[derive(Debug)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    pub(crate) hash: u64,
    pub(crate) weight: u32,
    /// Which queue of the policy holds the entry (policy-specific meaning).
    pub(crate) queue: u8,
    /// The entry's own frequency counter (LFU).
    pub(crate) freq: u8,
    /// Reference mark (W-TinyLFU): set by readers under the shared lock, hence atomic; taken by the
    /// policy under the exclusive lock. Relaxed: it orders nothing; a mark set just as the policy takes
    /// it may count in either pass.
    pub(crate) mark: AtomicU8,
}

impl<K, V> Entry<K, V> {
    pub(crate) fn new(key: K, value: V, hash: u64, weight: u32) -> Self {
        Entry { key, value, hash, weight, queue: 0, freq: 0, mark: AtomicU8::new(0) }
    }
}

/// A slot's expiry bookkeeping. Kept in a side table of the slab that exists only once some entry of
/// the shard may expire, so caches without TTL or time-to-idle pay nothing for it.
#[derive(Debug)]
pub(crate) struct Timer {
    /// Links in a timer-wheel bucket.
    pub(crate) link: Link,
    /// Timer-wheel bucket holding the slot, or [`NO_BUCKET`].
    pub(crate) bucket: u16,
    /// Absolute time-to-live deadline in clock nanoseconds, or [`NEVER`].
    pub(crate) expires_at: u64,
    /// The deadline the timer wheel filed the slot under.
    pub(crate) filed: u64,
    /// Last read, for time-to-idle. Readers store it under the *shared* lock, so it is atomic;
    /// Relaxed suffices: it orders no other memory, and a lost race moves it by nanoseconds at most.
    pub(crate) accessed_at: AtomicU64,
}

impl Default for Timer {
    fn default() -> Self {
        Timer {
            link: Link::UNLINKED,
            bucket: NO_BUCKET,
            expires_at: NEVER,
            filed: NEVER,
            accessed_at: AtomicU64::new(0),
        }
    }
}

impl Timer {
    /// Starts the timer of a newly stored value.
    pub(crate) fn start(&mut self, expires_at: u64, now: u64) {
        self.expires_at = expires_at;
        self.accessed_at.store(now, Ordering::Relaxed);
    }

    /// The moment the entry stops being servable: the TTL deadline or `tti` after the last read.
    pub(crate) fn deadline(&self, tti: Option<u64>) -> u64 {
        match tti {
            None => self.expires_at,
            Some(tti) => {
                let idle = self.accessed_at.load(Ordering::Relaxed).saturating_add(tti);
                idle.min(self.expires_at)
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
        let mut t = Timer::default();
        assert_eq!(t.deadline(None), NEVER);
        assert_eq!(t.deadline(Some(u64::MAX)), NEVER);
        t.start(100, 10);
        assert_eq!(t.deadline(None), 100);
        assert_eq!(t.deadline(Some(50)), 60);
        assert_eq!(t.deadline(Some(500)), 100);
        assert!(!t.is_expired(Some(50), 59));
        assert!(t.is_expired(Some(50), 60));
    }
}
