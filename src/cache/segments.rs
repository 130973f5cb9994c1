//! A growable array whose elements never move: lock-free readers may hold references into it while a
//! writer grows it.
//!
//! Element `i` lives in segment `s = log2(i / FIRST + 1)`, which holds `FIRST << s` elements, so the
//! segments double like a `Vec`'s buffer (at most twice the memory needed), but an element, once
//! allocated, stays where it is until the array is dropped. The segment directory is a fixed array of
//! atomic pointers: a writer allocates a segment, initialises every element, and publishes the pointer
//! with `Release`; a reader loads it with `Acquire`, so it sees initialised elements.
//!
//! Only one writer may grow the array at a time (the caller's shard lock); reads need no lock.

use std::marker::PhantomData;

use crate::sync::{AtomicPtr, Ordering};

/// Elements in the first segment.
#[cfg(not(loom))]
const FIRST: usize = 32;
#[cfg(loom)]
const FIRST: usize = 2;
const FIRST_SHIFT: u32 = FIRST.trailing_zeros();
/// Enough segments for `u32::MAX` elements.
const SEGMENTS: usize = 33 - FIRST_SHIFT as usize;

/// Where element `i` lives: its segment and its offset there.
#[inline]
fn locate(i: u32) -> (usize, usize) {
    let n = i as usize + FIRST;
    let s = (usize::BITS - 1 - n.leading_zeros() - FIRST_SHIFT) as usize;
    (s, n - (FIRST << s))
}

/// Elements in segment `s`.
fn segment_len(s: usize) -> usize {
    FIRST << s
}

pub(crate) struct Segments<T> {
    /// Segment `s`, or null while not allocated. Written once (null to a segment) by the growing writer,
    /// `Release`; read `Acquire`.
    dir: [AtomicPtr<T>; SEGMENTS],
    _owns: PhantomData<T>,
}

impl<T> std::fmt::Debug for Segments<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments").field("capacity", &self.capacity()).finish()
    }
}

// SAFETY: the array owns its `T`s (like a `Vec<T>`) and hands out only `&T` across threads, so it is as
// `Send` as `T` is and as `Sync` as `T` is; the directory is atomics.
unsafe impl<T: Send> Send for Segments<T> {}
// SAFETY: see `Send`: shared access yields `&T`, which needs `T: Sync`.
unsafe impl<T: Sync> Sync for Segments<T> {}

impl<T> Segments<T> {
    pub(crate) fn new() -> Self {
        Segments { dir: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())), _owns: PhantomData }
    }

    /// Elements allocated so far (a multiple of the segment sizes).
    pub(crate) fn capacity(&self) -> usize {
        // Relaxed: only the writer calls this for its own bookkeeping (tests and debug output too).
        let allocated = self.dir.iter().take_while(|p| !p.load(Ordering::Relaxed).is_null()).count();
        (0..allocated).map(segment_len).sum()
    }

    /// Element `i`, if its segment is allocated.
    #[inline]
    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        let (s, off) = locate(i);
        // Acquire pairs with the Release in `grow`: the segment's elements are initialised.
        let seg = self.dir.get(s)?.load(Ordering::Acquire);
        if seg.is_null() {
            return None;
        }
        // SAFETY: `seg` points to `segment_len(s)` initialised elements (published by `grow`), which live
        // until `self` drops (segments are freed only in `Drop`); `off < segment_len(s)` by `locate`.
        Some(unsafe { &*seg.add(off) })
    }

    /// Element `i`, which the caller knows is allocated (an index it was given by [`grow`](Self::grow)).
    #[inline]
    pub(crate) fn at(&self, i: u32) -> &T {
        match self.get(i) {
            Some(t) => t,
            None => panic!("element {i} of a segmented array is not allocated"),
        }
    }

    /// Allocates the next segment, each element built by `init` (its index given), and returns the
    /// first index it adds. One writer at a time (the caller's lock).
    pub(crate) fn grow(&self, mut init: impl FnMut(u32) -> T) -> u32 {
        let capacity = self.capacity();
        let s = (0..SEGMENTS).find(|&s| self.dir[s].load(Ordering::Relaxed).is_null());
        let Some(s) = s else { panic!("a segmented array holds at most u32::MAX elements") };
        let first = u32::try_from(capacity).unwrap_or(u32::MAX);
        let elements: Box<[T]> = (0..segment_len(s)).map(|j| init(first + j as u32)).collect();
        let ptr = Box::into_raw(elements).cast::<T>();
        // Release: a reader that sees the pointer sees the initialised elements.
        self.dir[s].store(ptr, Ordering::Release);
        first
    }

    /// Capacity the array has after `segments` segments.
    #[cfg(test)]
    fn capacity_after(segments: usize) -> usize {
        (0..segments).map(segment_len).sum()
    }
}

impl<T> Drop for Segments<T> {
    fn drop(&mut self) {
        for (s, p) in self.dir.iter_mut().enumerate() {
            // Relaxed: `&mut self`, so no other thread can be storing it.
            let ptr = p.load(Ordering::Relaxed);
            if !ptr.is_null() {
                let slice = std::ptr::slice_from_raw_parts_mut(ptr, segment_len(s));
                // SAFETY: `ptr` came from `Box::<[T]>::into_raw` of exactly `segment_len(s)` elements in
                // `grow`, and `&mut self` means no reference into it is left.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "index arithmetic only, no unsafe code: 39 s of Miri's time")]
    fn indices_map_to_doubling_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(FIRST as u32 - 1), (0, FIRST - 1));
        assert_eq!(locate(FIRST as u32), (1, 0));
        assert_eq!(locate(3 * FIRST as u32 - 1), (1, 2 * FIRST - 1));
        assert_eq!(locate(3 * FIRST as u32), (2, 0));
        let (s, off) = locate(u32::MAX);
        assert!(s < SEGMENTS && off < segment_len(s));
        for i in (0..100_000u32).step_by(7) {
            let (s, off) = locate(i);
            assert_eq!(Segments::<u8>::capacity_after(s) + off, i as usize);
        }
    }

    #[test]
    fn elements_stay_put_as_the_array_grows() {
        let a: Segments<String> = Segments::new();
        assert!(a.get(0).is_none());
        assert_eq!(a.grow(|i| i.to_string()), 0);
        let first: *const String = a.at(5);
        assert_eq!(a.grow(|i| i.to_string()), FIRST as u32);
        assert_eq!(a.grow(|i| i.to_string()), 3 * FIRST as u32);
        assert_eq!(a.capacity(), 7 * FIRST);
        assert!(std::ptr::eq(first, a.at(5)), "growing moved nothing");
        for i in 0..7 * FIRST as u32 {
            assert_eq!(a.at(i), &i.to_string());
        }
        assert!(a.get(7 * FIRST as u32).is_none());
    }
}
