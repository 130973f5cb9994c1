//! Per-path locks, and the per-path state that must stay in memory whatever the cache evicts.
//!
//! # Design
//! Paths hash onto a fixed array of stripes. A stripe's mutex serialises, for the paths that hash to it:
//! every backend call that reads or changes a file (fill on a miss, write-through, flush of a dirty file,
//! commit of a streamed file, remove, rename), every insert into the content cache, and the state kept
//! here. Hence:
//! - one fill per path however many readers miss at once (later readers find the cache filled);
//! - a fill can never overwrite newer data: a write to the same path waits for it, or it for the write;
//! - the flusher and `flush()` never write two versions of a file out of order.
//!
//! Read *hits* take no stripe lock: they go straight to the content cache.
//!
//! Per path this module keeps (see [`Slot`]):
//! - *held* content the cache must not lose: dirty write-back data until it is written, and files pinned
//!   by a high-priority warm. Each is also put in the content cache so hits stay fast; if the cache
//!   evicts it, a miss finds it here before going to the backend;
//! - for a large file whose chunks may be cached, its chunk generation and length, so that a change can
//!   drop the chunks and an open reader can tell that its file changed under it.
//!
//! A path's entry exists only while it holds something. Lock order: at most two stripes are held at once,
//! lower index first ([`PathLocks::lock_pair`]), or all of them in index order ([`PathLocks::lock_all`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::sync::{Mutex, MutexGuard};

/// Stripes: enough that unrelated paths rarely share one. Two under loom, so that models see paths
/// share a stripe.
#[cfg(not(loom))]
const STRIPES: usize = 1024;
#[cfg(loom)]
const STRIPES: usize = 2;

/// Write-back state of a dirty file (plain data; `write_back.rs` decides what it means).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dirty {
    /// When the flusher should write it (pushed back after a failure).
    pub(crate) due: Instant,
    /// When it was written (its metadata's modification time until flushed).
    pub(crate) modified: SystemTime,
    /// Failed flush attempts in a row (for the back-off).
    pub(crate) attempts: u32,
}

/// The chunk generation of a large file (see `content.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunks {
    /// Changes on every change of the file's content.
    pub(crate) generation: u64,
    /// The file's length under this generation.
    pub(crate) len: u64,
}

/// What one path holds. Invariant: `held` is `Some` exactly when `dirty` is or `pins > 0`.
#[derive(Debug, Default)]
struct FileState {
    held: Option<Bytes>,
    dirty: Option<Dirty>,
    pins: u32,
    chunks: Option<Chunks>,
}

impl FileState {
    fn is_empty(&self) -> bool {
        self.held.is_none() && self.chunks.is_none()
    }
}

/// A path-keyed map. Hashed like the caches (`super::hasher`): random per instance, fixed under loom,
/// whose models need the same iteration order on every run.
type PathMap<V> = hashbrown::HashMap<Arc<str>, V, ahash::RandomState>;

/// What one stripe guards: the state of the paths that hash to it.
#[derive(Debug)]
pub(crate) struct Stripe {
    files: PathMap<FileState>,
}

/// The per-path locks.
#[derive(Debug)]
pub(crate) struct PathLocks {
    stripes: Box<[Mutex<Stripe>]>,
    hasher: ahash::RandomState,
}

impl PathLocks {
    pub(crate) fn new() -> Self {
        let hasher = super::hasher();
        let stripes =
            (0..STRIPES).map(|_| Mutex::new(Stripe { files: PathMap::with_hasher(hasher.clone()) })).collect();
        PathLocks { stripes, hasher }
    }

    fn index(&self, path: &str) -> usize {
        self.hasher.hash_one(path) as usize & (STRIPES - 1)
    }

    /// Locks `path` (its stripe).
    pub(crate) fn lock<'a>(&'a self, path: &'a str) -> PathGuard<'a> {
        PathGuard { stripe: self.stripes[self.index(path)].lock(), path }
    }

    /// Locks two paths, lower stripe index first, so that two callers locking the same pair crosswise
    /// cannot deadlock.
    pub(crate) fn lock_pair<'a>(&'a self, a: &'a str, b: &'a str) -> PairGuard<'a> {
        let (i, j) = (self.index(a), self.index(b));
        let (first, second) = match i.cmp(&j) {
            std::cmp::Ordering::Equal => (self.stripes[i].lock(), None),
            std::cmp::Ordering::Less => {
                let first = self.stripes[i].lock();
                (first, Some(self.stripes[j].lock()))
            }
            std::cmp::Ordering::Greater => {
                let first = self.stripes[j].lock();
                (first, Some(self.stripes[i].lock()))
            }
        };
        PairGuard { first, second, a_in_first: i <= j, a, b }
    }

    /// Locks every stripe, in index order.
    pub(crate) fn lock_all(&self) -> AllGuard<'_> {
        AllGuard { locks: self, stripes: self.stripes.iter().map(|s| s.lock()).collect() }
    }

    /// Every dirty path whose state satisfies `due`, one stripe locked at a time.
    pub(crate) fn dirty_paths(&self, due: impl Fn(&Dirty) -> bool) -> Vec<Arc<str>> {
        let mut paths = Vec::new();
        for stripe in self.stripes.iter() {
            let stripe = stripe.lock();
            let dirty = stripe.files.iter().filter(|(_, f)| f.dirty.as_ref().is_some_and(&due));
            paths.extend(dirty.map(|(k, _)| Arc::clone(k)));
        }
        paths
    }
}

