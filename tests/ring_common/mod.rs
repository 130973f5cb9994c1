//! Helpers shared by the ring buffer's integration tests (`tests/ring_*.rs`).
#![allow(dead_code)]

use cachefs::ring::{IoMode, RingOptions};

pub const MODES: [IoMode; 2] = [IoMode::Mmap, IoMode::Pread];

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The payload of record `id`: `len` bytes derived from the id (never all equal), so any record can be
/// regenerated and compared byte for byte.
pub fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A payload length for `id` between 0 and `max` (both included, each reached).
pub fn len_for(id: u64, max: usize) -> usize {
    match id % 7 {
        0 => 0,
        1 => max,
        _ => (id.wrapping_mul(2_654_435_761) % (max as u64 + 1)) as usize,
    }
}

/// Options for a ring of `records` slots of `record_size` bytes in `mode`.
pub fn options(mode: IoMode, records: u64, record_size: u32) -> RingOptions {
    RingOptions { mode, ..RingOptions::new(records, record_size) }
}

/// Nanoseconds since the epoch, for seeds that differ between runs.
pub fn time_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
}
