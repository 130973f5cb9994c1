//! The ring's shape on disk: how many slots, how big, and which file and offset hold each slot.
//!
//! Every shard file starts with a 4 KiB header page, then holds `per_shard` whole records; the last
//! file holds the remainder. Slot `s` lives in file `s / per_shard` at `4096 + (s % per_shard) *
//! record_size`, so records are 8-byte aligned (the header page and `record_size` are multiples of 8),
//! which the mapped I/O's word-wise atomic copies rely on.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Error;
use super::record::FRAME_HEADER;

/// Bytes of the header page at the start of every shard file.
pub(crate) const HEADER_BYTES: u64 = 4096;
/// Most shard files one ring may have (each is an open file descriptor while the ring is open).
pub(crate) const MAX_SHARDS: u64 = 1024;
/// Largest record: records are meant to be small and many; a slot is copied whole in `pread` mode.
pub(crate) const MAX_RECORD_SIZE: u32 = 64 << 20;

/// A ring's geometry, recorded in its header at creation and checked at every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    /// Slots: record `id` lives in slot `id % records`.
    pub records: u64,
    /// Bytes per slot, frame header included.
    pub record_size: u32,
    /// Largest size of one shard file.
    pub shard_bytes: u64,
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records of {} bytes in shards of at most {} bytes",
            self.records, self.record_size, self.shard_bytes
        )
    }
}

/// A valid geometry with everything derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    geometry: Geometry,
    per_shard: u64,
    shards: u32,
}

impl Layout {
    /// Checks `g` and derives the shard layout; every rule broken is an [`Error::InvalidOptions`].
    pub(crate) fn new(g: Geometry) -> Result<Layout, Error> {
        if g.records == 0 {
            return Err(Error::invalid("records must be at least 1"));
        }
        let min = (FRAME_HEADER as u32 + 8).next_multiple_of(8);
        if g.record_size < min || g.record_size > MAX_RECORD_SIZE || !g.record_size.is_multiple_of(8) {
            return Err(Error::invalid(format!(
                "record_size must be a multiple of 8 from {min} to {MAX_RECORD_SIZE} bytes (it includes the \
                 {FRAME_HEADER}-byte frame header), got {}",
                g.record_size
            )));
        }
        let room = g.shard_bytes.saturating_sub(HEADER_BYTES);
        let per_shard = room / u64::from(g.record_size);
        if per_shard == 0 {
            return Err(Error::invalid(format!(
                "shard_bytes must hold the {HEADER_BYTES}-byte header and at least one {}-byte record, got {}",
                g.record_size, g.shard_bytes
            )));
        }
        let per_shard = per_shard.min(g.records);
        let shards = g.records.div_ceil(per_shard);
        if shards > MAX_SHARDS {
            return Err(Error::invalid(format!(
                "{} records of {} bytes need {shards} shard files of at most {} bytes; at most {MAX_SHARDS} \
                 are allowed (raise shard_bytes)",
                g.records, g.record_size, g.shard_bytes
            )));
        }
        let layout = Layout { geometry: g, per_shard, shards: shards as u32 };
        // Every file must be mappable in one piece.
        if layout.shard_len(0).is_none_or(|len| len > isize::MAX as u64) {
            return Err(Error::invalid(format!("a shard of {} records is too large to map", per_shard)));
        }
        Ok(layout)
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub(crate) fn records(&self) -> u64 {
        self.geometry.records
    }

    pub(crate) fn record_size(&self) -> usize {
        self.geometry.record_size as usize
    }

    pub(crate) fn shards(&self) -> u32 {
        self.shards
    }

    /// Records in shard `i`.
    pub(crate) fn records_in(&self, i: u32) -> u64 {
        let first = u64::from(i) * self.per_shard;
        self.per_shard.min(self.geometry.records - first)
    }

    /// The length of shard file `i`: header page plus its records. `None` only if it overflows.
    pub(crate) fn shard_len(&self, i: u32) -> Option<u64> {
        self.records_in(i).checked_mul(u64::from(self.geometry.record_size))?.checked_add(HEADER_BYTES)
    }

    /// Slots from `slot` to the end of its shard.
    pub(crate) fn slots_left_in_shard(&self, slot: u64) -> u64 {
        let shard = slot / self.per_shard;
        (shard * self.per_shard + self.per_shard).min(self.geometry.records) - slot
    }

    /// The slot of record `id`.
    #[inline]
    pub(crate) fn slot(&self, id: u64) -> u64 {
        id % self.geometry.records
    }

    /// The shard holding `slot` and the slot's byte offset in that shard's record area (after the header).
    #[inline]
    pub(crate) fn locate(&self, slot: u64) -> (u32, u64) {
        ((slot / self.per_shard) as u32, (slot % self.per_shard) * u64::from(self.geometry.record_size))
    }

    /// The path of shard `i`: `base` itself for shard 0, then `base.1`, `base.2`, …
    pub(crate) fn shard_path(base: &Path, i: u32) -> PathBuf {
        if i == 0 {
            return base.to_path_buf();
        }
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{i}"));
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(records: u64, record_size: u32, shard_bytes: u64) -> Geometry {
        Geometry { records, record_size, shard_bytes }
    }

    #[test]
    fn shards_hold_whole_records_after_the_header() {
        // 10 records of 1 KiB, shards of 4 KiB + 3.5 KiB: 3 records each, 4 files (3, 3, 3, 1).
        let l = Layout::new(g(10, 1024, 4096 + 3584)).unwrap();
        assert_eq!(l.shards(), 4);
        assert_eq!((0..4).map(|i| l.records_in(i)).collect::<Vec<_>>(), [3, 3, 3, 1]);
        assert_eq!(l.shard_len(0), Some(4096 + 3 * 1024));
        assert_eq!(l.shard_len(3), Some(4096 + 1024));
        assert_eq!(l.locate(l.slot(13)), (1, 0));
        assert_eq!(l.locate(5), (1, 2048));
        assert_eq!(l.locate(9), (3, 0));
        assert_eq!((l.slots_left_in_shard(4), l.slots_left_in_shard(6), l.slots_left_in_shard(9)), (2, 3, 1));
        assert_eq!(Layout::shard_path(Path::new("/d/ring.dat"), 0), Path::new("/d/ring.dat"));
        assert_eq!(Layout::shard_path(Path::new("/d/ring.dat"), 2), Path::new("/d/ring.dat.2"));
    }

    #[test]
    fn one_shard_when_everything_fits() {
        let l = Layout::new(g(100, 128, 1 << 30)).unwrap();
        assert_eq!((l.shards(), l.records_in(0), l.shard_len(0)), (1, 100, Some(4096 + 12_800)));
    }

    #[test]
    fn absurd_geometries_are_refused_with_a_reason() {
        for (bad, needle) in [
            (g(0, 128, 1 << 20), "records must be at least 1"),
            (g(10, 0, 1 << 20), "record_size must be a multiple of 8"),
            (g(10, 24, 1 << 20), "from 32"),
            (g(10, 100, 1 << 20), "multiple of 8"),
            (g(10, u32::MAX - 7, u64::MAX), "record_size"),
            (g(10, 128, 0), "shard_bytes must hold"),
            (g(10, 128, 4096 + 127), "shard_bytes must hold"),
            (g(1 << 40, 128, 4096 + 128), "shard files"),
            (g(1 << 51, 4096, u64::MAX), "too large to map"),
        ] {
            let e = Layout::new(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }
}
