//! Mapped I/O: each shard's record area is one shared mapping (`MAP_SHARED`), created with the ring and
//! kept until it closes. Mapping reserves address space only; a page becomes resident when touched.
//! The mappings are advised `MADV_RANDOM`: a page fault reads that page, not the kernel's read-around
//! window (which, measured on this project's machine, made reading one 4 KiB record every 256 KiB of a
//! cold 2 GiB ring map all 2 GiB), so memory grows with the records actually read. Handles opened with
//! `prefetch` (readers in order) are advised `MADV_SEQUENTIAL` instead: the kernel reads ahead of them.
//!
//! Every byte this module moves to or from a mapping moves as an aligned 8-byte atomic access
//! (`Relaxed`): the writer stores words, copies load words. A copy that races the writer (a reader in
//! another handle or process) therefore reads stale or new words, never tears a word, and is not a
//! data race; the seqlock or the CRC decides whether to trust it. Readers that hold a pin (`pins.rs`)
//! may instead read the mapping with plain loads through `mapped`, because no store can overlap them.

use memmap2::{Advice, MmapOptions, MmapRaw};

use super::{Store, claimed_len};
use crate::ring::Error;
use crate::ring::geometry::{HEADER_BYTES, Layout};
use crate::ring::record::FRAME_HEADER;
use crate::ring::shard::Shards;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The shard files and a mapping of each one's record area.
#[derive(Debug)]
pub(crate) struct MmapStore {
    shards: Shards,
    maps: Vec<MmapRaw>,
    layout: Layout,
}

impl MmapStore {
    /// Maps every shard's record area, writable if `write`, advised for sequential reads if
    /// `sequential` (random otherwise).
    pub(crate) fn new(shards: Shards, write: bool, sequential: bool) -> Result<MmapStore, Error> {
        let layout = shards.layout();
        let mut maps = Vec::with_capacity(layout.shards() as usize);
        for (i, shard) in shards.iter().enumerate() {
            let len = layout.shard_len(i as u32).expect("checked by Layout::new") - HEADER_BYTES;
            let mut options = MmapOptions::new();
            options.offset(HEADER_BYTES).len(len as usize);
            let map = if write { options.map_raw(shard.file()) } else { options.map_raw_read_only(shard.file()) };
            let map = map.map_err(|e| Error::io(shard.path(), e))?;
            // A hint: failure changes nothing but speed and memory.
            let _ = map.advise(if sequential { Advice::Sequential } else { Advice::Random });
            maps.push(map);
        }
        Ok(MmapStore { shards, maps, layout })
    }

    /// The address of byte `offset` of `slot`, and the slot's length.
    #[inline]
    fn at(&self, slot: u64) -> *mut u8 {
        let (shard, offset) = self.layout.locate(slot);
        let map = &self.maps[shard as usize];
        debug_assert!(offset as usize + self.layout.record_size() <= map.len());
        // SAFETY: `locate` gives an offset whose whole slot lies inside this shard's mapping (the
        // mapping is `records_in(shard) * record_size` long), so the result stays in the same mapping.
        unsafe { map.as_mut_ptr().add(offset as usize) }
    }
}

/// The `i`th word of the slot at `base`.
///
/// # Safety
/// `base` is the 8-aligned start of a mapped slot and `i * 8 + 8` is at most the slot's length; the
/// mapping outlives the returned reference.
#[inline]
unsafe fn word<'a>(base: *mut u8, i: usize) -> &'a AtomicU64 {
    // SAFETY: by the contract, the word is inside the mapping and aligned (mappings are page-aligned,
    // slots start at multiples of `record_size`, a multiple of 8). Mapped bytes are only accessed
    // atomically by unpinned code, so creating an atomic reference does not race a non-atomic access;
    // read-only mappings are only loaded from, with `Relaxed` on pointer-sized words.
    unsafe { AtomicU64::from_ptr(base.add(i * 8).cast()) }
}

