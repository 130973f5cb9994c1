//! Time-to-live first: when capacity forces an eviction, the entry closest to expiring goes first
//! (earliest deadline, at the timer wheel's bucket precision); entries that never expire go in LRU order
//! after every entry that will.

use super::lru::Lru;
use crate::cache::expiry::TimerWheel;

#[derive(Debug, Default)]
pub(crate) struct Ttl {
    pub(crate) lru: Lru,
}

impl Ttl {
    pub(crate) fn victim(&self, wheel: &TimerWheel) -> Option<u32> {
        wheel.earliest().or_else(|| self.lru.victim())
    }
}
