//! Entry storage: a vector of slots with a free list, so a steady state of insert and evict reuses slots
//! instead of allocating.
//!
//! Every slot carries two pairs of intrusive links, one per [`Lane`]: the policy's queues and the timer
//! wheel's buckets thread through the slots themselves, so membership costs no allocation either. A vacant
//! slot's `Policy` lane links it into the free list. A slot's generation changes each time it is freed, so a
//! stale reference (a read-buffer record) can tell that the slot it names now holds another entry.

use super::entry::Entry;

/// The "no slot" index.
pub(crate) const NIL: u32 = u32::MAX;

/// Which pair of links a list threads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// The eviction policy's queues (and the free list for vacant slots).
    Policy = 0,
    /// The timer wheel's buckets.
    Timer = 1,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

const UNLINKED: Link = Link { prev: NIL, next: NIL };

#[derive(Debug)]
struct Slot<K, V> {
    generation: u32,
    links: [Link; 2],
    entry: Option<Entry<K, V>>,
}

/// Slots addressed by `u32` index.
#[derive(Debug)]
pub(crate) struct Slab<K, V> {
    slots: Vec<Slot<K, V>>,
    free: u32,
    len: usize,
}

impl<K, V> Slab<K, V> {
    pub(crate) fn new() -> Self {
        Slab { slots: Vec::new(), free: NIL, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `entry`, reusing a free slot when there is one, and returns its index.
    pub(crate) fn insert(&mut self, entry: Entry<K, V>) -> u32 {
        self.len += 1;
        if self.free != NIL {
            let idx = self.free;
            let slot = &mut self.slots[idx as usize];
            self.free = slot.links[Lane::Policy as usize].next;
            slot.links = [UNLINKED; 2];
            slot.entry = Some(entry);
            return idx;
        }
        let idx = u32::try_from(self.slots.len()).ok().filter(|&i| i != NIL);
        let idx = idx.expect("a shard holds at most u32::MAX - 1 entries");
        self.slots.push(Slot { generation: 0, links: [UNLINKED; 2], entry: Some(entry) });
        idx
    }

    /// Frees slot `idx` and returns its entry. The caller has already unlinked it from every list.
    pub(crate) fn remove(&mut self, idx: u32) -> Entry<K, V> {
        let slot = &mut self.slots[idx as usize];
        let entry = slot.entry.take().expect("removing a vacant slot");
        slot.generation = slot.generation.wrapping_add(1);
        slot.links = [Link { prev: NIL, next: self.free }, UNLINKED];
        self.free = idx;
        self.len -= 1;
        entry
    }

    pub(crate) fn entry(&self, idx: u32) -> &Entry<K, V> {
        self.slots[idx as usize].entry.as_ref().expect("vacant slot")
    }

    pub(crate) fn entry_mut(&mut self, idx: u32) -> &mut Entry<K, V> {
        self.slots[idx as usize].entry.as_mut().expect("vacant slot")
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
        self.slots[idx as usize].links[lane as usize]
    }

    pub(crate) fn link_mut(&mut self, idx: u32, lane: Lane) -> &mut Link {
        &mut self.slots[idx as usize].links[lane as usize]
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
            i = self.slots[i as usize].links[Lane::Policy as usize].next;
        }
        n
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::NEVER;

    fn e(k: u32) -> Entry<u32, u32> {
        Entry::new(k, k * 10, u64::from(k), 1, NEVER, 0)
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
}
