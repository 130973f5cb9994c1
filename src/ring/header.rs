//! The header page at the start of every shard file, and the control block in shard 0's.
//!
//! ```text
//! offset  size  field (little-endian)
//!      0     8  magic "CFSRING\0"
//!      8     4  format version (1)
//!     12     4  this file's shard index
//!     16     4  shard count
//!     20     4  record_size
//!     24     8  records
//!     32     8  shard_bytes
//!     40     8  ring nonce: random at creation; every shard carries it, record CRCs are seeded by it
//!     48     4  CRC32 of bytes 0..48
//!     64     …  control block (shard 0 only), 8-byte words changed while the ring is in use:
//!     64     8    published: latest id + 1 (0: none), stored after the record's bytes
//!     72     8    flushed: latest id + 1 known durable when the writer last flushed (a recovery hint)
//!     80     8    write sequence: odd while the writer is changing a slot (a seqlock for other processes)
//!     88     8    writing: slot + 1 being changed while the sequence is odd
//! ```
//!
//! The fixed part is written once, with `pwrite`, when the ring is created. The control block is read
//! and written only through a shared mapping of the page, with atomic operations (the writer's mapping
//! is writable; a read-only handle maps it read-only and only performs relaxed loads of 8-byte words,
//! which Rust permits on read-only memory, followed by explicit fences).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use memmap2::{MmapOptions, MmapRaw};

use super::geometry::HEADER_BYTES;
use super::{Error, Geometry};

const MAGIC: [u8; 8] = *b"CFSRING\0";
/// The format version this build reads and writes.
pub(crate) const VERSION: u32 = 1;
const CRC_END: usize = 48;

const PUBLISHED: usize = 64;
const FLUSHED: usize = 72;
const WRITE_SEQ: usize = 80;
const WRITING: usize = 88;

/// The fixed fields of a shard's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardHeader {
    pub(crate) geometry: Geometry,
    pub(crate) index: u32,
    pub(crate) shards: u32,
    pub(crate) nonce: u64,
}

/// Why a header page was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// All zero: a creation that never finished.
    Blank,
    NotARing,
    Version(u32),
    Crc,
}

impl ShardHeader {
    /// The header page of a new shard: fixed fields, a zero control block.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let g = &self.geometry;
        let mut page = vec![0u8; HEADER_BYTES as usize];
        page[0..8].copy_from_slice(&MAGIC);
        page[8..12].copy_from_slice(&VERSION.to_le_bytes());
        page[12..16].copy_from_slice(&self.index.to_le_bytes());
        page[16..20].copy_from_slice(&self.shards.to_le_bytes());
        page[20..24].copy_from_slice(&g.record_size.to_le_bytes());
        page[24..32].copy_from_slice(&g.records.to_le_bytes());
        page[32..40].copy_from_slice(&g.shard_bytes.to_le_bytes());
        page[40..48].copy_from_slice(&self.nonce.to_le_bytes());
        let crc = crc32fast::hash(&page[..CRC_END]);
        page[48..52].copy_from_slice(&crc.to_le_bytes());
        page
    }

    /// Reads the fixed fields of a header page (at least `CRC_END + 4` bytes).
    pub(crate) fn decode(page: &[u8]) -> Result<ShardHeader, HeaderProblem> {
        let Some(fixed) = page.get(..CRC_END + 4) else { return Err(HeaderProblem::NotARing) };
        if page.iter().all(|&b| b == 0) {
            return Err(HeaderProblem::Blank);
        }
        if fixed[0..8] != MAGIC {
            return Err(HeaderProblem::NotARing);
        }
        let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
        if crc32fast::hash(&fixed[..CRC_END]) != u32_at(48) {
            // Checked before the version, so a damaged version field reads as damage.
            return Err(HeaderProblem::Crc);
        }
        if u32_at(8) != VERSION {
            return Err(HeaderProblem::Version(u32_at(8)));
        }
        Ok(ShardHeader {
            geometry: Geometry { records: u64_at(24), record_size: u32_at(20), shard_bytes: u64_at(32) },
            index: u32_at(12),
            shards: u32_at(16),
            nonce: u64_at(40),
        })
    }
}

