//! Why an entry left the cache, and the record of one departure.

/// Why an entry left the cache; given to the eviction listener and counted in
/// [`CacheStats::removed_by_cause`](crate::CacheStats::removed_by_cause).
///
/// An entry refused on insert because it alone outweighs its shard is handed to the listener with
/// [`Capacity`](Self::Capacity), but counted in [`CacheStats::rejections`](crate::CacheStats::rejections),
/// not in `removed_by_cause`: it never arrived, so `entries = inserts + updates - departures` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemovalCause {
    /// Evicted by the policy to make room, or refused because it alone outweighs the capacity.
    Capacity,
    /// Its time-to-live or time-to-idle ran out. A deadline is exclusive: an entry is expired from the
    /// instant of its deadline on (a zero TTL expires at once).
    Expired,
    /// Dropped by `invalidate`, `invalidate_if` or `invalidate_all`.
    Invalidated,
    /// Overwritten by an `insert` of the same key (the listener gets the *old* value).
    Replaced,
    /// Taken out by [`Cache::remove`](crate::Cache::remove).
    Removed,
}

impl RemovalCause {
    /// Every cause, in a fixed order (the index used by the statistics).
    pub const ALL: [RemovalCause; 5] = [
        RemovalCause::Capacity,
        RemovalCause::Expired,
        RemovalCause::Invalidated,
        RemovalCause::Replaced,
        RemovalCause::Removed,
    ];

    /// The cause's short name, as used in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            RemovalCause::Capacity => "capacity",
            RemovalCause::Expired => "expired",
            RemovalCause::Invalidated => "invalidated",
            RemovalCause::Replaced => "replaced",
            RemovalCause::Removed => "removed",
        }
    }

    /// True for the causes the cache decided on its own (capacity and expiry).
    pub fn was_evicted(self) -> bool {
        matches!(self, RemovalCause::Capacity | RemovalCause::Expired)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// An entry that left a shard: its slot, retired and still readable by whoever holds the guard that was
/// pinned when it was removed (see `slab.rs`), and why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Removal {
    pub(crate) idx: u32,
    pub(crate) cause: RemovalCause,
}

/// Departures collected under a lock; four fit inline, so a typical insert allocates nothing for them.
pub(crate) type Removals = smallvec::SmallVec<[Removal; 4]>;
