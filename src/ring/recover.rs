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
//!    checks, that is, if the write had finished.
//!
//! The latest id is the largest of these. If a flush had completed (flushed id > 0) but nothing at or
//! past it checks, the hints are damaged and every slot is **scanned** for the largest valid id (the
//! only case that reads the whole ring). Records past the latest id that survive in their slots (a
//! power loss can keep later pages and lose earlier ones) are not served: reads of ids past the latest
//! are `NotFound` until the writer writes them again.

use super::geometry::Layout;
use super::header::Control;
use super::io::Store;
use super::record::{Frame, Verdict};
use super::Error;

/// Reads and checks slots during recovery (one buffer, nothing else touches the ring yet).
struct Probe<'a> {
    store: &'a dyn Store,
    layout: Layout,
    seed: u32,
    buf: Vec<u8>,
}

impl Probe<'_> {
    /// The id of the valid record in `slot`, if there is one that belongs there.
    fn id_in(&mut self, slot: u64) -> Result<Option<u64>, Error> {
        let n = self.store.read_frame(slot, &mut self.buf)?;
        Ok(match Frame::check(self.seed, &self.buf[..n]) {
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

/// The latest id of the ring behind `store` (see the module docs).
pub(crate) fn latest_id(store: &dyn Store, layout: Layout, seed: u32, control: &Control) -> Result<Option<u64>, Error> {
    let mut probe = Probe { store, layout, seed, buf: vec![0u8; layout.record_size()] };
    let (flushed, published, writing) = (control.flushed(), control.published(), control.writing());
    let mut latest = probe.chase(flushed.saturating_sub(1))?;
    if let Some(id) = published.checked_sub(1)
        && Some(id) > latest
        && probe.holds(id)?
    {
        latest = Some(id);
    }
    if let Some(slot) = writing.checked_sub(1).filter(|&s| s < layout.records())
        && let Some(id) = probe.id_in(slot)?
        && Some(id) > latest
    {
        latest = Some(id);
    }
    if flushed > 0 && latest.is_none_or(|l| l < flushed - 1) {
        latest = probe.scan()?;
    }
    Ok(latest)
}
