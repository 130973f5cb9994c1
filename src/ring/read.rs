//! Finding and checking a record: the read paths behind `read`, `get`, `read_many` and `verify`.
//!
//! - **Writer handle, mapped**: pin the slot (`pins.rs`), check the frame in place, and serve the mapped
//!   bytes (copied out by `read`, lent by `get`). No copy is made before the check.
//! - **Writer handle, `pread`**: pin the slot, `pread` it into a pooled buffer, unpin, check the copy.
//!   The pin keeps this process's writer from changing the slot during the `pread`.
//! - **Read-only handles** (any process, either mode) cannot pin: the writer may be in another process.
//!   They copy the slot into a pooled buffer between two reads of the header's write sequence (a
//!   seqlock): if the sequence did not move, the copy is a consistent snapshot and the frame checks
//!   decide; if it moved, the copy is retried (bounded). If the sequence is odd and names this slot, the
//!   slot is being overwritten by a newer record, so the one asked for is gone: `NotFound` at once.
//!   After [`ATTEMPTS`] unstable copies (a writer rewriting the whole ring faster than one slot can be
//!   copied), a copy whose frame checks is served (a torn copy passes a CRC32 with probability 2⁻³²) and
//!   anything else is `NotFound`, never a false `Corrupt`.
//! - **`read_many`** works in runs of consecutive slots: in place under pins for the writer's mapped
//!   handle; otherwise copied at once (one `pread` of up to 1 MiB, or 64 KiB of atomic word loads from
//!   the mapping) under the same seqlock, falling back to record-by-record reads for a run the writer
//!   touched.

use std::ops::Range;

use super::guard::Record;
use super::pins::{Pin, backoff};
use super::pool::PooledFrame;
use super::record::{FRAME_HEADER, Frame, Verdict};
use super::stats::Count;
use super::{Error, ReadBatch, RingBuffer};

/// Copies a read-only handle makes of one slot before giving up on a stable one.
pub(crate) const ATTEMPTS: u32 = 8;
/// Most bytes `read_many` reads with one `pread`.
const RUN_BYTES: usize = 1 << 20;
/// Most bytes `read_many` copies from a mapping at once (checked while still in cache).
const MAPPED_RUN_BYTES: usize = 64 << 10;

/// A checked frame and where its bytes are.
pub(crate) struct Found<'a> {
    frame: Frame,
    source: Source<'a>,
}

enum Source<'a> {
    /// The mapped slot, pinned.
    Mapped { slot: &'a [u8], pin: Pin<'a> },
    /// A copy of the slot.
    Copied(PooledFrame<'a>),
}

impl Found<'_> {
    fn slot(&self) -> &[u8] {
        match &self.source {
            Source::Mapped { slot, .. } => slot,
            Source::Copied(buf) => buf,
        }
    }
}

/// A slot as one read found it.
pub(crate) enum Seen<'a> {
    Mapped(&'a [u8], Pin<'a>),
    Copied(PooledFrame<'a>, usize),
    /// The slot is being overwritten right now.
    Changing,
}

impl RingBuffer {
    /// Whether `id` can be in the ring now: `NotFound` if nothing or nothing that recent is published,
    /// `TooFarAhead` if more than a lap past the latest id.
    fn check_window(&self, id: u64) -> Result<(), Error> {
        let Some(latest) = self.control.published().checked_sub(1) else { return Err(Error::NotFound { id }) };
        if id <= latest {
            Ok(())
        } else if id - latest > self.layout.records() {
            Err(Error::TooFarAhead { id, latest, records: self.layout.records() })
        } else {
            Err(Error::NotFound { id })
        }
    }

