//! What a careless or hostile user might do to a ring, and what must happen: a typed error or a
//! documented refusal, never a panic, never a record served wrong, never stored data changed by the
//! failing call.
#![cfg(feature = "ring")]

mod ring_common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use cachefs::ring::{Compression, Error, IoMode, ReadBatch, ReadOptions, RingBuffer, RingOptions};
use ring_common::{MODES, payload};

#[test]
fn a_file_truncated_under_an_open_pread_handle_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, RingOptions { mode: IoMode::Pread, ..RingOptions::new(16, 64) }).unwrap();
    for id in 0..16 {
        ring.write(id, &payload(id, 40)).unwrap();
    }
    let reader =
        RingBuffer::open_read_only(&path, ReadOptions { mode: IoMode::Pread, ..ReadOptions::default() }).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096 + 8 * 64).unwrap();
    for r in [&ring, &reader] {
        let mut buf = Vec::new();
        r.read(3, &mut buf).unwrap(); // still inside the file
        let e = r.read(12, &mut buf).unwrap_err();
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof), "{e}");
        assert!(r.read_many(0..16, &mut ReadBatch::new()).is_err());
    }
    drop((ring, reader));
    assert!(matches!(
        RingBuffer::open(&path, RingOptions { mode: IoMode::Pread, ..RingOptions::new(16, 64) }),
        Err(Error::FileTooShort { .. })
    ));
}

#[test]
fn one_record_per_shard_over_many_laps() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let opts = RingOptions { mode, shard_bytes: 4096 + 32, ..RingOptions::new(3, 32) };
        let ring = RingBuffer::open(dir.path().join("ring.dat"), opts).unwrap();
        assert_eq!(ring.files().len(), 3);
        let mut buf = Vec::new();
        for id in 0..30u64 {
            ring.write(id, &id.to_le_bytes()).unwrap();
            for back in 0..3 {
                if let Some(old) = id.checked_sub(back) {
                    ring.read(old, &mut buf).unwrap();
                    assert_eq!(buf, old.to_le_bytes());
                }
            }
        }
        let mut batch = ReadBatch::new();
        assert_eq!(ring.read_many(0..100, &mut batch).unwrap(), 3);
        assert_eq!(ring.verify(|_, _| {}).unwrap().valid, 3);
    }
}

#[test]
fn writers_racing_with_the_same_ids_never_corrupt_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let ring = RingBuffer::open(dir.path().join("ring.dat"), RingOptions::new(64, 64)).unwrap();
    let (ok, refused) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3u8)
            .map(|t| {
                let ring = &ring;
                s.spawn(move || {
                    let (mut ok, mut refused) = (0, 0);
                    for id in 0..500u64 {
                        match ring.write(id, &[t; 8]) {
                            Ok(()) => ok += 1,
                            Err(Error::NotIncreasing { .. }) => refused += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert_eq!(ok + refused, 1_500);
    assert!(ok <= 500, "each id written once");
    assert_eq!(ring.latest_id(), Some(499));
    let report = ring.verify(|_, _| {}).unwrap();
    assert!(report.is_clean() && report.valid == 64, "{report:?}");
}

#[test]
fn a_garbage_control_block_under_a_read_only_handle_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, RingOptions::new(8, 64)).unwrap();
    for id in 0..5 {
        ring.write(id, b"x").unwrap();
    }
    ring.close().unwrap();
    let reader = RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for published in [u64::MAX, u64::MAX - 1, 3, 1 << 40] {
        f.write_all_at(&published.to_le_bytes(), 64).unwrap();
        let mut batch = ReadBatch::new();
        let n = reader.read_many(0..u64::MAX, &mut batch).unwrap();
        assert!(n <= 5);
        for (id, p) in batch.iter() {
            assert!(id < 5 && p == b"x");
        }
        let _ = reader.read(4, &mut Vec::new());
        assert!(reader.wait_for(2, Duration::ZERO).is_ok());
        let report = reader.verify(|_, _| {}).unwrap();
        assert!(report.is_clean());
    }
    f.write_all_at(&5u64.to_le_bytes(), 64).unwrap();
    let mut buf = Vec::new();
    reader.read(4, &mut buf).unwrap();
    assert_eq!(buf, b"x");
}

#[test]
fn payloads_too_large_even_compressed_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RingOptions { compression: Compression::Lz4, ..RingOptions::new(4, 4096) };
    let ring = RingBuffer::open(dir.path().join("ring.dat"), opts).unwrap();
    // 65 MiB of zeros compresses well, but is past the decoded limit a frame may claim (64 MiB).
    let huge = vec![0u8; (64 << 20) + 1];
    assert!(matches!(ring.write(1, &huge), Err(Error::PayloadTooLarge { .. })));
    // 64 MiB of zeros compresses to about 256 KiB: more than a 4 KiB record holds.
    let big = vec![0u8; 64 << 20];
    assert!(matches!(ring.write(1, &big), Err(Error::PayloadTooLarge { .. })));
    // 512 KiB of zeros compresses to about 2 KiB (LZ4 gains at most about 255:1): fits.
    let fits = vec![0u8; 512 << 10];
    ring.write(1, &fits).unwrap();
    let mut buf = Vec::new();
    ring.read(1, &mut buf).unwrap();
    assert_eq!(buf, fits);
    assert_eq!(&*ring.get(1).unwrap(), &fits[..], "a decoded payload larger than a slot is lent too");
    assert_eq!(ring.latest_id(), Some(1));
}

#[test]
fn large_records_are_read_header_first_in_pread_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, RingOptions { mode: IoMode::Pread, ..RingOptions::new(3, 1 << 20) }).unwrap();
    ring.write(0, b"small").unwrap();
    ring.write(1, &payload(1, (1 << 20) - 24)).unwrap();
    ring.write(2, b"").unwrap();
    let mut buf = Vec::new();
    for (id, want) in [(0, b"small".to_vec()), (1, payload(1, (1 << 20) - 24)), (2, Vec::new())] {
        ring.read(id, &mut buf).unwrap();
        assert_eq!(buf, want);
    }
    // A damaged length field past the slot is caught, not read past.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&u32::MAX.to_le_bytes(), 4096 + 16)
        .unwrap();
    assert!(matches!(ring.read(0, &mut buf), Err(Error::Corrupt { .. })));
}
