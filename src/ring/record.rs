//! One record's frame: a 24-byte header, then the payload, in a slot of `record_size` bytes.
//!
//! ```text
//! offset  size  field
//!      0     4  CRC32 (crc32fast) of bytes 4 .. 24 + stored length, seeded per ring
//!      4     2  magic 0xC5F7: never zero, so a zero-filled slot is never a record
//!      6     2  flags: bits 0-1 the payload's codec (0 stored as given, 1 LZ4 block); other bits 0
//!      8     8  id
//!     16     4  stored length (bytes of payload in the slot)
//!     20     4  payload length once decoded (equal to the stored length when not compressed)
//!     24     …  payload, then unused bytes up to record_size
//! ```
//!
//! All integers are little-endian. The CRC covers every header byte after its own and the payload, in
//! one contiguous pass, and starts from a seed derived from the ring's random nonce, so a record copied
//! from another ring (or a stale shard file of an older ring at the same path) does not validate. A
//! frame is accepted only if its magic, flags, lengths and CRC all check; any flipped bit among those
//! bytes is caught. The unused bytes after the payload are never read or served.

/// Bytes of the frame header.
pub(crate) const FRAME_HEADER: usize = 24;

const MAGIC: u16 = 0xC5F7;
const CODEC_MASK: u16 = 0b11;
const CODEC_RAW: u16 = 0;
const CODEC_LZ4: u16 = 1;
/// Longest payload accepted when compressing, and the longest decoded length a frame may claim: bounds
/// the buffer a (damaged or hostile) frame can make a reader allocate.
pub(crate) const MAX_DECODED: usize = 64 << 20;

/// A frame header as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) id: u64,
    compressed: bool,
    /// Bytes of payload in the slot.
    pub(crate) stored_len: u32,
    /// Bytes once decoded.
    pub(crate) len: u32,
}

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Zero bytes where a header would be: never written.
    Empty,
    /// A header that fails a check, or a CRC mismatch: torn or damaged.
    Corrupt,
    /// A valid frame (its id may not be the one wanted).
    Valid(Frame),
}

/// A ring's frame checksum: CRC32 started from a seed derived from the ring's nonce (never zero,
/// whatever the nonce). Holds a hasher set up once (CPU feature detection included) and cloned per frame.
#[derive(Clone)]
pub(crate) struct Seed(crc32fast::Hasher);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed")
    }
}

impl Seed {
    pub(crate) fn new(nonce: u64) -> Seed {
        Seed::from_u32(((nonce ^ (nonce >> 32)) as u32) | 1)
    }

    fn from_u32(seed: u32) -> Seed {
        Seed(crc32fast::Hasher::new_with_initial(seed))
    }

    /// The CRC of a frame whose header and stored payload are `covered` (bytes 4 onwards).
    #[inline]
    fn crc(&self, covered: &[u8]) -> u32 {
        let mut h = self.0.clone();
        h.update(covered);
        h.finalize()
    }
}