    /// Looks at `slot` through the path this handle uses (see the module docs).
    pub(crate) fn see(&self, slot: u64) -> Result<Seen<'_>, Error> {
        let record_size = self.layout.record_size();
        if let Some(writer) = &self.writer {
            let Some(pin) = writer.gate().pin(slot) else { return Ok(Seen::Changing) };
            if let Some(ptr) = self.store.mapped(slot) {
                // SAFETY: `ptr` is the start of a mapped slot of `record_size` bytes that lives as long
                // as `self` (the store is never unmapped before the handle drops). The pin keeps this
                // process's writer (the ring's only writer: it holds the lock) from storing to the slot
                // until the pin drops, and the pin's protocol orders the writer's earlier stores before
                // these reads (`pins.rs`). Other processes only read. So the bytes do not change while
                // the slice (tied to the pin's lifetime by `Seen::Mapped`) is used.
                let bytes = unsafe { std::slice::from_raw_parts(ptr, record_size) };
                return Ok(Seen::Mapped(bytes, pin));
            }
            let mut buf = self.pool.take();
            let n = self.store.read_frame(slot, &mut buf)?;
            drop(pin);
            return Ok(Seen::Copied(buf, n));
        }
        let mut buf = self.pool.take();
        let mut round = 0;
        loop {
            let before = self.control.write_seq();
            if before & 1 == 1 && self.control.writing() == slot + 1 {
                return Ok(Seen::Changing);
            }
            let n = self.store.read_frame(slot, &mut buf)?;
            let after = self.control.write_seq_after_copy();
            if before == after || round + 1 == ATTEMPTS {
                if before != after {
                    // Unstable to the end: only a frame that checks may be served (see the docs).
                    return match Frame::check(&self.seed, &buf[..n]) {
                        Verdict::Valid(_) => Ok(Seen::Copied(buf, n)),
                        _ => Ok(Seen::Changing),
                    };
                }
                return Ok(Seen::Copied(buf, n));
            }
            self.telemetry.add(Count::Retry, 1);
            backoff(round);
            round += 1;
        }
    }

    /// The checked frame of record `id`, counting the read and a miss or failure (a hit is counted by
    /// `served`, once the payload is out).
    pub(crate) fn find(&self, id: u64) -> Result<Found<'_>, Error> {
        self.telemetry.add(Count::Read, 1);
        let found = self.check_window(id).and_then(|()| self.find_in_slot(id));
        match &found {
            Ok(_) => {}
            Err(Error::Corrupt { .. }) => self.telemetry.add(Count::CrcFailure, 1),
            Err(Error::NotFound { .. } | Error::TooFarAhead { .. }) => self.telemetry.add(Count::Miss, 1),
            Err(_) => {}
        }
        found
    }

    fn find_in_slot(&self, id: u64) -> Result<Found<'_>, Error> {
        let slot = self.layout.slot(id);
        let (verdict, source) = match self.see(slot)? {
            Seen::Changing => return Err(Error::NotFound { id }),
            Seen::Mapped(bytes, pin) => (Frame::check(&self.seed, bytes), Source::Mapped { slot: bytes, pin }),
            Seen::Copied(buf, n) => (Frame::check(&self.seed, &buf[..n]), Source::Copied(buf)),
        };
        match verdict {
            Verdict::Valid(frame) if frame.id == id => Ok(Found { frame, source }),
            // A valid frame in the wrong slot is damage (or another ring's file), not an older lap.
            Verdict::Valid(frame) if self.layout.slot(frame.id) != slot => Err(Error::Corrupt { id }),
            Verdict::Valid(_) | Verdict::Empty => Err(Error::NotFound { id }),
            Verdict::Corrupt => Err(Error::Corrupt { id }),
        }
    }

    /// After serving `bytes` of a record: count the hit.
    fn served(&self, bytes: usize) {
        self.telemetry.add(Count::Hit, 1);
        self.telemetry.add(Count::BytesRead, bytes as u64);
    }

    /// `read`: the payload of `id` appended to `out` (cleared first).
    pub(crate) fn read_into(&self, id: u64, out: &mut Vec<u8>) -> Result<usize, Error> {
        out.clear();
        let found = self.find(id)?;
        if !found.frame.decode_into(found.slot(), out) {
            return Err(self.undecodable(id));
        }
        self.served(out.len());
        Ok(out.len())
    }

    /// A frame whose CRC passed but whose payload does not decode: counted as a CRC failure.
    fn undecodable(&self, id: u64) -> Error {
        self.telemetry.add(Count::CrcFailure, 1);
        Error::Corrupt { id }
    }

    /// `get`: the payload of `id`, lent in place when possible.
    pub(crate) fn lend(&self, id: u64) -> Result<Record<'_>, Error> {
        let found = self.find(id)?;
        let frame = found.frame;
        let len = frame.len as usize;
        let record = match found.source {
            Source::Mapped { slot, pin } if !frame.is_compressed() => {
                Record::mapped(id, &slot[FRAME_HEADER..FRAME_HEADER + len], pin)
            }
            Source::Copied(buf) if !frame.is_compressed() => Record::owned(id, buf, FRAME_HEADER..FRAME_HEADER + len),
            source => {
                let found = Found { frame, source };
                if len <= self.layout.record_size() {
                    let mut out = self.pool.take();
                    if !frame.decode_to_slice(found.slot(), &mut out) {
                        return Err(self.undecodable(id));
                    }
                    Record::owned(id, out, 0..len)
                } else {
                    let mut out = Vec::with_capacity(len);
                    if !frame.decode_into(found.slot(), &mut out) {
                        return Err(self.undecodable(id));
                    }
                    Record::decoded(id, out)
                }
            }
        };
        self.served(len);
        Ok(record)
    }

    /// `read_many`: every record of `ids` that is in the ring, into `batch` (cleared first), read in
    /// runs of consecutive slots (see `read_runs`).
    pub(crate) fn read_range(&self, ids: Range<u64>, batch: &mut ReadBatch) -> Result<usize, Error> {
        batch.clear();
        let Some(latest) = self.control.published().checked_sub(1) else { return Ok(0) };
        let oldest = (latest + 1).saturating_sub(self.layout.records());
        let (start, end) = (ids.start.max(oldest), ids.end.min(latest + 1));
        if start < end {
            self.read_runs(start..end, batch)?;
        }
        Ok(batch.len())
    }

    /// Appends record `id` to `batch` through `find` (or lists it as corrupt).
    fn read_one_into(&self, id: u64, batch: &mut ReadBatch) -> Result<(), Error> {
        let found = match self.find(id) {
            Ok(found) => found,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(Error::Corrupt { .. }) => {
                batch.push_corrupt(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let at = batch.data().len();
        if found.frame.decode_into(found.slot(), batch.data()) {
            drop(found);
            batch.commit(id, at);
            self.served(batch.data().len() - at);
        } else {
            drop(found);
            let _ = self.undecodable(id);
            batch.push_corrupt(id);
        }
        Ok(())
    }

    /// `read_many`'s runs: the writer's handle, mapped, checks each slot of a run in place under its pin.
    /// Otherwise up to a run's worth of consecutive slots in one shard is copied at once (one `pread`, or
    /// word-wise atomic loads from the mapping) between two reads of the write sequence: the seqlock of
    /// the read-only path, which holds for this process's writer too, since every write it makes is
    /// bracketed by the sequence (and stores mapped words atomically). A run copied while the sequence
    /// moved is read again record by record through `find`. Statistics are accounted once per run.
    fn read_runs(&self, ids: Range<u64>, batch: &mut ReadBatch) -> Result<(), Error> {
        let size = self.layout.record_size();
        let run_bytes = if self.store.mapped(0).is_some() { MAPPED_RUN_BYTES } else { RUN_BYTES };
        let per_run = (run_bytes / size).max(1) as u64;
        let mut frames = batch.take_frames();
        let mut id = ids.start;
        let result = loop {
            if id >= ids.end {
                break Ok(());
            }
            let first = self.layout.slot(id);
            let n = (ids.end - id).min(self.layout.slots_left_in_shard(first)).min(per_run);
            if self.writer.is_some() && self.store.mapped(first).is_some() {
                // This process's writer, mapped: check each slot in place under its pin, no run copy.
                let mut tally = RunTally::default();
                for i in 0..n {
                    match self.see(first + i) {
                        Ok(Seen::Mapped(bytes, _pin)) => {
                            self.take_from_run(id + i, first + i, bytes, batch, &mut tally)
                        }
                        Ok(_) => tally.misses += 1, // being overwritten
                        Err(e) => {
                            batch.put_frames(frames);
                            return Err(e);
                        }
                    }
                }
                self.account_run(n, &tally);
                id += n;
                continue;
            }
            let len = n as usize * size;
            if frames.len() < len {
                frames.resize(len, 0);
            }
            let before = self.control.write_seq();
            let writing = self.control.writing();
            if let Err(e) = self.store.read_run(first, &mut frames[..len]) {
                break Err(e);
            }
            let after = self.control.write_seq_after_copy();
            let in_run = writing.checked_sub(1).is_some_and(|w| w >= first && w < first + n);
            if before != after || (before & 1 == 1 && in_run) {
                self.telemetry.add(Count::Retry, 1);
                if let Err(e) = (id..id + n).try_for_each(|one| self.read_one_into(one, batch)) {
                    break Err(e);
                }
            } else {
                let mut tally = RunTally::default();
                for (i, bytes) in frames[..len].chunks(size).enumerate() {
                    self.take_from_run(id + i as u64, first + i as u64, bytes, batch, &mut tally);
                }
                self.account_run(n, &tally);
            }
            id += n;
        };
        batch.put_frames(frames);
        result
    }

    /// Checks record `id` in its slot's bytes from a run and appends it to `batch` (or lists it as
    /// corrupt), tallying the outcome.
    fn take_from_run(&self, id: u64, slot: u64, bytes: &[u8], batch: &mut ReadBatch, tally: &mut RunTally) {
        match Frame::check(&self.seed, bytes) {
            Verdict::Valid(frame) if frame.id == id => {
                let at = batch.data().len();
                if frame.decode_into(bytes, batch.data()) {
                    batch.commit(id, at);
                    tally.hits += 1;
                    tally.bytes += (batch.data().len() - at) as u64;
                } else {
                    tally.corrupt += 1;
                    batch.push_corrupt(id);
                }
            }
            Verdict::Valid(frame) if self.layout.slot(frame.id) != slot => {
                tally.corrupt += 1;
                batch.push_corrupt(id);
            }
            Verdict::Valid(_) | Verdict::Empty => tally.misses += 1,
            Verdict::Corrupt => {
                tally.corrupt += 1;
                batch.push_corrupt(id);
            }
        }
    }

    /// Counts a run of `n` reads.
    fn account_run(&self, n: u64, tally: &RunTally) {
        let t = &self.telemetry;
        t.add(Count::Read, n);
        for (count, v) in [
            (Count::Hit, tally.hits),
            (Count::Miss, tally.misses),
            (Count::CrcFailure, tally.corrupt),
            (Count::BytesRead, tally.bytes),
        ] {
            if v > 0 {
                t.add(count, v);
            }
        }
    }
}

/// Outcomes of one run of `read_many`.
#[derive(Debug, Default)]
struct RunTally {
    hits: u64,
    misses: u64,
    corrupt: u64,
    bytes: u64,
}
