//! Entry storage shared by a shard's lock-free readers and its writer: slots that never move, an index
//! readers search, and the deferred reclamation that keeps a removed entry readable for as long as a
//! reader may hold it.
//!
//! # Design
//! A shard's [`Store`] holds its slots in a [`Segments`] array (slots never move), its hash [`Index`],
//! and, once some entry may expire, a parallel array of timers. Readers reach it through the shard,
//! without a lock, under an epoch guard: they search the index, then read the slot it names (the key,
//! the value, the mark, the timer). The shard's writer, its lock held, owns a [`Slab`]: the free list,
//! the counts, and the right to change slots.
//!
//! **Why readers never see a slot change under them.** A slot's entry (key and value) is written only
//! while the slot is vacant, which no reader can reach: it is in no index cell, and the epoch guarantees
//! that no reader still holds a cell that named it. The writer publishes a slot by storing its index cell
//! (`Release`), after writing it. To remove an entry the writer takes it out of the index and *retires*
//! the slot: nothing in it changes, and a reader that found it a moment ago may go on reading it. Retired
//! slots are handed to the epoch in batches ([`Slab::publish_retired`]); the epoch runs the batch's
//! reclamation only after every thread pinned at that moment has unpinned, so after every reader that
//! could have found one of its slots. Reclamation drops the entries (user `Drop` code, on whichever
//! thread collects, under no lock of ours) and queues the slots for the writer, which makes them vacant
//! again when it next needs one, changing their generation.
//!
//! A new value for an existing key goes into a new slot: the key moves over bit for bit (the old slot is
//! retired with its key marked as moved, so reclamation drops only its value), and the index cell is
//! switched to the new slot in one store. So a value a reader may be cloning is never overwritten.
//!
//! **What is whose.** The shared slots hold only what readers touch: the entry (read only), the mark and
//! the generation (atomics); the timers' side table likewise holds only the deadline and the last access
//! (atomics). The writer's bookkeeping for each slot, its [`Meta`] and its [`Wheel`], lives in plain
//! vectors of the [`Slab`] (indexed like the slots, grown with them), which no reader can reach: policy
//! work touches contiguous memory and costs no more than it did behind a lock. Reclamation touches only
//! the entries of its batch, which nobody else references any more, and the queue it hands the slots
//! back through (a mutex).
//!
//! Slots are threaded by intrusive links (in the `Meta`s), so queue membership costs no allocation: one
//! pair for the eviction policy's queues (a vacant slot's pair links it into the free list), and one in
//! the `Wheel`s for the timer wheel.

use std::mem::MaybeUninit;
use std::sync::Arc;

use crossbeam_epoch::Guard;

use super::entry::{Entry, Meta, State, Timer, Wheel};
use super::index::{Index, IndexCounts};
use super::segments::Segments;
use crate::sync::{AtomicBool, AtomicU8, AtomicU32, Mutex, Ordering, UnsafeCell};

/// The "no slot" index.
pub(crate) const NIL: u32 = u32::MAX;

/// Retired slots handed to the epoch at once (fewer deferred functions; a bounded delay).
#[cfg(not(loom))]
const RETIRE_BATCH: usize = 64;
#[cfg(loom)]
const RETIRE_BATCH: usize = 1;

/// Which pair of links a list threads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The eviction policy's queues (and the free list for vacant slots).
    Policy,
    /// The timer wheel's buckets (the side table's links).
    Timer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Link {
    pub(crate) const UNLINKED: Link = Link { prev: NIL, next: NIL };
}

/// One slot: what readers touch. (The writer's bookkeeping for the slot is in [`Slab`]'s own vectors.)
pub(crate) struct Slot<K, V> {
    /// Initialised while the slot is occupied or retired (for a retired slot whose key moved, only the
    /// value is still owned here).
    entry: UnsafeCell<MaybeUninit<Entry<K, V>>>,
    /// Reference mark (W-TinyLFU): set by readers, taken by the policy. Relaxed: it orders nothing; a mark
    /// set just as the policy takes it may count in either pass.
    pub(crate) mark: AtomicU8,
    /// Changes each time the slot is reused, so that a read-buffer record of an earlier entry is
    /// ignored. Written by the writer while the slot is vacant; Relaxed: readers copy it into a record
    /// that the writer validates against the slot's state anyway.
    generation: AtomicU32,
}

