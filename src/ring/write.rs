//! The writer: one per ring (the lock), any number of threads calling through it, one at a time.
//!
//! A write checks the id and payload, encodes the frame (compressing into a reused scratch buffer),
//! claims the slot against this process's pinned readers (`pins.rs`), opens the header's write sequence
//! for other processes' readers, stores the frame, closes the sequence, releases the slot, and then
//! publishes `id + 1` in the header and wakes waiters. A reader that sees the published id therefore
//! finds the record complete.
//!
//! A flush `fdatasync`s every shard written since the last flush except shard 0, records the latest id
//! as flushed in the header, and then `fdatasync`s shard 0, which carries the header page: when a
//! flush returns, its records and a header naming them are on the device. (The header's published id,
//! stored before the sync, never points past records that were synced.) The state below is behind one
//! mutex, held for a write or a flush; no user code runs under it.

use std::time::Duration;

use super::Compression;
use super::pins::SlotGate;
use super::record::{Compressor, FRAME_HEADER, Frame, MAX_DECODED};
use super::stats::Count;
use super::{Error, RingBuffer};
use crate::sync::{Mutex, MutexGuard};

/// How long a write waits for a reader's guard on the slot it must overwrite.
pub(crate) const PIN_PATIENCE: Duration = Duration::from_secs(1);

/// What the writer tracks between writes.
#[derive(Debug)]
pub(crate) struct WriterState {
    latest: Option<u64>,
    /// Records written since the last flush.
    unflushed: u64,
    /// Shards written since the last flush.
    dirty: Vec<bool>,
    /// Compression table and output, reused.
    compressor: Compressor,
}

/// The writer handle's half of a ring.
#[derive(Debug)]
pub(crate) struct Writer {
    state: Mutex<WriterState>,
    gate: SlotGate,
    flush_every: u64,
    compression: Compression,
}

impl Writer {
    pub(crate) fn new(latest: Option<u64>, shards: u32, flush_every: u32, compression: Compression) -> Writer {
        Writer {
            state: Mutex::new(WriterState {
                latest,
                unflushed: 0,
                dirty: vec![false; shards as usize],
                compressor: Compressor::default(),
            }),
            gate: SlotGate::default(),
            flush_every: u64::from(flush_every),
            compression,
        }
    }

    pub(crate) fn gate(&self) -> &SlotGate {
        &self.gate
    }

    pub(crate) fn has_unflushed(&self) -> bool {
        self.state.lock().unflushed > 0
    }
}

impl RingBuffer {
    fn writer(&self) -> Result<&Writer, Error> {
        self.writer.as_ref().ok_or_else(|| Error::ReadOnly { path: self.path.clone() })
    }

    /// Refuses an id that does not follow `latest` (see [`RingBuffer::write`]).
    fn check_id(&self, id: u64, latest: Option<u64>) -> Result<(), Error> {
        if id == u64::MAX {
            return Err(Error::ReservedId { id });
        }
        match latest {
            Some(latest) if id <= latest => Err(Error::NotIncreasing { id, latest }),
            Some(latest) if id - latest > self.layout.records() => {
                Err(Error::TooFarAhead { id, latest, records: self.layout.records() })
            }
            _ => Ok(()),
        }
    }

    /// `write`.
    pub(crate) fn write_record(&self, id: u64, payload: &[u8]) -> Result<(), Error> {
        let writer = self.writer()?;
        let mut state = writer.state.lock();
        self.write_one(writer, &mut state, id, payload)
    }

    /// `write_many`: checks every id (and every length, without compression) first.
    pub(crate) fn write_batch(&self, records: &[(u64, &[u8])]) -> Result<usize, Error> {
        let writer = self.writer()?;
        let mut state = writer.state.lock();
        let mut latest = state.latest;
        let max = self.layout.record_size() - FRAME_HEADER;
        for &(id, payload) in records {
            self.check_id(id, latest)?;
            if writer.compression == Compression::None && payload.len() > max {
                return Err(Error::PayloadTooLarge { len: payload.len(), max });
            }
            latest = Some(id);
        }
        for &(id, payload) in records {
            self.write_one(writer, &mut state, id, payload)?;
        }
        Ok(records.len())
    }

    fn write_one(
        &self,
        writer: &Writer,
        state: &mut MutexGuard<'_, WriterState>,
        id: u64,
        payload: &[u8],
    ) -> Result<(), Error> {
        self.check_id(id, state.latest)?;
        let max = self.layout.record_size() - FRAME_HEADER;
        let state = &mut **state;
        let compressed = match writer.compression {
            Compression::Lz4 if !payload.is_empty() && payload.len() <= MAX_DECODED => {
                state.compressor.compress(payload)
            }
            _ => None,
        };
        let (stored, frame) = match compressed {
            Some(c) if c.len() <= max => (c, Frame::new(id, c.len(), payload.len(), true)),
            _ if payload.len() <= max => (payload, Frame::new(id, payload.len(), payload.len(), false)),
            _ => return Err(Error::PayloadTooLarge { len: payload.len(), max }),
        };
        let header = frame.encode(&self.seed, stored);
        let slot = self.layout.slot(id);
        let (claim, waited) = writer.gate.begin_write(slot, PIN_PATIENCE).map_err(|waited| {
            self.telemetry.add(Count::PinWait, 1);
            Error::SlotPinned { id, waited }
        })?;
        if waited {
            self.telemetry.add(Count::PinWait, 1);
        }
        let odd = self.control.begin_write(slot);
        let written = self.store.write_frame(slot, &header, stored);
        self.control.end_write(odd);
        writer.gate.end_write(claim);
        written?;
        state.latest = Some(id);
        state.unflushed += 1;
        state.dirty[self.layout.locate(slot).0 as usize] = true;
        self.control.publish(id + 1);
        self.waiters.notify();
        self.telemetry.add(Count::Write, 1);
        self.telemetry.add(Count::BytesWritten, payload.len() as u64);
        self.telemetry.add(Count::BytesStored, stored.len() as u64);
        if writer.flush_every > 0 && state.unflushed >= writer.flush_every {
            self.flush_state(state)?;
        }
        Ok(())
    }

    /// `flush`.
    pub(crate) fn flush_writer(&self) -> Result<(), Error> {
        let Some(writer) = &self.writer else { return Ok(()) };
        let mut state = writer.state.lock();
        self.flush_state(&mut state)
    }

    fn flush_state(&self, state: &mut WriterState) -> Result<(), Error> {
        if state.unflushed == 0 {
            return Ok(());
        }
        let synced = (|| {
            for (shard, dirty) in state.dirty.iter_mut().enumerate().skip(1) {
                if *dirty {
                    self.store.sync(shard as u32)?;
                    *dirty = false;
                }
            }
            let latest = state.latest.expect("records were written");
            self.control.set_flushed(latest + 1);
            self.store.sync(0)?;
            state.dirty[0] = false;
            Ok(())
        })();
        match synced {
            Ok(()) => {
                state.unflushed = 0;
                self.telemetry.add(Count::Flush, 1);
                Ok(())
            }
            Err(e) => {
                self.telemetry.add(Count::FlushError, 1);
                Err(e)
            }
        }
    }
}
