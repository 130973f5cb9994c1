//! Eviction policies. Each is a plain single-threaded structure over the shard's slab; this module is the
//! one place that dispatches between them.

mod hybrid;
pub(crate) use hybrid::READ;
mod lfu;
mod lru;
mod miniature;
pub(crate) use miniature::Adaptation;
#[cfg(feature = "snapshot")]
pub(crate) use miniature::MiniatureState;
mod sketch;
mod ttl;

use super::expiry::TimerWheel;
use super::slab::Slab;

/// Which entries leave first when the cache is full.
///
/// Expired entries always leave before any live entry, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[non_exhaustive]
pub enum Policy {
    /// Least recently used goes first (exact order within a shard).
    Lru,
    /// Least frequently used goes first, ties by recency; counts are halved as they age.
    Lfu,
    /// The entry closest to its expiry goes first; entries without a deadline follow in LRU order.
    Ttl,
    /// W-TinyLFU: an LRU window in front of a segmented LRU guarded by a frequency sketch. Resists
    /// scans, and adapts to recency- and frequency-heavy loads: the window's size (1% to 99% of the
    /// capacity) is the one that hits most in a miniature simulation of six sizes on a sample of the
    /// keys. The default.
    #[default]
    Hybrid,
}

impl Policy {
    /// The policy's short name, as used in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Lru => "lru",
            Policy::Lfu => "lfu",
            Policy::Ttl => "ttl",
            Policy::Hybrid => "hybrid",
        }
    }
}

/// The state of one shard's policy.
#[derive(Debug)]
pub(crate) enum PolicyState {
    Lru(lru::Lru),
    Lfu(lfu::Lfu),
    Ttl(ttl::Ttl),
    Hybrid(hybrid::Hybrid),
}

impl PolicyState {
    pub(crate) fn new(policy: Policy, capacity: u64) -> Self {
        match policy {
            Policy::Lru => PolicyState::Lru(lru::Lru::default()),
            Policy::Lfu => PolicyState::Lfu(lfu::Lfu::default()),
            Policy::Ttl => PolicyState::Ttl(ttl::Ttl::default()),
            Policy::Hybrid => PolicyState::Hybrid(hybrid::Hybrid::new(capacity)),
        }
    }