impl<K, V> Slot<K, V> {
    fn vacant() -> Self {
        Slot { entry: UnsafeCell::new(MaybeUninit::uninit()), mark: AtomicU8::new(0), generation: AtomicU32::new(0) }
    }

    /// The slot's generation (see the field).
    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The entry of a slot the caller knows is occupied or retired and not yet reclaimed.
    ///
    /// # Safety
    /// The slot must be occupied or retired, and stay unreclaimed while the reference lives: the caller
    /// found it through the index under `guard`-like protection (an epoch guard held since), or is the
    /// writer and knows its state. For a retired slot whose key moved, the key's bits are still there
    /// (and owned by the newer slot, which outlives the guard too).
    pub(crate) unsafe fn entry(&self) -> &Entry<K, V> {
        // SAFETY: by the contract the entry is initialised and not being written: writes happen only to
        // vacant slots, and reclamation only after every guard that could reach it is gone.
        self.entry.with(|p| unsafe { (*p).assume_init_ref() })
    }
}

/// A slot's timer (the part readers touch; its place in the wheel is the writer's, in [`Slab`]).
#[derive(Default)]
struct TimerSlot {
    timer: Timer,
}

/// A retired slot waiting for reclamation.
#[derive(Debug, Clone, Copy)]
struct Retired {
    idx: u32,
    /// Its key moved to a newer slot: reclamation drops only the value.
    key_moved: bool,
}

/// Batches handed to the epoch, and the slots whose reclamation has run.
#[derive(Debug, Default)]
struct Reclaim {
    /// Batches by id. A batch is taken out by whoever reclaims it: its deferred function, or the
    /// slab's `Drop`, which reclaims everything at once.
    batches: hashbrown::HashMap<u64, Vec<Retired>>,
    next_id: u64,
    /// Reclaimed slots, for the writer to make vacant again.
    done: Vec<u32>,
    /// Emptied batch vectors, reused so that steady churn allocates no new ones.
    spare: Vec<Vec<Retired>>,
    /// Slots in `batches`, all told.
    pending: usize,
}

impl Reclaim {
    /// Takes batch `id` out, if nobody has (its deferred function, or the slab's `Drop`, which empties
    /// every batch at once). Counted out in the same critical section, so that `pending` never counts a
    /// batch that is gone, whichever of the two comes first.
    fn take(&mut self, id: u64) -> Option<Vec<Retired>> {
        let batch = self.batches.remove(&id)?;
        self.pending -= batch.len();
        Some(batch)
    }

    /// Room in `done` and `spare` for every batch still pending, made by the writer: reclamation runs
    /// on whichever thread the epoch picks, a reader's `get` among them, and must not allocate there.
    fn reserve_for_pending(&mut self) {
        self.done.reserve(self.pending);
        self.spare.reserve(self.batches.len());
    }
}

/// What a shard's readers, its writer and reclamation share.
pub(crate) struct Store<K, V> {
    slots: Segments<Slot<K, V>>,
    timers: Segments<TimerSlot>,
    /// True once `timers` covers every slot. Stored `Release` after the timers exist; loaded `Acquire`.
    timed: AtomicBool,
    index: Index,
    /// Guards the reclamation bookkeeping only; held for a push or a take, never across user code.
    reclaim: Mutex<Reclaim>,
}

impl<K, V> std::fmt::Debug for Store<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("slots", &self.slots).finish_non_exhaustive()
    }
}

// SAFETY: a `Store` owns `K`s and `V`s (in its slots) and lets other threads read them (`&K`, `&V`,
// clones) and drop them (reclamation on the collecting thread): it is `Send` and `Sync` when `K` and
// `V` are both. Everything else in it is atomics, mutexes and the writer-only cells, which only the
// thread holding the shard's lock touches.
unsafe impl<K: Send + Sync, V: Send + Sync> Send for Store<K, V> {}
// SAFETY: see `Send`.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Store<K, V> {}

