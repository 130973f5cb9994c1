//! Per-path locking, and the file data that must stay in memory whatever the cache evicts.
//!
//! # Design
//! Paths hash onto a fixed array of stripes. A stripe's mutex serialises, for the paths that hash to it:
//! every backend call (fill on a miss, write-through, flush of a dirty file, remove), every insert into
//! the content cache, and the stripe's resident map. Hence:
//! - one fill per path however many readers miss at once (later readers find the cache filled);
//! - a fill can never overwrite newer data: a write to the same path waits for it, or it for the write;
//! - the flusher and `flush()` never write two versions of a file out of order.
//!
//! Read *hits* take no stripe lock: they go straight to the content cache.
//!
//! The resident map holds what the content cache must not lose: dirty write-back data (until it is
//! written) and files pinned by a high-priority warm. Each such file is also put in the content cache,
//! so hits stay fast; if the cache evicts it, a miss finds it here before going to the backend.
//! It also records, for each large file whose chunks are cached, a generation and its chunk count, so
//! a write can drop the chunks and an open reader can tell that its file changed under it.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::sync::{Mutex, MutexGuard};
use bytes::Bytes;

/// Stripes: enough that unrelated paths rarely share one. Two under loom, so that models see paths
/// share a stripe.
#[cfg(not(loom))]
const STRIPES: usize = 1024;
#[cfg(loom)]
const STRIPES: usize = 2;

/// Write-back state of a dirty file.
#[derive(Debug)]
pub(crate) struct Dirty {
    /// When the flusher should write it (pushed back after a failure).
    pub(crate) due: Instant,
    /// When it was written (its metadata's modification time until flushed).
    pub(crate) modified: SystemTime,
    /// Failed flush attempts in a row (for the back-off).
    pub(crate) attempts: u32,
}

/// A file held in memory outside the cache's control.
#[derive(Debug)]
pub(crate) struct Resident {
    pub(crate) data: Bytes,
    pub(crate) dirty: Option<Dirty>,
    /// High-priority warms holding it.
    pub(crate) pins: u32,
}

/// A large file whose chunks may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunked {
    /// Changes on every write or removal of the file.
    pub(crate) generation: u64,
    /// The file's length when its chunks were first cached.
    pub(crate) len: u64,
}

/// A path-keyed map. Hashed like the caches (`super::hasher`): random per instance, fixed under loom,
/// whose models need the same iteration order on every run.
pub(crate) type PathMap<V> = hashbrown::HashMap<Arc<str>, V, ahash::RandomState>;

/// What one stripe guards.
#[derive(Debug)]
pub(crate) struct Stripe {
    pub(crate) resident: PathMap<Resident>,
    pub(crate) chunked: PathMap<Chunked>,
}

impl Stripe {
    fn new(hasher: &ahash::RandomState) -> Self {
        Stripe { resident: PathMap::with_hasher(hasher.clone()), chunked: PathMap::with_hasher(hasher.clone()) }
    }

    /// The resident entry for `path`, dropped if it is neither dirty nor pinned any more.
    pub(crate) fn tidy(&mut self, path: &str) {
        if self.resident.get(path).is_some_and(|r| r.dirty.is_none() && r.pins == 0) {
            self.resident.remove(path);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Stripes {
    locks: Box<[Mutex<Stripe>]>,
    hasher: ahash::RandomState,
}

impl Stripes {
    pub(crate) fn new() -> Self {
        let hasher = super::hasher();
        Stripes { locks: (0..STRIPES).map(|_| Mutex::new(Stripe::new(&hasher))).collect(), hasher }
    }

    /// Locks the stripe of `path`.
    pub(crate) fn lock(&self, path: &str) -> MutexGuard<'_, Stripe> {
        self.locks[self.index(path)].lock()
    }

    fn index(&self, path: &str) -> usize {
        self.hasher.hash_one(path) as usize & (STRIPES - 1)
    }

    /// Locks the stripes of two paths, lower index first, so that two callers locking the same pair
    /// crosswise cannot deadlock (nothing else holds two stripes). The second guard is `None` when both
    /// paths share a stripe.
    pub(crate) fn lock_pair(&self, a: &str, b: &str) -> (MutexGuard<'_, Stripe>, Option<MutexGuard<'_, Stripe>>) {
        let (i, j) = (self.index(a), self.index(b));
        if i == j {
            return (self.locks[i].lock(), None);
        }
        if i < j {
            let first = self.locks[i].lock();
            (first, Some(self.locks[j].lock()))
        } else {
            let second = self.locks[j].lock();
            (self.locks[i].lock(), Some(second))
        }
    }

    /// Each stripe in turn, locked.
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, Stripe>> {
        self.locks.iter().map(|l| l.lock())
    }
}