impl Frame {
    /// A frame for `stored` bytes of payload (LZ4-compressed from `len` bytes if `compressed`).
    pub(crate) fn new(id: u64, stored_len: usize, len: usize, compressed: bool) -> Frame {
        debug_assert!(stored_len <= u32::MAX as usize && len <= u32::MAX as usize);
        Frame { id, compressed, stored_len: stored_len as u32, len: len as u32 }
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// The header bytes for this frame over `payload` (the stored bytes).
    pub(crate) fn encode(&self, seed: &Seed, payload: &[u8]) -> [u8; FRAME_HEADER] {
        debug_assert_eq!(payload.len(), self.stored_len as usize);
        let flags = if self.compressed { CODEC_LZ4 } else { CODEC_RAW };
        let mut h = [0u8; FRAME_HEADER];
        h[4..6].copy_from_slice(&MAGIC.to_le_bytes());
        h[6..8].copy_from_slice(&flags.to_le_bytes());
        h[8..16].copy_from_slice(&self.id.to_le_bytes());
        h[16..20].copy_from_slice(&self.stored_len.to_le_bytes());
        h[20..24].copy_from_slice(&self.len.to_le_bytes());
        let mut crc = seed.0.clone();
        crc.update(&h[4..]);
        crc.update(payload);
        h[0..4].copy_from_slice(&crc.finalize().to_le_bytes());
        h
    }

    /// Parses and checks the frame at the start of `slot` (a whole slot, or at least the header and
    /// stored payload). Checks everything but which id the caller wanted.
    pub(crate) fn check(seed: &Seed, slot: &[u8]) -> Verdict {
        let Some(h) = slot.get(..FRAME_HEADER) else { return Verdict::Corrupt };
        let word64 = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let (w0, id, w2) = (word64(0), word64(8), word64(16));
        if w0 | id | w2 == 0 {
            return Verdict::Empty;
        }
        let (stored_crc, magic, flags) = (w0 as u32, (w0 >> 32) as u16, (w0 >> 48) as u16);
        let (stored_len, len) = (w2 as u32, (w2 >> 32) as u32);
        if magic != MAGIC || flags & !CODEC_MASK != 0 {
            return Verdict::Corrupt;
        }
        let compressed = match flags & CODEC_MASK {
            CODEC_RAW if len == stored_len => false,
            CODEC_LZ4 if (len as usize) <= MAX_DECODED => true,
            _ => return Verdict::Corrupt,
        };
        let Some(covered) = slot.get(4..FRAME_HEADER + stored_len as usize) else {
            return Verdict::Corrupt;
        };
        if seed.crc(covered) != stored_crc {
            return Verdict::Corrupt;
        }
        Verdict::Valid(Frame { id, compressed, stored_len, len })
    }

    /// The stored payload bytes of this (checked) frame within `slot`.
    pub(crate) fn stored<'a>(&self, slot: &'a [u8]) -> &'a [u8] {
        &slot[FRAME_HEADER..FRAME_HEADER + self.stored_len as usize]
    }

    /// Appends the decoded payload to `out`. `false` if an LZ4 payload does not decode to exactly `len`
    /// bytes (a frame whose CRC passed but whose content is not what a writer made: treat as corrupt).
    pub(crate) fn decode_into(&self, slot: &[u8], out: &mut Vec<u8>) -> bool {
        let stored = self.stored(slot);
        if !self.compressed {
            out.extend_from_slice(stored);
            return true;
        }
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        match lz4_flex::block::decompress_into(stored, &mut out[start..]) {
            Ok(n) if n == self.len as usize => true,
            _ => {
                out.truncate(start);
                false
            }
        }
    }
}

impl Frame {
    /// Writes the decoded payload to `out[..len]` (`out` at least `len` long); `false` as
    /// [`decode_into`](Frame::decode_into).
    pub(crate) fn decode_to_slice(&self, slot: &[u8], out: &mut [u8]) -> bool {
        let (stored, len) = (self.stored(slot), self.len as usize);
        if !self.compressed {
            out[..len].copy_from_slice(stored);
            return true;
        }
        matches!(lz4_flex::block::decompress_into(stored, &mut out[..len]), Ok(n) if n == len)
    }
}

/// LZ4 compression with its hash table and output buffer kept between calls, so that compressing
/// allocates nothing in steady state.
#[derive(Default)]
pub(crate) struct Compressor {
    table: lz4_flex::block::CompressTable,
    out: Vec<u8>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").field("out_capacity", &self.out.capacity()).finish_non_exhaustive()
    }
}