/// An entry a reader found, with the slot it lives in.
pub(crate) struct Found<'g, K, V> {
    pub(crate) idx: u32,
    pub(crate) slot: &'g Slot<K, V>,
    pub(crate) entry: &'g Entry<K, V>,
}

impl<K, V> Store<K, V> {
    fn new() -> (Self, IndexCounts) {
        let (index, counts) = Index::new();
        let store = Store {
            slots: Segments::new(),
            timers: Segments::new(),
            timed: AtomicBool::new(false),
            index,
            reclaim: Mutex::new(Reclaim::default()),
        };
        (store, counts)
    }

    /// The live entry for `key`, by its `hash`. Lock-free; the references live as long as `guard`.
    #[inline]
    pub(crate) fn find<'g, Q>(&'g self, hash: u64, key: &Q, guard: &'g Guard) -> Option<Found<'g, K, V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut found = None;
        self.index.find(hash, guard, |idx| {
            let slot = self.slots.at(idx);
            // SAFETY: the index named this slot under `guard`, so it is occupied (or retired since) and
            // is not reclaimed before `guard` is dropped (see the module docs); `found` lives no longer.
            let entry = unsafe { slot.entry() };
            let hit = entry.key.borrow() == key;
            if hit {
                found = Some(Found { idx, slot, entry });
            }
            hit
        });
        found
    }

    /// The entry at retired or occupied slot `idx` (see [`Slot::entry`] for the contract).
    ///
    /// # Safety
    /// As for [`Slot::entry`]: the caller holds a guard pinned since before the slot could have been
    /// handed to the epoch (it retired the slot itself, or found it through the index, under that guard).
    pub(crate) unsafe fn slot_entry(&self, idx: u32) -> &Entry<K, V> {
        // SAFETY: the caller's contract is the slot's.
        unsafe { self.slots.at(idx).entry() }
    }

    /// Asks the processor to fetch the index cell a search for `hash` starts at.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64, guard: &Guard) {
        self.index.prefetch(hash, guard);
    }

    /// Slot `idx`'s timer, if the shard has timers.
    #[inline]
    pub(crate) fn timer(&self, idx: u32) -> Option<&Timer> {
        // Acquire pairs with the Release in `enable_timers`: the timer table covers every slot.
        if !self.timed.load(Ordering::Acquire) {
            return None;
        }
        self.timers.get(idx).map(|t| &t.timer)
    }

    /// Whether batches handed to the epoch are still waiting for their reclamation.
    pub(crate) fn reclaiming(&self) -> bool {
        !self.reclaim.lock().batches.is_empty()
    }

    /// Reclaims batch `id` (from its deferred function): drops its entries and queues its slots.
    fn reclaim(&self, id: u64) {
        let Some(mut batch) = self.reclaim.lock().take(id) else { return };
        for r in &batch {
            // SAFETY: the batch's slots are retired and every reader that could reach them is gone (the
            // epoch ran this after they unpinned); the writer does not touch a retired slot's entry, and
            // the batch was taken out under the lock, so it is dropped exactly once.
            unsafe { self.drop_entry(*r) };
        }
        let mut r = self.reclaim.lock();
        // Within the capacity the writer reserved (`Reclaim::reserve_for_pending`): no allocation.
        r.done.extend(batch.iter().map(|r| r.idx));
        batch.clear();
        r.spare.push(batch);
    }

    /// Drops the entry of a retired slot (the value, and the key unless it moved).
    ///
    /// # Safety
    /// The slot must be retired, unreachable by any reader, and not dropped before.
    unsafe fn drop_entry(&self, r: Retired) {
        let slot = self.slots.at(r.idx);
        slot.entry.with_mut(|p| {
            // SAFETY: by the contract the entry is initialised and nobody else references it.
            unsafe {
                let entry = (*p).as_mut_ptr();
                std::ptr::drop_in_place(std::ptr::addr_of_mut!((*entry).value));
                if !r.key_moved {
                    std::ptr::drop_in_place(std::ptr::addr_of_mut!((*entry).key));
                }
            }
        });
    }
}