    /// A new entry `idx` joined the shard.
    pub(crate) fn admit<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        match self {
            PolicyState::Lru(p) => p.admit(slab, idx),
            PolicyState::Lfu(p) => p.admit(slab, idx),
            PolicyState::Ttl(p) => p.lru.admit(slab, idx),
            PolicyState::Hybrid(p) => p.admit(slab, idx),
        }
    }

    /// True when the policy decides between a newcomer and the residents (W-TinyLFU's admission
    /// filter), so the newcomer joins before room is made. The others make room among the residents
    /// first, as the textbook LRU and LFU do.
    pub(crate) fn filters_admission(&self) -> bool {
        matches!(self, PolicyState::Hybrid(_))
    }

    /// Entry `idx`, unlinked while its value was replaced, comes back: used once more than before.
    pub(crate) fn readmit<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        match self {
            PolicyState::Lfu(p) => p.readmit(slab, idx),
            _ => self.admit(slab, idx),
        }
    }

    /// Slot `new` took over `old`'s place in a filtering policy (a new value for the key, `old_weight`
    /// before); counts as an access.
    pub(crate) fn replace<K, V>(&mut self, slab: &mut Slab<K, V>, old: u32, new: u32, old_weight: u32) {
        debug_assert!(self.filters_admission(), "only W-TinyLFU keeps an entry linked while its value is replaced");
        if let PolicyState::Hybrid(p) = self {
            p.replace(slab, old, new, old_weight);
        }
    }

    /// Entry `idx` was read (or overwritten).
    pub(crate) fn touch<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        match self {
            PolicyState::Lru(p) => p.touch(slab, idx),
            PolicyState::Lfu(p) => p.touch(slab, idx),
            PolicyState::Ttl(p) => p.lru.touch(slab, idx),
            PolicyState::Hybrid(p) => p.touch(slab, idx),
        }
    }

    /// Entry `idx` is leaving the shard (for any cause).
    pub(crate) fn unlink<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        match self {
            PolicyState::Lru(p) => p.unlink(slab, idx),
            PolicyState::Lfu(p) => p.unlink(slab, idx),
            PolicyState::Ttl(p) => p.lru.unlink(slab, idx),
            PolicyState::Hybrid(p) => p.unlink(slab, idx),
        }
    }

    /// The shard's capacity is now `capacity` (the caller evicts down to it).
    pub(crate) fn set_capacity<K, V>(&mut self, slab: &mut Slab<K, V>, capacity: u64) {
        if let PolicyState::Hybrid(p) = self {
            p.set_capacity(slab, capacity);
        }
    }

    /// Hands the policy's sampled accesses to the cache's miniature and applies what it chose (W-TinyLFU),
    /// after a write. True when a weighted cache should re-estimate how many entries its capacity holds.
    pub(crate) fn adapt<K, V>(&mut self, slab: &mut Slab<K, V>, adaptation: &Adaptation) -> bool {
        match self {
            PolicyState::Hybrid(p) => p.adapt(slab, adaptation),
            _ => false,
        }
    }

    /// Whether victims are chosen by the deadline the timer wheel filed them under (`Policy::Ttl`).
    pub(crate) fn by_deadline(&self) -> bool {
        matches!(self, PolicyState::Ttl(_))
    }

    /// The entry to evict next for capacity.
    pub(crate) fn victim<K, V>(&mut self, slab: &mut Slab<K, V>, wheel: &TimerWheel) -> Option<u32> {
        match self {
            PolicyState::Lru(p) => p.victim(),
            PolicyState::Lfu(p) => p.victim(),
            PolicyState::Ttl(p) => p.victim(wheel),
            PolicyState::Hybrid(p) => p.victim(slab),
        }
    }

    /// The entries, most valuable first: roughly the reverse of the order the policy would evict them in
    /// (for warm restart and hot lists). `Policy::Ttl`'s deadline order is the shard's to apply.
    pub(crate) fn by_value<K, V>(&self, slab: &Slab<K, V>) -> Vec<u32> {
        match self {
            PolicyState::Lru(p) => p.by_value(slab),
            PolicyState::Lfu(p) => p.by_value(slab),
            PolicyState::Ttl(p) => p.lru.by_value(slab),
            PolicyState::Hybrid(p) => p.by_value(slab),
        }
    }

    /// The policy's estimate of how often entry `idx` has been used (0 for the policies that do not count).
    pub(crate) fn frequency<K, V>(&self, slab: &Slab<K, V>, idx: u32) -> u8 {
        match self {
            PolicyState::Lfu(_) => slab.meta(idx).freq,
            PolicyState::Hybrid(p) => p.frequency(slab, idx),
            PolicyState::Lru(_) | PolicyState::Ttl(_) => 0,
        }
    }

    /// Where entry `idx` sits in the policy, for a snapshot (W-TinyLFU: its segment and mark; 0 for the
    /// others).
    pub(crate) fn place<K, V>(&self, slab: &Slab<K, V>, idx: u32) -> u8 {
        match self {
            PolicyState::Hybrid(p) => p.place(slab, idx),
            _ => 0,
        }
    }

    #[cfg(feature = "snapshot")]
    /// The window's share of the capacity (W-TinyLFU only).
    pub(crate) fn window_share(&self) -> Option<f64> {
        match self {
            PolicyState::Hybrid(p) => Some(p.window_share()),
            _ => None,
        }
    }

    #[cfg(feature = "snapshot")]
    /// How far the counts are towards their next halving (0 to 1; LFU's, W-TinyLFU's sketch's).
    pub(crate) fn ageing(&self) -> Option<f64> {
        match self {
            PolicyState::Lfu(p) => Some(p.ageing()),
            PolicyState::Hybrid(p) => Some(p.ageing()),
            _ => None,
        }
    }

    #[cfg(feature = "snapshot")]
    /// Puts the counts `progress` of the way towards their next halving (LFU, W-TinyLFU).
    pub(crate) fn set_ageing(&mut self, progress: f64) {
        match self {
            PolicyState::Lfu(p) => p.set_ageing(progress),
            PolicyState::Hybrid(p) => p.set_ageing(progress),
            _ => {}
        }
    }

    #[cfg(feature = "snapshot")]
    /// Prepares for about `entries` restored entries, W-TinyLFU's window at `share` of the capacity.
    pub(crate) fn prepare_restore<K, V>(&mut self, slab: &mut Slab<K, V>, share: Option<f64>, entries: usize) {
        if let PolicyState::Hybrid(p) = self {
            p.prepare_restore(slab, share, entries);
        }
    }

    /// A restored entry of hash `hash` about to join: it was used about `frequency` times before and sat
    /// at `place` (W-TinyLFU raises the key's sketch counters, so that admission judges it as the old
    /// cache would have, and admits it to the segment it was saved from).
    pub(crate) fn expect_restored(&mut self, hash: u64, frequency: u8, place: u8) {
        if let PolicyState::Hybrid(p) = self {
            p.expect_restored(hash, frequency, place);
        }
    }

    /// The restored entry announced by [`expect_restored`](Self::expect_restored) has been stored.
    pub(crate) fn restored(&mut self) {
        if let PolicyState::Hybrid(p) = self {
            p.restored();
        }
    }

    /// A restored entry `idx` has joined: it was used about `frequency` times before (LFU's count).
    pub(crate) fn restore_frequency<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32, frequency: u8) {
        if let PolicyState::Lfu(p) = self {
            p.set_frequency(slab, idx, frequency);
        }
    }

    /// Checks the policy's structures against the slab; returns how many entries it tracks.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate<K, V>(&self, slab: &Slab<K, V>) -> usize {
        match self {
            PolicyState::Lru(p) => p.validate(slab),
            PolicyState::Lfu(p) => p.validate(slab),
            PolicyState::Ttl(p) => p.lru.validate(slab),
            PolicyState::Hybrid(p) => p.validate(slab),
        }
    }
}