/// One path, locked.
#[derive(Debug)]
pub(crate) struct PathGuard<'a> {
    stripe: MutexGuard<'a, Stripe>,
    path: &'a str,
}

impl PathGuard<'_> {
    /// The path's state.
    pub(crate) fn slot(&mut self) -> Slot<'_> {
        Slot { files: &mut self.stripe.files, path: self.path }
    }
}

/// Two paths, locked.
#[derive(Debug)]
pub(crate) struct PairGuard<'a> {
    first: MutexGuard<'a, Stripe>,
    second: Option<MutexGuard<'a, Stripe>>,
    a_in_first: bool,
    a: &'a str,
    b: &'a str,
}

impl PairGuard<'_> {
    fn stripe_of(&mut self, a: bool) -> &mut Stripe {
        match &mut self.second {
            Some(second) if a != self.a_in_first => second,
            _ => &mut self.first,
        }
    }

    /// The state of the first path given to [`PathLocks::lock_pair`].
    pub(crate) fn a(&mut self) -> Slot<'_> {
        let path = self.a;
        Slot { files: &mut self.stripe_of(true).files, path }
    }

    /// The state of the second path.
    pub(crate) fn b(&mut self) -> Slot<'_> {
        let path = self.b;
        Slot { files: &mut self.stripe_of(false).files, path }
    }
}

/// Every path, locked.
#[derive(Debug)]
pub(crate) struct AllGuard<'a> {
    locks: &'a PathLocks,
    stripes: Vec<MutexGuard<'a, Stripe>>,
}

impl AllGuard<'_> {
    /// Every path with state for which `pred` holds.
    pub(crate) fn paths(&self, mut pred: impl FnMut(&str) -> bool) -> Vec<Arc<str>> {
        let keys = self.stripes.iter().flat_map(|s| s.files.keys());
        keys.filter(|k| pred(k)).cloned().collect()
    }

    /// Every dirty path for which `pred` holds.
    pub(crate) fn dirty_paths(&self, mut pred: impl FnMut(&str) -> bool) -> Vec<Arc<str>> {
        let files = self.stripes.iter().flat_map(|s| s.files.iter());
        files.filter(|(k, f)| f.dirty.is_some() && pred(k)).map(|(k, _)| Arc::clone(k)).collect()
    }

    /// The state of `path`.
    pub(crate) fn slot<'s>(&'s mut self, path: &'s str) -> Slot<'s> {
        let i = self.locks.index(path);
        Slot { files: &mut self.stripes[i].files, path }
    }
}

/// One path's state, its stripe locked: the typed operations on it.
#[derive(Debug)]
pub(crate) struct Slot<'s> {
    files: &'s mut PathMap<FileState>,
    path: &'s str,
}