/// The writer's side of a shard's storage (its lock held).
pub(crate) struct Slab<K, V> {
    store: Arc<Store<K, V>>,
    /// Each slot's bookkeeping, by index: the writer's alone, so a plain vector (as long as the slots).
    metas: Vec<Meta>,
    /// Each slot's place in the timer wheel, once the slab has timers (as long as the slots).
    wheels: Vec<Wheel>,
    counts: IndexCounts,
    /// Head of the free list of vacant slots (threaded through their policy links).
    free: u32,
    /// Occupied slots.
    len: usize,
    /// Retired slots not yet handed to the epoch.
    retired: Vec<Retired>,
    /// Slots retired and not yet back on the free list (handed to the epoch, or in `retired`).
    in_limbo: usize,
    /// Total weight of the entries in `retired`.
    retired_weight: u64,
    /// Weight handed to the epoch since the caller last let it collect.
    unflushed_weight: u64,
    /// Scratch for taking reclaimed slots (swapped with the shared list, so neither is reallocated).
    scratch: Vec<u32>,
}

impl<K, V> std::fmt::Debug for Slab<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slab").field("len", &self.len).field("in_limbo", &self.in_limbo).finish_non_exhaustive()
    }
}

impl<K, V> Slab<K, V> {
    pub(crate) fn new() -> Self {
        let (store, counts) = Store::new();
        Slab {
            store: Arc::new(store),
            metas: Vec::new(),
            wheels: Vec::new(),
            counts,
            free: NIL,
            len: 0,
            retired: Vec::new(),
            in_limbo: 0,
            retired_weight: 0,
            unflushed_weight: 0,
            scratch: Vec::new(),
        }
    }

