//! Entry storage: a vector of slots with a free list, so a steady state of insert and evict reuses slots
//! instead of allocating.
//!
//! Slots are threaded by intrusive links, so queue membership costs no allocation either: each slot has
//! one pair of links for the eviction policy's queues (a vacant slot's pair links it into the free list),
//! and, once the shard has deadlines, a [`Timer`] in a parallel side table with a second pair for the
//! timer wheel. A slot's generation changes each time it is freed, so a stale reference (a read-buffer
//! record) can tell that the slot it names now holds another entry.

use super::entry::{Entry, Timer};

/// The "no slot" index.
pub(crate) const NIL: u32 = u32::MAX;

/// Which pair of links a list threads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The eviction policy's queues (and the free list for vacant slots).
    Policy,
    /// The timer wheel's buckets (the side table's links).
    Timer,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Link {
    pub(crate) const UNLINKED: Link = Link { prev: NIL, next: NIL };
}

#[derive(Debug)]
struct Slot<K, V> {
    generation: u32,
    link: Link,
    entry: Option<Entry<K, V>>,
}

/// Slots addressed by `u32` index.
#[derive(Debug)]
pub(crate) struct Slab<K, V> {
    slots: Vec<Slot<K, V>>,
    /// Empty until [`Slab::enable_timers`]; then one per slot.
    timers: Vec<Timer>,
    timed: bool,
    free: u32,
    len: usize,
}

impl<K, V> Slab<K, V> {
    pub(crate) fn new() -> Self {
        Slab { slots: Vec::new(), timers: Vec::new(), timed: false, free: NIL, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether slots have timers.
    pub(crate) fn has_timers(&self) -> bool {
        self.timed
    }

    /// Gives every slot, now and from now on, a [`Timer`].
    pub(crate) fn enable_timers(&mut self) {
        if !self.timed {
            self.timed = true;
            self.timers = (0..self.slots.len()).map(|_| Timer::default()).collect();
        }
    }

    /// Stores `entry`, reusing a free slot when there is one, and returns its index.
    pub(crate) fn insert(&mut self, entry: Entry<K, V>) -> u32 {
        self.len += 1;
        if self.free != NIL {
            let idx = self.free;
            let slot = &mut self.slots[idx as usize];
            self.free = slot.link.next;
            slot.link = Link::UNLINKED;
            slot.entry = Some(entry);
            return idx;
        }
        let idx = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL);
        let idx = idx.expect("a shard holds at most u32::MAX - 1 entries");
        self.slots.push(Slot { generation: 0, link: Link::UNLINKED, entry: Some(entry) });
        if self.has_timers() {
            self.timers.push(Timer::default());
        }
        idx
    }

    /// Frees slot `idx` and returns its entry. The caller has already unlinked it from every list.
    pub(crate) fn remove(&mut self, idx: u32) -> Entry<K, V> {
        let slot = &mut self.slots[idx as usize];
        let entry = slot.entry.take().expect("removing a vacant slot");
        slot.generation = slot.generation.wrapping_add(1);
        slot.link = Link { prev: NIL, next: self.free };
        self.free = idx;
        self.len -= 1;
        if let Some(t) = self.timers.get_mut(idx as usize) {
            *t = Timer::default();
        }
        entry
    }

    pub(crate) fn entry(&self, idx: u32) -> &Entry<K, V> {
        self.slots[idx as usize].entry.as_ref().expect("vacant slot")
    }

    pub(crate) fn entry_mut(&mut self, idx: u32) -> &mut Entry<K, V> {
        self.slots[idx as usize].entry.as_mut().expect("vacant slot")
    }

    /// Slot `idx`'s timer; the slab must have timers.
    pub(crate) fn timer(&self, idx: u32) -> &Timer {
        &self.timers[idx as usize]
    }

    pub(crate) fn timer_mut(&mut self, idx: u32) -> &mut Timer {
        &mut self.timers[idx as usize]
    }

    /// The entry at `idx` if that slot is occupied and still of `generation`.
    pub(crate) fn get_current(&self, idx: u32, generation: u32) -> Option<&Entry<K, V>> {
        let slot = self.slots.get(idx as usize)?;
        if slot.generation != generation {
            return None;
        }
        slot.entry.as_ref()
    }

    pub(crate) fn generation(&self, idx: u32) -> u32 {
        self.slots[idx as usize].generation
    }

    pub(crate) fn link(&self, idx: u32, lane: Lane) -> Link {
        match lane {
            Lane::Policy => self.slots[idx as usize].link,
            Lane::Timer => self.timers[idx as usize].link,
        }
    }

    pub(crate) fn link_mut(&mut self, idx: u32, lane: Lane) -> &mut Link {
        match lane {
            Lane::Policy => &mut self.slots[idx as usize].link,
            Lane::Timer => &mut self.timers[idx as usize].link,
        }
    }

    /// Occupied slots, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Entry<K, V>)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.entry.as_ref().map(|e| (i as u32, e)))
    }

    /// Number of slots allocated (occupied or free).
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn slots_allocated(&self) -> usize {
        self.slots.len()
    }

    /// Number of slots on the free list (for `validate`).
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn free_count(&self) -> usize {
        let mut n = 0;
        let mut i = self.free;
        while i != NIL {
            assert!(self.slots[i as usize].entry.is_none(), "occupied slot on the free list");
            n += 1;
            i = self.slots[i as usize].link.next;
        }
        if self.has_timers() {
            assert_eq!(self.timers.len(), self.slots.len(), "one timer per slot");
        }
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn e(k: u32) -> Entry<u32, u32> {
        Entry::new(k, k * 10, u64::from(k), 1)
    }

    #[test]
    fn freed_slots_are_reused_with_a_new_generation() {
        let mut s = Slab::new();
        let a = s.insert(e(1));
        let b = s.insert(e(2));
        assert_eq!((a, b, s.len()), (0, 1, 2));
        let gen_a = s.generation(a);
        assert_eq!(s.remove(a).key, 1);
        assert!(s.get_current(a, gen_a).is_none());
        let c = s.insert(e(3));
        assert_eq!(c, a, "the free slot is reused");
        assert_ne!(s.generation(c), gen_a);
        assert_eq!(s.entry(c).key, 3);
        assert_eq!(s.slots_allocated(), 2);
        assert_eq!(s.free_count(), 0);
        assert_eq!(s.iter().map(|(_, e)| e.key).collect::<Vec<_>>(), vec![3, 2]);
    }

    #[test]
    fn timers_exist_only_once_enabled_and_reset_on_reuse() {
        let mut s = Slab::new();
        let a = s.insert(e(1));
        assert!(!s.has_timers());
        s.enable_timers();
        assert!(s.has_timers());
        s.timer_mut(a).start(500, 7);
        let b = s.insert(e(2));
        assert_eq!(s.timer(b).expires_at, crate::clock::NEVER);
        s.remove(a);
        let c = s.insert(e(3));
        assert_eq!((c, s.timer(c).expires_at), (a, crate::clock::NEVER), "a reused slot's timer is reset");
        assert_eq!(s.free_count(), 0);
        let mut empty: Slab<u8, u8> = Slab::new();
        empty.enable_timers();
        assert!(empty.has_timers(), "the choice holds before the first slot");
        let i = empty.insert(Entry::new(1, 1, 1, 1));
        assert_eq!(empty.timer(i).bucket, crate::cache::entry::NO_BUCKET);
    }
}
