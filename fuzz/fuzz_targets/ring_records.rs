//! Ring record frames and headers: a ring written with known records, then damaged (bytes patched
//! anywhere in its files, which may be cut short), and reopened read-only in either I/O mode. Opening
//! gives a ring or a typed error; every read gives the record that was written under that id, or
//! `NotFound`, or `Corrupt`, or `TooFarAhead` (a damaged header may say an earlier latest id): never a
//! panic, never another payload.
#![no_main]

use arbitrary::Arbitrary;
use cachefs::ring::{Compression, Error, IoMode, ReadOptions, RingBuffer, RingOptions};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    records: u8,
    written: u8,
    lz4: bool,
    pread: bool,
    patches: Vec<(u32, u8)>,
    cut: Option<u32>,
}

/// The payload written under `id`: its length and bytes depend on the id.
fn payload(id: u64) -> Vec<u8> {
    let len = (id * 7 % 90) as usize;
    (0..len).map(|i| (id as u8).wrapping_mul(31).wrapping_add(i as u8)).collect()
}

fuzz_target!(|input: Input| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("fuzz.ring");
    let records = u64::from(input.records % 16) + 2;
    let mut options = RingOptions::new(records, 128);
    options.shard_bytes = 4096 * 2 + 128 * 4; // several shards for larger rings
    if input.lz4 {
        options.compression = Compression::Lz4;
    }
    let written = u64::from(input.written % 40);
    {
        let Ok(ring) = RingBuffer::open(&path, options) else { return };
        for id in 1..=written {
            ring.write(id, &payload(id)).expect("a valid write");
        }
        ring.flush().expect("flush");
    }
    // Damage: patches at offsets across all the files, then perhaps a cut of the last one.
    let mut files: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.path()).collect();
    files.sort();
    let mut bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).expect("read")).collect();
    let total: usize = bytes.iter().map(Vec::len).sum();
    for &(at, byte) in input.patches.iter().take(16) {
        let mut at = at as usize % total.max(1);
        for b in bytes.iter_mut() {
            if at < b.len() {
                b[at] = byte;
                break;
            }
            at -= b.len();
        }
    }
    if let (Some(cut), Some(last)) = (input.cut, bytes.last_mut()) {
        let keep = cut as usize % (last.len() + 1);
        last.truncate(keep);
    }
    for (f, b) in files.iter().zip(&bytes) {
        std::fs::write(f, b).expect("write back");
    }
    let mode = if input.pread { IoMode::Pread } else { IoMode::Mmap };
    let Ok(ring) = RingBuffer::open_read_only(&path, ReadOptions { mode, ..ReadOptions::default() }) else {
        return;
    };
    let mut out = Vec::new();
    for id in 0..=written + 2 {
        match ring.get(id) {
            Ok(r) => {
                assert_eq!(r.id(), id);
                assert_eq!(&*r, payload(id).as_slice(), "id {id}: a payload that was not written under it");
            }
            Err(
                Error::NotFound { .. } | Error::Corrupt { .. } | Error::ReservedId { .. } | Error::TooFarAhead { .. },
            ) => {}
            Err(e) => panic!("id {id}: unexpected error {e}"),
        }
        match ring.read(id, &mut out) {
            Ok(n) => assert_eq!(&out[..n], payload(id).as_slice(), "read {id}"),
            Err(
                Error::NotFound { .. } | Error::Corrupt { .. } | Error::ReservedId { .. } | Error::TooFarAhead { .. },
            ) => {}
            Err(e) => panic!("read {id}: unexpected error {e}"),
        }
    }
});