    /// The store readers use.
    pub(crate) fn store(&self) -> &Arc<Store<K, V>> {
        &self.store
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn slot(&self, idx: u32) -> &Slot<K, V> {
        self.store.slots.at(idx)
    }

    /// Slot `idx`'s bookkeeping.
    #[inline]
    pub(crate) fn meta(&self, idx: u32) -> &Meta {
        &self.metas[idx as usize]
    }

    /// Slot `idx`'s bookkeeping, to change.
    #[inline]
    pub(crate) fn meta_mut(&mut self, idx: u32) -> &mut Meta {
        &mut self.metas[idx as usize]
    }

    /// Slot `idx`'s mark (see [`Slot::mark`]).
    pub(crate) fn mark(&self, idx: u32) -> &AtomicU8 {
        &self.slot(idx).mark
    }

    /// The entry at occupied slot `idx`.
    pub(crate) fn entry(&self, idx: u32) -> &Entry<K, V> {
        debug_assert_eq!(self.meta(idx).state, State::Occupied);
        // SAFETY: the writer knows the slot is occupied (only it changes states), and a slot is retired
        // only by `&mut self` methods, which cannot run while this borrow lives.
        unsafe { self.slot(idx).entry() }
    }

    /// Whether slots have timers.
    pub(crate) fn has_timers(&self) -> bool {
        self.store.timed.load(Ordering::Relaxed)
    }

    /// Gives every slot, now and from now on, a [`Timer`].
    pub(crate) fn enable_timers(&mut self) {
        if self.has_timers() {
            return;
        }
        while self.store.timers.capacity() < self.store.slots.capacity() {
            self.store.timers.grow(|_| TimerSlot::default());
        }
        self.wheels.resize(self.metas.len(), Wheel::default());
        // Release: readers that see `timed` see timers for every slot.
        self.store.timed.store(true, Ordering::Release);
    }

    /// Slot `idx`'s timer; the slab must have timers.
    pub(crate) fn timer(&self, idx: u32) -> &Timer {
        &self.store.timers.at(idx).timer
    }

    /// Slot `idx`'s place in the wheel; the slab must have timers.
    #[inline]
    pub(crate) fn wheel(&self, idx: u32) -> &Wheel {
        &self.wheels[idx as usize]
    }

    #[inline]
    pub(crate) fn wheel_mut(&mut self, idx: u32) -> &mut Wheel {
        &mut self.wheels[idx as usize]
    }

    pub(crate) fn link(&self, idx: u32, lane: Lane) -> Link {
        match lane {
            Lane::Policy => self.meta(idx).link,
            Lane::Timer => self.wheel(idx).link,
        }
    }

    pub(crate) fn link_mut(&mut self, idx: u32, lane: Lane) -> &mut Link {
        match lane {
            Lane::Policy => &mut self.meta_mut(idx).link,
            Lane::Timer => &mut self.wheel_mut(idx).link,
        }
    }

    /// The occupied slot holding `key`, found by the writer.
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q, guard: &Guard) -> Option<u32>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // A slot in the index is occupied: the writer takes it out before retiring it.
        self.store.find(hash, key, guard).map(|f| f.idx)
    }

    /// A vacant slot, off the free list (refilled from reclaimed slots, or by growing).
    fn vacant_slot(&mut self) -> u32 {
        if self.free == NIL {
            let mut done = std::mem::take(&mut self.scratch);
            {
                let mut r = self.store.reclaim.lock();
                std::mem::swap(&mut done, &mut r.done);
                r.reserve_for_pending();
            }
            for &idx in &done {
                self.in_limbo -= 1;
                let slot = self.slot(idx);
                // Relaxed: the slot is unreachable by readers until it is published again.
                slot.generation.store(slot.generation.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
                let next = self.free;
                *self.meta_mut(idx) = Meta { link: Link { prev: NIL, next }, ..Meta::default() };
                self.free = idx;
            }
            done.clear();
            self.scratch = done;
        }
        if self.free == NIL {
            if self.has_timers() {
                // Timers first: a reader that finds a slot of the new segment finds its timer too.
                self.store.timers.grow(|_| TimerSlot::default());
            }
            let first = self.store.slots.grow(|_| Slot::vacant());
            let capacity = self.store.slots.capacity();
            // Exactly as many as the slots: the vectors grow with the segments, not by doubling again.
            self.metas.reserve_exact(capacity - self.metas.len());
            self.metas.resize(capacity, Meta::default());
            if self.has_timers() {
                self.wheels.reserve_exact(capacity - self.wheels.len());
                self.wheels.resize(capacity, Wheel::default());
            }
            let end = u32::try_from(capacity).unwrap_or(NIL);
            // Thread the new slots into the (empty) free list, lowest first.
            for i in first..end {
                self.meta_mut(i).link.next = if i + 1 < end { i + 1 } else { NIL };
            }
            self.free = first;
        }
        let idx = self.free;
        self.free = self.meta(idx).link.next;
        idx
    }

    /// Stores an entry in a vacant slot, with `meta` (state and links are set here) and, if the slab has
    /// timers, `timer` (the TTL deadline and the time now), and publishes it in the index. Returns the
    /// slot.
    pub(crate) fn insert(&mut self, entry: Entry<K, V>, meta: Meta, timer: Option<(u64, u64)>, guard: &Guard) -> u32 {
        let idx = self.vacant_slot();
        self.fill(idx, entry, meta, timer);
        let mut counts = std::mem::take(&mut self.counts);
        self.store.index.insert(&mut counts, meta.hash, idx, guard, &|i| self.meta(i).hash);
        self.counts = counts;
        idx
    }

    /// Writes a vacant slot, before it is published.
    fn fill(&mut self, idx: u32, entry: Entry<K, V>, meta: Meta, timer: Option<(u64, u64)>) {
        let slot = self.slot(idx);
        // SAFETY: the slot is vacant, so no reader can reach it and its entry is uninitialised.
        slot.entry.with_mut(|p| unsafe { (*p).write(entry) });
        slot.mark.store(0, Ordering::Relaxed);
        *self.meta_mut(idx) = Meta { state: State::Occupied, link: Link::UNLINKED, ..meta };
        if self.has_timers() {
            *self.wheel_mut(idx) = Wheel::default();
            let (expires_at, now) = timer.unwrap_or((crate::clock::NEVER, 0));
            self.timer(idx).start(expires_at, now);
        }
        self.len += 1;
    }

    /// Gives the key at occupied slot `old` the new `value`, in a new slot that takes over `old`'s
    /// bookkeeping (with `weight`); retires `old` and returns the new slot. The caller re-links the new
    /// slot wherever `old` was linked (it is unlinked here).
    pub(crate) fn replace(&mut self, old: u32, value: V, weight: u32, timer: Option<(u64, u64)>, guard: &Guard) -> u32 {
        let idx = self.vacant_slot();
        // SAFETY: `old` is occupied; its key moves to the new slot bit for bit, and `old` is retired
        // with the key marked as moved, so the key is dropped once (by the new slot). Readers still on
        // `old` read the same bits, which stay valid for as long as they can (see the module docs).
        let key = unsafe { std::ptr::read(&self.slot(old).entry().key) };
        let meta = Meta { weight, ..*self.meta(old) };
        self.fill(idx, Entry { key, value }, meta, timer);
        self.store.index.replace(meta.hash, old, idx, guard);
        self.retire(old, true);
        idx
    }

    /// Takes occupied slot `idx` out of the index and retires it (its entry stays readable until
    /// reclaimed). The caller has unlinked it from every list.
    pub(crate) fn remove(&mut self, idx: u32, guard: &Guard) {
        let hash = self.meta(idx).hash;
        self.store.index.remove(&mut self.counts, hash, idx, guard);
        self.retire(idx, false);
    }

    fn retire(&mut self, idx: u32, key_moved: bool) {
        self.retired_weight += u64::from(self.meta(idx).weight);
        self.meta_mut(idx).state = State::Retired;
        self.len -= 1;
        self.in_limbo += 1;
        self.retired.push(Retired { idx, key_moved });
    }

    /// Hands the retired slots to the epoch when there are enough of them (64, or a thirty-second of
    /// `capacity` by weight), or any at all with `now`. Returns true once what was handed over since the
    /// last time it returned true weighs an eighth of `capacity`: the caller should then, with its lock
    /// released, let the epoch collect (`Guard::flush`), so that departed entries come back within about
    /// that much (a deferred batch otherwise waits in the thread's local bag for 63 more).
    pub(crate) fn publish_retired(&mut self, guard: &Guard, now: bool, capacity: u64) -> bool
    where
        K: Send + Sync + 'static,
        V: Send + Sync + 'static,
    {
        let heavy = self.retired_weight.saturating_mul(32) >= capacity.max(1);
        if self.retired.is_empty() || (!now && !heavy && self.retired.len() < RETIRE_BATCH) {
            return false;
        }
        self.unflushed_weight += self.retired_weight;
        self.retired_weight = 0;
        let id = {
            let mut r = self.store.reclaim.lock();
            let spare = r.spare.pop().unwrap_or_default();
            let batch = std::mem::replace(&mut self.retired, spare);
            let id = r.next_id;
            r.next_id += 1;
            r.pending += batch.len();
            r.batches.insert(id, batch);
            r.reserve_for_pending();
            id
        };
        // Weak: a batch must not keep the store (every slot and the index) alive after the cache is
        // dropped, until this thread next happens to collect. If the store is gone, `Slab::drop` has
        // already reclaimed the batch.
        let store = Arc::downgrade(&self.store);
        // SAFETY: the closure owns what it uses (a `Weak` of the store and the batch id; `K` and `V` are
        // `'static` and `Send`), so it may run on any thread at any later time; the epoch runs it only
        // after every thread pinned now has unpinned, which is what `Store::reclaim` needs.
        unsafe {
            guard.defer_unchecked(move || {
                if let Some(store) = store.upgrade() {
                    store.reclaim(id);
                }
            });
        }
        let flush = self.unflushed_weight.saturating_mul(8) >= capacity.max(1);
        if flush {
            self.unflushed_weight = 0;
        }
        flush
    }

    /// The entry at slot `idx` if it is occupied and still of `generation`.
    pub(crate) fn get_current(&self, idx: u32, generation: u32) -> Option<&Entry<K, V>> {
        let slot = self.store.slots.get(idx)?;
        (self.meta(idx).state == State::Occupied && slot.generation() == generation).then(|| self.entry(idx))
    }

    /// The readers' record of slot `idx` (its generation).
    #[cfg(test)]
    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.slot(idx).generation()
    }

    /// Occupied slots and their entries.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Entry<K, V>)> + '_ {
        let capacity = u32::try_from(self.store.slots.capacity()).unwrap_or(NIL);
        (0..capacity).filter(|&i| self.meta(i).state == State::Occupied).map(move |i| (i, self.entry(i)))
    }

    /// Heap bytes of the storage: slots, timers and the index.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.store.slots.capacity() * std::mem::size_of::<Slot<K, V>>()
            + self.store.timers.capacity() * std::mem::size_of::<TimerSlot>()
            + self.metas.capacity() * std::mem::size_of::<Meta>()
            + self.wheels.capacity() * std::mem::size_of::<Wheel>()
            + self.counts.heap_bytes()
    }

    /// Stores `key` and `value` (tests of the policies and the wheel).
    #[cfg(test)]
    pub(crate) fn put(&mut self, key: K, value: V, hash: u64, weight: u32) -> u32 {
        let meta = Meta { hash, weight, ..Meta::default() };
        self.insert(Entry { key, value }, meta, None, &crossbeam_epoch::pin())
    }

    /// Checks the slab's own invariants; returns the slots on the free list.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate(&self, guard: &Guard) -> usize {
        let mut free = 0;
        let mut at = self.free;
        while at != NIL {
            assert_eq!(self.meta(at).state, State::Vacant, "a non-vacant slot on the free list");
            free += 1;
            at = self.meta(at).link.next;
        }
        let capacity = self.store.slots.capacity();
        assert_eq!(free + self.len + self.in_limbo, capacity, "slots leaked");
        let mut indexed = self.store.index.slots(guard);
        indexed.sort_unstable();
        let occupied: Vec<u32> = self.iter().map(|(i, _)| i).collect();
        assert_eq!(indexed, occupied, "the index and the occupied slots disagree");
        assert_eq!(self.counts.live(), self.len);
        free
    }
}