impl<'s> Slot<'s> {
    /// The path.
    pub(crate) fn path(&self) -> &'s str {
        self.path
    }

    fn state(&self) -> Option<&FileState> {
        self.files.get(self.path)
    }

    fn state_mut(&mut self) -> &mut FileState {
        self.files.entry(Arc::from(self.path)).or_default()
    }

    /// Drops the path's entry once it holds nothing.
    fn tidy(&mut self) {
        if self.files.get(self.path).is_some_and(FileState::is_empty) {
            self.files.remove(self.path);
        }
    }

    /// The content held in memory (dirty or pinned), if any.
    pub(crate) fn held(&self) -> Option<&Bytes> {
        self.state()?.held.as_ref()
    }

    /// The dirty content and its state, if the path is dirty.
    pub(crate) fn dirty(&self) -> Option<(&Bytes, &Dirty)> {
        let s = self.state()?;
        Some((s.held.as_ref()?, s.dirty.as_ref()?))
    }

    /// Stores `data` as the path's dirty content; returns the length of the dirty content it replaces.
    /// Pins survive: they hold whatever the current content is.
    pub(crate) fn set_dirty(&mut self, data: Bytes, dirty: Dirty) -> Option<u64> {
        let s = self.state_mut();
        let replaced = s.dirty.and(s.held.as_ref()).map(|d| d.len() as u64);
        s.held = Some(data);
        s.dirty = Some(dirty);
        replaced
    }

    /// Records a failed flush: the next attempt is due at `due`. Returns the attempts so far.
    pub(crate) fn flush_failed(&mut self, due: impl FnOnce(u32) -> Instant) -> u32 {
        let Some(dirty) = self.files.get_mut(self.path).and_then(|s| s.dirty.as_mut()) else { return 0 };
        dirty.attempts += 1;
        dirty.due = due(dirty.attempts);
        dirty.attempts
    }

    /// The dirty content was written: it is clean now (kept only if pinned). Returns its length.
    pub(crate) fn mark_clean(&mut self) -> Option<u64> {
        let s = self.files.get_mut(self.path)?;
        s.dirty.take()?;
        let len = s.held.as_ref().map_or(0, |d| d.len() as u64);
        if s.pins == 0 {
            s.held = None;
        }
        self.tidy();
        Some(len)
    }

    /// The file's content changed by another route (written through, committed, removed, renamed) or
    /// became unknown: dirty data goes, and pins go with the old content. Returns the length of the
    /// dirty data dropped, if any.
    pub(crate) fn replace_held(&mut self) -> Option<u64> {
        let s = self.files.get_mut(self.path)?;
        let dirty = s.dirty.take().and(s.held.as_ref()).map(|d| d.len() as u64);
        s.held = None;
        s.pins = 0;
        self.tidy();
        dirty
    }

    /// Holds `data` (the current content) until [`unpin`](Self::unpin), whatever the cache evicts.
    pub(crate) fn pin(&mut self, data: &Bytes) {
        let s = self.state_mut();
        s.held.get_or_insert_with(|| data.clone());
        s.pins += 1;
    }

    /// Releases one pin.
    pub(crate) fn unpin(&mut self) {
        let Some(s) = self.files.get_mut(self.path) else { return };
        s.pins = s.pins.saturating_sub(1);
        if s.pins == 0 && s.dirty.is_none() {
            s.held = None;
        }
        self.tidy();
    }

    /// The chunk generation recorded for the path.
    pub(crate) fn chunks(&self) -> Option<Chunks> {
        self.state()?.chunks
    }

    /// Records the chunk generation for the path.
    pub(crate) fn set_chunks(&mut self, chunks: Chunks) {
        self.state_mut().chunks = Some(chunks);
    }

    /// Forgets the chunk generation (the file changed); returns it.
    pub(crate) fn take_chunks(&mut self) -> Option<Chunks> {
        let chunks = self.files.get_mut(self.path)?.chunks.take();
        self.tidy();
        chunks
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn dirty() -> Dirty {
        Dirty { due: Instant::now(), modified: SystemTime::now(), attempts: 0 }
    }

    #[test]
    fn a_path_holds_dirty_and_pinned_content_until_released() {
        let locks = PathLocks::new();
        let mut g = locks.lock("a");
        let mut s = g.slot();
        assert!(s.held().is_none() && s.dirty().is_none());
        assert_eq!(s.set_dirty(Bytes::from_static(b"one"), dirty()), None);
        assert_eq!(s.set_dirty(Bytes::from_static(b"three"), dirty()), Some(3));
        s.pin(&Bytes::from_static(b"ignored: already held"));
        assert_eq!(s.flush_failed(|_| Instant::now()), 1);
        assert_eq!(s.mark_clean(), Some(5));
        assert_eq!(s.held().map(|b| &b[..]), Some(&b"three"[..]), "still pinned");
        s.unpin();
        assert!(s.held().is_none());
        assert_eq!(s.mark_clean(), None);
        drop(g);
        assert!(locks.lock_all().paths(|_| true).is_empty(), "nothing left behind");
    }

    #[test]
    fn replacing_drops_dirty_data_and_pins() {
        let locks = PathLocks::new();
        let mut g = locks.lock("a");
        let mut s = g.slot();
        s.pin(&Bytes::from_static(b"old"));
        s.set_dirty(Bytes::from_static(b"new!"), dirty());
        s.set_chunks(Chunks { generation: 1, len: 9 });
        assert_eq!(s.replace_held(), Some(4));
        assert!(s.held().is_none());
        assert_eq!(s.take_chunks(), Some(Chunks { generation: 1, len: 9 }));
        assert_eq!(s.replace_held(), None);
        drop(g);
        assert!(locks.lock_all().paths(|_| true).is_empty());
    }

    #[test]
    fn pairs_and_all_see_the_same_state() {
        let locks = PathLocks::new();
        for (a, b) in [("x", "y"), ("y", "x"), ("same", "same")] {
            let mut pair = locks.lock_pair(a, b);
            pair.a().set_dirty(Bytes::from_static(b"1"), dirty());
            pair.b().set_chunks(Chunks { generation: 2, len: 1 });
            drop(pair);
            let mut all = locks.lock_all();
            assert!(all.slot(a).dirty().is_some());
            assert_eq!(all.slot(b).chunks().map(|c| c.generation), Some(2));
            assert_eq!(all.dirty_paths(|_| true).len(), 1);
            all.slot(a).replace_held();
            all.slot(b).take_chunks();
        }
        assert_eq!(locks.dirty_paths(|_| true).len(), 0);
    }
}
