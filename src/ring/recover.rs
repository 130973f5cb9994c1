//! Finding the latest record when the writer opens a ring, after a clean close or a crash.
//!
//! The header's published and flushed ids are hints: each is trusted only if the record it names is in
//! its slot and checks. From them:
//!
//! 1. **Chase** from the flushed id: follow consecutive ids while each slot holds exactly the next id,
//!    and jump ahead when a slot holds a newer lap of the id (`id + k·records`), so a writer that lapped
//!    the ring since its last flush is followed to its newest lap. Bounded by two laps of steps.
//! 2. The **published** id, if its record checks (exact after a process crash: the header page lives
//!    in the page cache with the records, and is stored after each record is complete).
//! 3. The slot the header says was **being written** (a crash inside a write): its record counts if it
//!    checks, that is, if the write had finished. If it does not check, the write was cut short: the
//!    record it was replacing is gone and the new one never finished, so the caller clears the slot's
//!    frame header and both read as `NotFound` rather than as damage.
//!
//! The latest id is the largest of these. If a flush had completed (flushed id > 0) but nothing at or
//! past it checks, the hints are damaged and every slot is **scanned** for the largest valid id (the
//! only case that reads the whole ring). Records past the latest id that survive in their slots (a
//! power loss can keep later pages and lose earlier ones) are not served: reads of ids past the latest
//! are `NotFound` until the writer writes them again.

use super::Error;
use super::geometry::Layout;
use super::header::Control;
use super::io::Store;
use super::record::{Frame, Seed, Verdict};

/// Reads and checks slots during recovery (one buffer, nothing else touches the ring yet).
struct Probe<'a> {
    store: &'a dyn Store,
    layout: Layout,
    seed: &'a Seed,
    buf: Vec<u8>,
}

impl Probe<'_> {
    fn verdict(&mut self, slot: u64) -> Result<Verdict, Error> {
        let n = self.store.read_frame(slot, &mut self.buf)?;
        Ok(Frame::check(self.seed, &self.buf[..n]))
    }

    /// The id of the valid record in `slot`, if there is one that belongs there.
    fn id_in(&mut self, slot: u64) -> Result<Option<u64>, Error> {
        Ok(match self.verdict(slot)? {
            Verdict::Valid(f) if self.layout.slot(f.id) == slot => Some(f.id),
            _ => None,
        })
    }

    /// Whether record `id` is in its slot and checks.
    fn holds(&mut self, id: u64) -> Result<bool, Error> {
        Ok(self.id_in(self.layout.slot(id))? == Some(id))
    }

    fn chase(&mut self, from: u64) -> Result<Option<u64>, Error> {
        let records = self.layout.records();
        let mut best = None;
        let mut next = from;
        for _ in 0..records.saturating_mul(2).saturating_add(2) {
            match self.id_in(self.layout.slot(next))? {
                Some(id) if id >= next && id != u64::MAX => {
                    best = Some(id);
                    next = id + 1;
                }
                _ => break,
            }
        }
        Ok(best)
    }

    fn scan(&mut self) -> Result<Option<u64>, Error> {
        let mut best = None;
        for slot in 0..self.layout.records() {
            if let Some(id) = self.id_in(slot)? {
                best = best.max(Some(id));
            }
        }
        Ok(best)
    }
}

/// What recovery found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The latest id.
    pub(crate) latest: Option<u64>,
    /// A slot a crash left half-written, to be cleared.
    pub(crate) torn: Option<u64>,
}

