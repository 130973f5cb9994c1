//! Checking every slot of a ring: [`RingBuffer::verify`], used by `cachefs ring inspect`.

use serde::Serialize;

use super::read::Seen;
use super::record::{Frame, Verdict};
use super::{Error, RingBuffer};

/// Most corrupt slots listed by number in a [`VerifyReport`] (all are counted).
const LIST: usize = 100;

/// What [`RingBuffer::verify`] found, slot by slot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Slots checked.
    pub slots: u64,
    /// Slots holding a valid record that the ring would serve (at or before the latest id).
    pub valid: u64,
    /// Slots never written.
    pub empty: u64,
    /// Slots whose frame fails its checks, or holds a record that belongs in another slot.
    pub corrupt: u64,
    /// Slots holding a valid record past the latest id (left by a crash, never served).
    pub beyond_latest: u64,
    /// Slots being overwritten by the writer while they were checked.
    pub changing: u64,
    /// The smallest and largest id among the valid records.
    pub ids: Option<(u64, u64)>,
    /// Payload bytes of the valid records, as stored.
    pub stored_bytes: u64,
    /// The first corrupt slots, by number.
    pub corrupt_slots: Vec<u64>,
}

impl VerifyReport {
    /// Whether no slot is corrupt.
    pub fn is_clean(&self) -> bool {
        self.corrupt == 0
    }
}

impl RingBuffer {
    /// Checks the frame in every slot (CRC, magic, lengths, placement) without serving anything, and
    /// reports what it found. `progress(done, total)` is called every 4,096 slots and at the end,
    /// outside any lock. Readers and the writer may keep working meanwhile; the report is a scan, not
    /// a snapshot.
    ///
    /// ```
    /// use cachefs::ring::{RingBuffer, RingOptions};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let ring = RingBuffer::open(dir.path().join("ring.dat"), RingOptions::new(16, 64))?;
    /// ring.write(1, b"one")?;
    /// let report = ring.verify(|_, _| {})?;
    /// assert_eq!((report.valid, report.empty, report.is_clean()), (1, 15, true));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport, Error> {
        let records = self.layout.records();
        let latest = self.control.published().checked_sub(1);
        let mut r = VerifyReport { slots: records, ..VerifyReport::default() };
        for slot in 0..records {
            let verdict = match self.see(slot)? {
                Seen::Changing => None,
                Seen::Mapped(bytes, _pin) => Some(Frame::check(&self.seed, bytes)),
                Seen::Copied(buf, n) => Some(Frame::check(&self.seed, &buf[..n])),
            };
            match verdict {
                None => r.changing += 1,
                Some(Verdict::Empty) => r.empty += 1,
                Some(Verdict::Valid(f)) if self.layout.slot(f.id) == slot => {
                    if latest.is_some_and(|l| f.id <= l) {
                        r.valid += 1;
                        r.stored_bytes += u64::from(f.stored_len);
                        r.ids = Some(r.ids.map_or((f.id, f.id), |(lo, hi)| (lo.min(f.id), hi.max(f.id))));
                    } else {
                        r.beyond_latest += 1;
                    }
                }
                Some(_) => {
                    r.corrupt += 1;
                    if r.corrupt_slots.len() < LIST {
                        r.corrupt_slots.push(slot);
                    }
                }
            }
            if (slot + 1) % 4096 == 0 {
                progress(slot + 1, records);
            }
        }
        progress(records, records);
        Ok(r)
    }
}