/// Copies `n` bytes (`out.len() >= n`) from the slot at `base` word by word, starting at byte `from`
/// (a multiple of 8). Whole words are stored with fixed-size copies (one unaligned store each); only
/// the last, partial word takes a variable-length copy.
///
/// # Safety
/// As [`word`], for every word overlapping `from..n`.
unsafe fn load_words(base: *mut u8, from: usize, n: usize, out: &mut [u8]) {
    let whole = from + (n.saturating_sub(from)) / 8 * 8;
    for (i, chunk) in out[from..whole].chunks_exact_mut(8).enumerate() {
        // SAFETY: word `from / 8 + i` ends at or before `whole <= n`, and the caller vouches for it.
        let w = unsafe { word(base, from / 8 + i) }.load(Relaxed);
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    if whole < n {
        // SAFETY: the partial last word overlaps `from..n`, so the caller vouches for it.
        let w = unsafe { word(base, whole / 8) }.load(Relaxed).to_le_bytes();
        out[whole..n].copy_from_slice(&w[..n - whole]);
    }
}

impl Store for MmapStore {
    fn read_frame(&self, slot: u64, out: &mut [u8]) -> Result<usize, Error> {
        let slot_len = self.layout.record_size();
        let base = self.at(slot);
        // SAFETY: `base` is the start of a mapped slot of `slot_len` bytes, and both copies stay within
        // it: the header is 24 bytes, and `claimed_len` bounds the payload by the slot.
        unsafe { load_words(base, 0, FRAME_HEADER, out) };
        let n = FRAME_HEADER + claimed_len(&out[..FRAME_HEADER], slot_len);
        // SAFETY: as above; `n <= slot_len`, and the last word read ends at or before `slot_len` because
        // `slot_len` is a multiple of 8.
        unsafe { load_words(base, FRAME_HEADER, n, out) };
        Ok(n)
    }

    fn read_run(&self, first: u64, out: &mut [u8]) -> Result<(), Error> {
        let size = self.layout.record_size();
        debug_assert!(out.len() as u64 <= self.layout.slots_left_in_shard(first) * size as u64);
        for (i, slot) in out.chunks_mut(size).enumerate() {
            let n = slot.len();
            // SAFETY: `first + i` is in the same shard as `first` (the caller's contract), so its slot is
            // mapped, and `n <= size` bytes of it are copied.
            unsafe { load_words(self.at(first + i as u64), 0, n, slot) };
        }
        Ok(())
    }

    fn mapped(&self, slot: u64) -> Option<*const u8> {
        Some(self.at(slot).cast_const())
    }

    fn write_frame(&self, slot: u64, header: &[u8; FRAME_HEADER], payload: &[u8]) -> Result<(), Error> {
        let base = self.at(slot);
        debug_assert!(FRAME_HEADER + payload.len() <= self.layout.record_size());
        let put = |i: usize, w: [u8; 8]| {
            // SAFETY: word `i` ends within header + payload, which the caller checked fits the slot
            // (a multiple of 8 long, so the padded last word does too); the mapping is writable (only
            // the writer handle writes) and every access by unpinned code is atomic.
            unsafe { word(base, i) }.store(u64::from_le_bytes(w), Relaxed);
        };
        for (i, chunk) in header.chunks_exact(8).enumerate() {
            put(i, chunk.try_into().expect("8 bytes"));
        }
        let mut words = payload.chunks_exact(8);
        for (i, chunk) in words.by_ref().enumerate() {
            put(FRAME_HEADER / 8 + i, chunk.try_into().expect("8 bytes"));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut w = [0u8; 8];
            w[..tail.len()].copy_from_slice(tail);
            put(FRAME_HEADER / 8 + payload.len() / 8, w);
        }
        Ok(())
    }

    fn sync(&self, shard: u32) -> Result<(), Error> {
        self.shards.get(shard).datasync()
    }
}