impl HeaderProblem {
    pub(crate) fn into_error(self, path: &Path) -> Error {
        let path = path.to_path_buf();
        match self {
            HeaderProblem::Blank => {
                Error::BadHeader { path, reason: "the header page is blank (creation never finished)" }
            }
            HeaderProblem::NotARing => Error::BadHeader { path, reason: "no ring magic" },
            HeaderProblem::Version(found) => Error::UnsupportedVersion { path, found, supported: VERSION },
            HeaderProblem::Crc => Error::BadHeader { path, reason: "header CRC mismatch" },
        }
    }
}

/// The control block of shard 0's header, through a shared mapping of the header page.
#[derive(Debug)]
pub(crate) struct Control {
    page: MmapRaw,
    writable: bool,
}

impl Control {
    /// Maps the header page of `file` (shard 0, already checked to hold a full header).
    pub(crate) fn map(file: &File, writable: bool) -> std::io::Result<Control> {
        let mut options = MmapOptions::new();
        options.len(HEADER_BYTES as usize);
        let page = if writable { options.map_raw(file)? } else { options.map_raw_read_only(file)? };
        Ok(Control { page, writable })
    }

    /// Whether this handle mapped the page writable (it is the writer).
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    #[inline]
    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset + 8 <= HEADER_BYTES as usize);
        // SAFETY: the mapping is one page long, page-aligned and lives as long as `self`; `offset` is a
        // multiple of 8 inside it, so the pointer is valid and aligned for an `AtomicU64`. Every access
        // to the control words, in this process and (by this crate) in others, is atomic and 8 bytes
        // wide, so no non-atomic access races with them. When the page is mapped read-only, callers
        // only `load` with `Relaxed` (see `load`), which Rust allows on read-only memory for
        // pointer-sized atomics.
        unsafe { AtomicU64::from_ptr(self.page.as_mut_ptr().add(offset).cast()) }
    }

    /// A relaxed load followed by an acquire fence: an acquire load that is also valid on read-only
    /// memory.
    #[inline]
    fn load(&self, offset: usize) -> u64 {
        let v = self.word(offset).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        v
    }

    /// `latest + 1` as last published (0: nothing yet).
    #[inline]
    pub(crate) fn published(&self) -> u64 {
        self.load(PUBLISHED)
    }

    /// `latest + 1` durable at the writer's last flush (a recovery hint).
    pub(crate) fn flushed(&self) -> u64 {
        self.load(FLUSHED)
    }

    /// The write sequence (odd while a slot is being changed) and the slot + 1 being changed.
    #[inline]
    pub(crate) fn write_seq(&self) -> u64 {
        self.load(WRITE_SEQ)
    }

    /// The write sequence read after a copy: an acquire fence first, so the copy's loads are ordered
    /// before this load (the seqlock's closing read).
    #[inline]
    pub(crate) fn write_seq_after_copy(&self) -> u64 {
        fence(Ordering::Acquire);
        self.word(WRITE_SEQ).load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn writing(&self) -> u64 {
        self.word(WRITING).load(Ordering::Relaxed)
    }

    fn writable_word(&self, offset: usize) -> &AtomicU64 {
        assert!(self.writable, "the control block is mapped read-only");
        self.word(offset)
    }

    /// Publishes `published` (= latest id + 1). `SeqCst`: it orders after the record's bytes (release)
    /// and before the waiter count the writer then reads (see `wait.rs`).
    #[inline]
    pub(crate) fn publish(&self, published: u64) {
        self.writable_word(PUBLISHED).store(published, Ordering::SeqCst);
    }

    pub(crate) fn set_flushed(&self, flushed: u64) {
        self.writable_word(FLUSHED).store(flushed, Ordering::Release);
    }

    /// Opens a write of `slot` for other processes' readers: the slot first, then the sequence made
    /// odd with release (a reader that sees the odd value sees the slot), then a release fence so that
    /// the record's bytes, stored after it, are ordered after the odd value.
    #[inline]
    pub(crate) fn begin_write(&self, slot: u64) -> u64 {
        let seq = self.writable_word(WRITE_SEQ);
        // Relaxed: only this writer stores the sequence.
        let s = seq.load(Ordering::Relaxed) | 1;
        self.writable_word(WRITING).store(slot + 1, Ordering::Relaxed);
        seq.store(s, Ordering::Release);
        fence(Ordering::Release);
        s
    }

    /// Closes the write opened with `begin_write` (which returned `odd`): the sequence becomes even
    /// with release, after the record's bytes.
    #[inline]
    pub(crate) fn end_write(&self, odd: u64) {
        self.writable_word(WRITE_SEQ).store(odd.wrapping_add(1), Ordering::Release);
        self.writable_word(WRITING).store(0, Ordering::Relaxed);
    }

    /// Makes the sequence even and clears `writing` after a crash left a write open.
    pub(crate) fn reset_after_crash(&self) {
        let seq = self.writable_word(WRITE_SEQ);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s + (s & 1), Ordering::Release);
        self.writable_word(WRITING).store(0, Ordering::Relaxed);
    }

    /// Writes the page's dirty bytes to the device (the control block travels with shard 0's data).
    #[cfg(test)]
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.page.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ShardHeader {
        ShardHeader {
            geometry: Geometry { records: 1000, record_size: 128, shard_bytes: 1 << 20 },
            index: 2,
            shards: 3,
            nonce: 0xDEAD_BEEF_0123_4567,
        }
    }

    #[test]
    fn a_header_round_trips_and_every_fixed_bit_is_checked() {
        let page = header().encode();
        assert_eq!(ShardHeader::decode(&page), Ok(header()));
        for bit in 0..(CRC_END + 4) * 8 {
            let mut p = page.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            assert!(ShardHeader::decode(&p).is_err(), "bit {bit} flipped was accepted");
        }
        assert_eq!(ShardHeader::decode(&[0u8; 4096]), Err(HeaderProblem::Blank));
        assert_eq!(ShardHeader::decode(b"hello"), Err(HeaderProblem::NotARing));
        let mut text = vec![b'#'; 4096];
        text[..5].copy_from_slice(b"hello");
        assert_eq!(ShardHeader::decode(&text), Err(HeaderProblem::NotARing));
    }

    #[test]
    fn another_version_is_named() {
        let mut page = header().encode();
        page[8..12].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32fast::hash(&page[..CRC_END]);
        page[48..52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(ShardHeader::decode(&page), Err(HeaderProblem::Version(7)));
        let e = HeaderProblem::Version(7).into_error(Path::new("r"));
        assert_eq!(e.to_string(), "r: ring format version 7, this build reads version 1");
    }

    #[test]
    fn the_control_block_is_shared_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.dat");
        std::fs::write(&path, header().encode()).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let writer = Control::map(&file, true).unwrap();
        let reader = Control::map(&std::fs::File::open(&path).unwrap(), false).unwrap();
        writer.publish(41);
        writer.set_flushed(40);
        let odd = writer.begin_write(9);
        assert_eq!((reader.published(), reader.flushed(), reader.write_seq() & 1, reader.writing()), (41, 40, 1, 10));
        writer.end_write(odd);
        assert_eq!((reader.write_seq(), reader.writing()), (odd + 1, 0));
        writer.begin_write(3);
        writer.reset_after_crash();
        assert_eq!(reader.write_seq() & 1, 0);
        writer.sync().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(u64::from_le_bytes(on_disk[64..72].try_into().unwrap()), 41);
        // The fixed fields are untouched by the control block.
        assert_eq!(ShardHeader::decode(&on_disk), Ok(header()));
    }
}