/// The latest id of the ring behind `store` (see the module docs).
pub(crate) fn recover(store: &dyn Store, layout: Layout, seed: &Seed, control: &Control) -> Result<Recovered, Error> {
    let mut probe = Probe { store, layout, seed, buf: vec![0u8; layout.record_size()] };
    let (flushed, published, writing) = (control.flushed(), control.published(), control.writing());
    let mut latest = probe.chase(flushed.saturating_sub(1))?;
    if let Some(id) = published.checked_sub(1)
        && Some(id) > latest
        && probe.holds(id)?
    {
        latest = Some(id);
    }
    let mut torn = None;
    if let Some(slot) = writing.checked_sub(1).filter(|&s| s < layout.records()) {
        match probe.verdict(slot)? {
            Verdict::Valid(f) if layout.slot(f.id) == slot && Some(f.id) > latest => latest = Some(f.id),
            Verdict::Corrupt => torn = Some(slot),
            _ => {}
        }
    }
    if flushed > 0 && latest.is_none_or(|l| l < flushed - 1) {
        latest = probe.scan()?;
    }
    Ok(Recovered { latest, torn })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use crate::ring::{IoMode, RingBuffer, RingOptions};

    const PUBLISHED: u64 = 64;
    const FLUSHED: u64 = 72;
    const WRITE_SEQ: u64 = 80;
    const WRITING: u64 = 88;

    fn set_word(path: &Path, offset: u64, value: u64) {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(&value.to_le_bytes(), offset).unwrap();
    }

    /// A closed ring of 8 slots of 64 bytes holding ids `0..n`, written through `mode`.
    fn ring_with(dir: &Path, mode: IoMode, n: u64) -> std::path::PathBuf {
        let path = dir.join("ring.dat");
        let ring = RingBuffer::open(&path, RingOptions { mode, ..RingOptions::new(8, 64) }).unwrap();
        for id in 0..n {
            ring.write(id, &id.to_le_bytes()).unwrap();
        }
        ring.close().unwrap();
        path
    }

    fn reopen(path: &Path, mode: IoMode) -> RingBuffer {
        RingBuffer::open(path, RingOptions { mode, ..RingOptions::new(8, 64) }).unwrap()
    }

    #[test]
    fn a_write_cut_short_by_a_crash_is_cleared() {
        for mode in [IoMode::Mmap, IoMode::Pread] {
            let dir = tempfile::tempdir().unwrap();
            let path = ring_with(dir.path(), mode, 12);
            // The writer died writing id 12 over slot 4 (id 4): header says so, the slot is half new.
            set_word(&path, WRITE_SEQ, 7);
            set_word(&path, WRITING, 4 + 1);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(&[0xAB; 20], 4096 + 4 * 64 + 8).unwrap();
            let ring = reopen(&path, mode);
            assert_eq!(ring.latest_id(), Some(11));
            assert!(ring.read(4, &mut Vec::new()).unwrap_err().is_not_found(), "{mode:?}: gone, not corrupt");
            let report = ring.verify(|_, _| {}).unwrap();
            assert_eq!((report.valid, report.empty, report.corrupt), (7, 1, 0));
            ring.write(12, b"again").unwrap();
            let mut buf = Vec::new();
            ring.read(12, &mut buf).unwrap();
            assert_eq!(buf, b"again");
        }
    }

    #[test]
    fn a_finished_but_unpublished_write_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_with(dir.path(), IoMode::Pread, 13);
        let ring = reopen(&path, IoMode::Pread);
        ring.write(15, b"skipped two").unwrap();
        ring.close().unwrap();
        // Killed after storing id 15 but before publishing it: no consecutive chain reaches it.
        set_word(&path, PUBLISHED, 13);
        set_word(&path, FLUSHED, 13);
        set_word(&path, WRITING, 15 % 8 + 1);
        assert_eq!(reopen(&path, IoMode::Pread).latest_id(), Some(15));
        set_word(&path, PUBLISHED, 13);
        set_word(&path, FLUSHED, 13);
        set_word(&path, WRITING, 0);
        assert_eq!(reopen(&path, IoMode::Pread).latest_id(), Some(12), "without the hint, 15 is not adopted");
    }

    #[test]
    fn a_writer_that_lapped_since_its_last_flush_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_with(dir.path(), IoMode::Mmap, 30);
        // The header as a power loss might leave it: an old flush, the published id lost.
        set_word(&path, FLUSHED, 5);
        set_word(&path, PUBLISHED, 0);
        let ring = reopen(&path, IoMode::Mmap);
        assert_eq!(ring.latest_id(), Some(29));
        let mut buf = Vec::new();
        ring.read(22, &mut buf).unwrap();
        assert_eq!(buf, 22u64.to_le_bytes());
    }

    #[test]
    fn damaged_hints_fall_back_to_a_scan_and_an_empty_ring_has_no_latest() {
        let dir = tempfile::tempdir().unwrap();
        let path = ring_with(dir.path(), IoMode::Pread, 30);
        set_word(&path, FLUSHED, 1_000);
        set_word(&path, PUBLISHED, u64::MAX);
        assert_eq!(reopen(&path, IoMode::Pread).latest_id(), Some(29));
        let empty = tempfile::tempdir().unwrap();
        let path = ring_with(empty.path(), IoMode::Pread, 0);
        assert_eq!(reopen(&path, IoMode::Pread).latest_id(), None);
    }
}