impl Compressor {
    /// `payload` compressed, if that makes it smaller.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Option<&[u8]> {
        let need = lz4_flex::block::get_maximum_output_size(payload.len());
        if self.out.len() < need {
            self.out.resize(need, 0);
        }
        let n = lz4_flex::block::compress_into_with_table(payload, &mut self.out, &mut self.table).ok()?;
        (n < payload.len()).then(|| &self.out[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed::from_u32(0x1234_5679)
    }

    fn slot_with(id: u64, payload: &[u8], size: usize) -> Vec<u8> {
        let f = Frame::new(id, payload.len(), payload.len(), false);
        let mut slot = vec![0u8; size];
        slot[..FRAME_HEADER].copy_from_slice(&f.encode(&seed(), payload));
        slot[FRAME_HEADER..FRAME_HEADER + payload.len()].copy_from_slice(payload);
        slot
    }

    #[test]
    fn a_frame_round_trips_and_zeros_are_empty() {
        let slot = slot_with(42, b"hello", 64);
        let Verdict::Valid(f) = Frame::check(&seed(), &slot) else { panic!("valid") };
        assert_eq!((f.id, f.len, f.stored_len, f.is_compressed()), (42, 5, 5, false));
        let mut out = vec![9];
        assert!(f.decode_into(&slot, &mut out));
        assert_eq!(out, b"\x09hello");
        assert_eq!(Frame::check(&seed(), &[0u8; 64]), Verdict::Empty);
        // Id 0 with an empty payload is a valid record, distinct from a zero slot.
        let zero_id = slot_with(0, b"", 32);
        assert!(matches!(Frame::check(&seed(), &zero_id), Verdict::Valid(f) if f.id == 0 && f.len == 0));
    }

    #[test]
    fn every_flipped_bit_of_header_and_payload_is_caught() {
        let payload: Vec<u8> = (0..40u8).collect();
        let slot = slot_with(7, &payload, 72);
        for bit in 0..(FRAME_HEADER + payload.len()) * 8 {
            let mut s = slot.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Frame::check(&seed(), &s), Verdict::Corrupt, "bit {bit}");
        }
        // Bytes after the payload are not part of the record.
        let mut s = slot.clone();
        s[71] ^= 0xFF;
        assert!(matches!(Frame::check(&seed(), &s), Verdict::Valid(_)));
    }

    #[test]
    fn another_ring_seed_or_bad_lengths_do_not_validate() {
        let slot = slot_with(7, b"abc", 64);
        assert_eq!(Frame::check(&Seed::new(99), &slot), Verdict::Corrupt);
        assert_eq!(Frame::check(&Seed::new(0), &slot), Verdict::Corrupt, "a zero nonce still seeds");
        // A stored length past the slot's end.
        let f = Frame::new(7, 100, 100, false);
        let mut s = vec![0u8; 64];
        s[..FRAME_HEADER].copy_from_slice(&f.encode(&seed(), &[0u8; 100]));
        assert_eq!(Frame::check(&seed(), &s), Verdict::Corrupt);
        assert_eq!(Frame::check(&seed(), &s[..10]), Verdict::Corrupt);
    }

    #[test]
    fn compressed_payloads_round_trip_and_bad_ones_are_refused() {
        let payload = vec![b'x'; 10_000];
        let mut compressor = Compressor::default();
        let packed = compressor.compress(&payload).expect("compressible").to_vec();
        assert!(packed.len() < 100);
        let f = Frame::new(3, packed.len(), payload.len(), true);
        let mut slot = vec![0u8; 128];
        slot[..FRAME_HEADER].copy_from_slice(&f.encode(&seed(), &packed));
        slot[FRAME_HEADER..FRAME_HEADER + packed.len()].copy_from_slice(&packed);
        let Verdict::Valid(g) = Frame::check(&seed(), &slot) else { panic!("valid") };
        let mut out = Vec::new();
        assert!(g.decode_into(&slot, &mut out));
        assert_eq!(out, payload);
        // A valid CRC over bytes that are not LZ4 of the claimed length decodes to nothing.
        let lie = Frame::new(3, packed.len(), payload.len() + 1, true);
        slot[..FRAME_HEADER].copy_from_slice(&lie.encode(&seed(), &packed));
        let Verdict::Valid(l) = Frame::check(&seed(), &slot) else { panic!("crc is valid") };
        let mut out = vec![1, 2];
        assert!(!l.decode_into(&slot, &mut out));
        assert_eq!(out, [1, 2]);
        assert!(compressor.compress(&[1, 2, 3]).is_none(), "incompressible stays as given");
        let big = vec![7u8; 100_000]; // past the small table's 64 KiB
        assert!(compressor.compress(&big).is_some_and(|c| c.len() < 1_000));
    }
}
