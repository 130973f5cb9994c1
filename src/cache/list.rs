//! An intrusive doubly linked list of slab slots, threaded through one [`Lane`] of links.
//!
//! The list owns nothing: it is a head and a tail; the links live in the slots. Every operation is O(1).

use super::slab::{Lane, NIL, Slab};

#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    head: u32,
    tail: u32,
}

impl Default for List {
    fn default() -> Self {
        List { head: NIL, tail: NIL }
    }
}

impl List {
    pub(crate) fn head(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    pub(crate) fn push_back<K, V>(&mut self, slab: &mut Slab<K, V>, lane: Lane, idx: u32) {
        *slab.link_mut(idx, lane) = super::slab::Link { prev: self.tail, next: NIL };
        if self.tail == NIL {
            self.head = idx;
        } else {
            slab.link_mut(self.tail, lane).next = idx;
        }
        self.tail = idx;
    }

    /// Links `idx` just before `before` (which must be in this list).
    pub(crate) fn insert_before<K, V>(&mut self, slab: &mut Slab<K, V>, lane: Lane, idx: u32, before: u32) {
        let prev = slab.link(before, lane).prev;
        *slab.link_mut(idx, lane) = super::slab::Link { prev, next: before };
        slab.link_mut(before, lane).prev = idx;
        if prev == NIL {
            self.head = idx;
        } else {
            slab.link_mut(prev, lane).next = idx;
        }
    }

    pub(crate) fn unlink<K, V>(&mut self, slab: &mut Slab<K, V>, lane: Lane, idx: u32) {
        let link = slab.link(idx, lane);
        if link.prev == NIL {
            debug_assert_eq!(self.head, idx, "unlinking a slot that is not in this list");
            self.head = link.next;
        } else {
            slab.link_mut(link.prev, lane).next = link.next;
        }
        if link.next == NIL {
            self.tail = link.prev;
        } else {
            slab.link_mut(link.next, lane).prev = link.prev;
        }
        *slab.link_mut(idx, lane) = super::slab::Link::UNLINKED;
    }

    /// Puts `new` (unlinked) where `old` is in this list; `old` leaves it.
    pub(crate) fn replace<K, V>(&mut self, slab: &mut Slab<K, V>, lane: Lane, old: u32, new: u32) {
        let link = slab.link(old, lane);
        *slab.link_mut(new, lane) = link;
        if link.prev == NIL {
            self.head = new;
        } else {
            slab.link_mut(link.prev, lane).next = new;
        }
        if link.next == NIL {
            self.tail = new;
        } else {
            slab.link_mut(link.next, lane).prev = new;
        }
        *slab.link_mut(old, lane) = super::slab::Link::UNLINKED;
    }

    pub(crate) fn pop_front<K, V>(&mut self, slab: &mut Slab<K, V>, lane: Lane) -> Option<u32> {
        let idx = self.head()?;
        self.unlink(slab, lane, idx);
        Some(idx)
    }

    pub(crate) fn move_to_back<K, V>(&mut self, slab: &mut Slab<K, V>, lane: Lane, idx: u32) {
        if self.tail != idx {
            self.unlink(slab, lane, idx);
            self.push_back(slab, lane, idx);
        }
    }

    pub(crate) fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Indices from tail to head (most recently pushed first).
    pub(crate) fn iter_back<'a, K, V>(&self, slab: &'a Slab<K, V>, lane: Lane) -> impl Iterator<Item = u32> + 'a {
        let mut cur = self.tail;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let idx = cur;
            cur = slab.link(idx, lane).prev;
            Some(idx)
        })
    }

    /// Indices from head to tail.
    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn iter<'a, K, V>(&self, slab: &'a Slab<K, V>, lane: Lane) -> impl Iterator<Item = u32> + 'a {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let idx = cur;
            cur = slab.link(idx, lane).next;
            Some(idx)
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn slab(n: u32) -> Slab<u32, ()> {
        let mut s = Slab::new();
        for k in 0..n {
            s.put(k, (), 0, 1);
        }
        s
    }

    fn order(l: &List, s: &Slab<u32, ()>) -> Vec<u32> {
        l.iter(s, Lane::Policy).collect()
    }

    #[test]
    fn push_unlink_move_keep_order() {
        let mut s = slab(4);
        let mut l = List::default();
        assert!(l.is_empty());
        for i in 0..4 {
            l.push_back(&mut s, Lane::Policy, i);
        }
        assert_eq!(order(&l, &s), vec![0, 1, 2, 3]);
        l.move_to_back(&mut s, Lane::Policy, 1);
        assert_eq!(order(&l, &s), vec![0, 2, 3, 1]);
        l.unlink(&mut s, Lane::Policy, 3);
        assert_eq!(order(&l, &s), vec![0, 2, 1]);
        assert_eq!(l.pop_front(&mut s, Lane::Policy), Some(0));
        l.insert_before(&mut s, Lane::Policy, 3, 2);
        assert_eq!(order(&l, &s), vec![3, 2, 1]);
        l.insert_before(&mut s, Lane::Policy, 0, 1);
        assert_eq!(order(&l, &s), vec![3, 2, 0, 1]);
        assert_eq!((l.head(), l.tail()), (Some(3), Some(1)));
    }

    #[test]
    fn lanes_are_independent() {
        let mut s = slab(3);
        s.enable_timers();
        let (mut a, mut b) = (List::default(), List::default());
        for i in 0..3 {
            a.push_back(&mut s, Lane::Policy, i);
            b.push_back(&mut s, Lane::Timer, 2 - i);
        }
        assert_eq!(order(&a, &s), vec![0, 1, 2]);
        assert_eq!(b.iter(&s, Lane::Timer).collect::<Vec<_>>(), vec![2, 1, 0]);
    }
}