impl<K, V> Drop for Slab<K, V> {
    /// No reader remains (the cache is gone): every entry still held is dropped now, occupied or
    /// retired, and the batches already handed to the epoch are emptied so their deferred functions
    /// find nothing to do.
    fn drop(&mut self) {
        let capacity = u32::try_from(self.store.slots.capacity()).unwrap_or(NIL);
        let mut retired: Vec<Retired> = std::mem::take(&mut self.retired);
        {
            let mut r = self.store.reclaim.lock();
            r.pending = 0;
            retired.extend(r.batches.drain().flat_map(|(_, b)| b));
        }
        for r in retired {
            // SAFETY: no reader remains, and each retired slot appears once across the batches.
            unsafe { self.store.drop_entry(r) };
        }
        for idx in 0..capacity {
            if self.meta(idx).state == State::Occupied {
                // SAFETY: occupied: initialised and owned here; no reader remains.
                unsafe { self.store.drop_entry(Retired { idx, key_moved: false }) };
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A value whose drop drops the slab it lives in (parked in `SLAB`), as a cache's last handle may go
    /// while another thread runs the epoch's reclamation of one of its batches.
    struct DropsTheSlab;

    static SLAB: std::sync::Mutex<Option<Slab<u64, DropsTheSlab>>> = std::sync::Mutex::new(None);

    impl Drop for DropsTheSlab {
        fn drop(&mut self) {
            let slab = SLAB.lock().unwrap_or_else(|e| e.into_inner()).take();
            drop(slab);
        }
    }

    #[test]
    fn a_slab_dropped_while_one_of_its_batches_is_reclaimed_counts_the_batch_once() {
        let mut slab: Slab<u64, DropsTheSlab> = Slab::new();
        let idx = slab.put(1, DropsTheSlab, 7, 1);
        let guard = crossbeam_epoch::pin();
        slab.remove(idx, &guard);
        slab.publish_retired(&guard, true, 1);
        drop(guard);
        let store = Arc::clone(slab.store());
        *SLAB.lock().unwrap() = Some(slab);
        // Batch 0's reclamation, as its deferred function runs it: dropping the value drops the slab
        // between taking the batch out and queueing its slots. (Before the fix, the pending count was
        // decremented after the slab's drop had zeroed it: an underflow.)
        store.reclaim(0);
        assert!(SLAB.lock().unwrap().is_none(), "the value's drop dropped the slab");
        assert_eq!(store.reclaim.lock().pending, 0);
    }
}
