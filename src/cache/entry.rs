//! One cached entry and the bookkeeping every policy shares.

use crate::clock::NEVER;
use crate::sync::{AtomicU64, Ordering};

/// Marks an entry that sits in no timer-wheel bucket.
pub(crate) const NO_BUCKET: u16 = u16::MAX;

/// A key, its value and the fields the policies and the timer wheel keep about it.
///
/// Everything but `accessed_at` is changed only under the shard's exclusive lock.
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
    /// Timer-wheel bucket holding the entry, or [`NO_BUCKET`].
    pub(crate) bucket: u16,
    /// Absolute time-to-live deadline in clock nanoseconds, or [`NEVER`].
    pub(crate) expires_at: u64,
    /// The deadline the timer wheel filed the entry under.
    pub(crate) timer: u64,
    /// Last read, for time-to-idle. Readers store it under the *shared* lock, so it is atomic;
    /// Relaxed suffices: it orders no other memory, and a lost race moves it by nanoseconds at most.
    pub(crate) accessed_at: AtomicU64,
}

impl<K, V> Entry<K, V> {
    pub(crate) fn new(key: K, value: V, hash: u64, weight: u32, expires_at: u64, now: u64) -> Self {
        Entry {
            key,
            value,
            hash,
            weight,
            queue: 0,
            freq: 0,
            bucket: NO_BUCKET,
            expires_at,
            timer: NEVER,
            accessed_at: AtomicU64::new(now),
        }
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
        let e = Entry::new(1u8, 2u8, 0, 1, 100, 10);
        assert_eq!(e.deadline(None), 100);
        assert_eq!(e.deadline(Some(50)), 60);
        assert_eq!(e.deadline(Some(500)), 100);
        assert!(!e.is_expired(Some(50), 59));
        assert!(e.is_expired(Some(50), 60));
        let forever = Entry::new(1u8, 2u8, 0, 1, NEVER, 10);
        assert_eq!(forever.deadline(None), NEVER);
        assert_eq!(forever.deadline(Some(u64::MAX)), NEVER);
    }
}
