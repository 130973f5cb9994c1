//! The ring buffer's API end to end, in both I/O modes: reads and writes, laps, ids, payload limits,
//! compression, reopening, geometry checks, locking, read-only handles, guards and waiting.
#![cfg(feature = "ring")]

mod ring_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachefs::ring::{Compression, Error, Geometry, IoMode, ReadBatch, ReadOptions, RingBuffer, RingOptions};
use ring_common::{MODES, len_for, options, payload};

fn read(ring: &RingBuffer, id: u64) -> Result<Vec<u8>, Error> {
    let mut out = vec![0xAA; 3]; // cleared by read
    ring.read(id, &mut out).map(|n| {
        assert_eq!(n, out.len());
        out
    })
}

#[test]
fn records_round_trip_through_read_get_and_read_many() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let ring = RingBuffer::open(dir.path().join("ring.dat"), options(mode, 64, 256)).unwrap();
        assert_eq!(ring.latest_id(), None);
        assert!(ring.read(0, &mut Vec::new()).unwrap_err().is_not_found());
        let max = ring.max_payload();
        assert_eq!(max, 256 - 24);
        for id in 10..60 {
            ring.write(id, &payload(id, len_for(id, max))).unwrap();
        }
        assert_eq!(ring.latest_id(), Some(59));
        for id in 10..60 {
            let want = payload(id, len_for(id, max));
            assert_eq!(read(&ring, id).unwrap(), want, "{mode:?} id {id}");
            let guard = ring.get(id).unwrap();
            assert_eq!((guard.id(), &*guard), (id, &want[..]));
            assert_eq!(guard.is_zero_copy(), mode == IoMode::Mmap, "{mode:?}");
        }
        let mut batch = ReadBatch::new();
        assert_eq!(ring.read_many(0..1000, &mut batch).unwrap(), 50);
        assert!(
            batch.iter().map(|(id, p)| (id, p.to_vec())).eq((10..60).map(|id| (id, payload(id, len_for(id, max)))))
        );
        assert_eq!(ring.read_many(20..25, &mut batch).unwrap(), 5);
        assert_eq!(batch.iter().next().unwrap().0, 20);
        assert!(batch.corrupt().is_empty());
        let s = ring.stats();
        assert_eq!(
            (s.writes, s.reads, s.hits, s.misses, s.crc_failures),
            (50, 1 + 100 + 60 + 5, 155, 1 + 10, 0),
            "read_many looks at ids 0..10 too"
        );
        assert_eq!(s.latest_id, Some(59));
        ring.close().unwrap();
    }
}

#[test]
fn a_wrapped_ring_forgets_old_laps_and_refuses_ids_far_ahead() {
    // Must-show 3.
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let ring = RingBuffer::open(dir.path().join("ring.dat"), options(mode, 8, 64)).unwrap();
        for id in 0..20 {
            ring.write(id, &payload(id, 40)).unwrap();
        }
        for id in 0..12 {
            assert!(matches!(ring.read(id, &mut Vec::new()), Err(Error::NotFound { id: i }) if i == id), "{id}");
            assert!(ring.get(id).unwrap_err().is_not_found());
        }
        for id in 12..20 {
            assert_eq!(read(&ring, id).unwrap(), payload(id, 40));
        }
        // Past the latest: not yet written, then, beyond one lap, an error.
        for id in 20..=27 {
            assert!(ring.read(id, &mut Vec::new()).unwrap_err().is_not_found(), "{id}");
        }
        for id in [28, 1_000, u64::MAX] {
            let e = ring.read(id, &mut Vec::new()).unwrap_err();
            assert!(matches!(e, Error::TooFarAhead { latest: 19, records: 8, .. }), "{id}: {e}");
            assert!(matches!(ring.wait_for(id, Duration::ZERO), Err(Error::TooFarAhead { .. })));
        }
        assert!(matches!(ring.write(28, b"x"), Err(Error::TooFarAhead { id: 28, latest: 19, records: 8 })));
        let mut batch = ReadBatch::new();
        assert_eq!(ring.read_many(0..u64::MAX, &mut batch).unwrap(), 8, "only the last lap");
        // Skipping ids within a lap is allowed; the skipped ids are not found.
        ring.write(27, b"skip").unwrap();
        assert_eq!(read(&ring, 27).unwrap(), b"skip");
        assert!(ring.read(23, &mut Vec::new()).unwrap_err().is_not_found());
        assert!(ring.read(19, &mut Vec::new()).unwrap_err().is_not_found(), "slot 3 now holds 27");
        assert_eq!(read(&ring, 20 - 1 - 1).unwrap(), payload(18, 40), "18's slot was not reused");
    }
}

#[test]
fn a_ring_of_one_slot_keeps_only_the_latest_record() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let ring = RingBuffer::open(dir.path().join("ring.dat"), options(mode, 1, 32)).unwrap();
        assert_eq!(ring.max_payload(), 8);
        for id in 0..5 {
            ring.write(id, &id.to_le_bytes()).unwrap();
            assert_eq!(read(&ring, id).unwrap(), id.to_le_bytes());
            if id > 0 {
                assert!(ring.read(id - 1, &mut Vec::new()).unwrap_err().is_not_found());
            }
        }
        assert!(matches!(ring.write(6, b""), Err(Error::TooFarAhead { records: 1, .. })), "one lap is one id");
        ring.write(5, b"").unwrap();
        let mut batch = ReadBatch::new();
        assert_eq!(ring.read_many(0..10, &mut batch).unwrap(), 1);
    }
}

#[test]
fn ids_must_increase_and_failed_writes_change_nothing() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let ring = RingBuffer::open(dir.path().join("ring.dat"), options(mode, 16, 64)).unwrap();
        ring.write(100, b"first may be anything").unwrap();
        assert!(matches!(ring.write(100, b"again"), Err(Error::NotIncreasing { id: 100, latest: 100 })));
        assert!(matches!(ring.write(7, b"back"), Err(Error::NotIncreasing { id: 7, latest: 100 })));
        assert!(matches!(ring.write(u64::MAX, b""), Err(Error::ReservedId { .. })));
        let big = vec![1u8; 41];
        assert!(matches!(ring.write(101, &big), Err(Error::PayloadTooLarge { len: 41, max: 40 })));
        assert_eq!(ring.latest_id(), Some(100));
        assert_eq!(read(&ring, 100).unwrap(), b"first may be anything");
        // A batch is checked before anything is written.
        let e = ring.write_many(&[(101, b"a"), (102, b"b"), (102, b"c")]).unwrap_err();
        assert!(matches!(e, Error::NotIncreasing { id: 102, latest: 102 }), "{e}");
        assert!(matches!(ring.write_many(&[(101, b"a"), (102, &big)]), Err(Error::PayloadTooLarge { .. })));
        assert_eq!(ring.latest_id(), Some(100));
        assert_eq!(ring.write_many(&[(101, b"a"), (105, b""), (106, &[7u8; 40])]).unwrap(), 3);
        assert_eq!(read(&ring, 105).unwrap(), b"", "an empty payload is a record");
        assert_eq!(read(&ring, 106).unwrap(), [7u8; 40]);
        assert!(ring.read(104, &mut Vec::new()).unwrap_err().is_not_found());
        assert_eq!(ring.stats().writes, 4);
    }
}

#[test]
fn compression_stores_less_and_fits_larger_compressible_payloads() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let opts = RingOptions { compression: Compression::Lz4, ..options(mode, 16, 128) };
        let ring = RingBuffer::open(dir.path().join("ring.dat"), opts).unwrap();
        let text = "temperature=21.5;humidity=40;".repeat(100).into_bytes(); // 2,900 bytes
        ring.write(1, &text).unwrap();
        ring.write(2, &payload(2, 104)).unwrap(); // incompressible, fits as given
        assert!(matches!(ring.write(3, &payload(3, 105)), Err(Error::PayloadTooLarge { len: 105, max: 104 })));
        assert_eq!(read(&ring, 1).unwrap(), text);
        let guard = ring.get(1).unwrap();
        assert!(!guard.is_zero_copy(), "a decoded payload is a copy");
        assert_eq!(&*guard, &text[..]);
        drop(guard);
        assert_eq!(&*ring.get(2).unwrap(), &payload(2, 104)[..]);
        let s = ring.stats();
        assert_eq!(s.bytes_written, 2_900 + 104);
        assert!(s.bytes_stored < 300, "stored {}", s.bytes_stored);
        drop(ring);
        // A handle without compression reads compressed records (the frame says how they are stored).
        let plain = RingBuffer::open(dir.path().join("ring.dat"), options(mode, 16, 128)).unwrap();
        assert_eq!(read(&plain, 1).unwrap(), text);
        let mut batch = ReadBatch::new();
        plain.read_many(0..3, &mut batch).unwrap();
        assert_eq!(batch.iter().map(|(_, p)| p.len()).collect::<Vec<_>>(), [2_900, 104]);
    }
}

#[test]
fn reopening_keeps_records_in_either_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, options(IoMode::Mmap, 32, 128)).unwrap();
    for id in 0..50 {
        ring.write(id, &payload(id, len_for(id, 104))).unwrap();
    }
    ring.close().unwrap();
    let ring = RingBuffer::open(&path, options(IoMode::Pread, 32, 128)).unwrap();
    assert_eq!(ring.latest_id(), Some(49));
    for id in 18..50 {
        assert_eq!(read(&ring, id).unwrap(), payload(id, len_for(id, 104)));
    }
    assert!(matches!(ring.write(49, b""), Err(Error::NotIncreasing { .. })), "continues after the latest id");
    ring.write(50, b"fifty").unwrap();
    drop(ring); // flushes
    let reader = RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap();
    assert_eq!(reader.latest_id(), Some(50));
    assert_eq!(reader.stats().flushed_id, Some(50), "drop flushed");
    assert_eq!(read(&reader, 50).unwrap(), b"fifty");
}

#[test]
fn another_geometry_or_a_short_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let opts = RingOptions { shard_bytes: 4096 + 10 * 128, ..options(IoMode::Mmap, 25, 128) };
    let ring = RingBuffer::open(&path, opts.clone()).unwrap();
    ring.write(3, b"three").unwrap();
    ring.close().unwrap();
    for other in [
        RingOptions { records: 26, ..opts.clone() },
        RingOptions { record_size: 136, ..opts.clone() },
        RingOptions { shard_bytes: 1 << 20, ..opts.clone() },
    ] {
        match RingBuffer::open(&path, other.clone()) {
            Err(Error::GeometryMismatch { requested, found, .. }) => {
                assert_eq!((requested, found), (other.geometry(), opts.geometry()));
            }
            e => panic!("{:?}", e.map(|_| ())),
        }
    }
    // The read-only handle takes the geometry from the header.
    let reader = RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap();
    assert_eq!(reader.geometry(), Geometry { records: 25, record_size: 128, shard_bytes: 4096 + 1280 });
    assert_eq!(reader.files().len(), 3);
    drop(reader);
    // Truncate the last shard by one byte: both kinds of open refuse it.
    let last = dir.path().join("ring.dat.2");
    let len = std::fs::metadata(&last).unwrap().len();
    assert_eq!(len, 4096 + 5 * 128);
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 1).unwrap();
    for e in [
        RingBuffer::open(&path, opts.clone()).unwrap_err(),
        RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::FileTooShort { expected, found, .. } if *expected == len && *found == len - 1),
            "{e}"
        );
        assert!(e.to_string().contains("ring.dat.2"), "{e}");
    }
    assert_eq!(std::fs::metadata(&last).unwrap().len(), len - 1, "not repaired behind the user's back");
}

#[test]
fn one_writer_at_a_time_and_any_number_of_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let writer = RingBuffer::open(&path, options(IoMode::Mmap, 16, 64)).unwrap();
    for mode in MODES {
        let e = RingBuffer::open(&path, options(mode, 16, 64)).unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
    }
    writer.write(1, b"one").unwrap();
    let readers: Vec<_> = MODES
        .iter()
        .map(|&mode| RingBuffer::open_read_only(&path, ReadOptions { mode, ..ReadOptions::default() }).unwrap())
        .collect();
    for r in &readers {
        assert!(r.is_read_only());
        assert_eq!(read(r, 1).unwrap(), b"one", "published records are visible before a flush");
        let guard = r.get(1).unwrap();
        assert!(!guard.is_zero_copy(), "read-only handles lend copies");
        assert!(matches!(r.write(2, b"two"), Err(Error::ReadOnly { .. })));
        assert!(matches!(r.write_many(&[(2, b"two")]), Err(Error::ReadOnly { .. })));
        r.flush().unwrap();
    }
    writer.write(2, b"two").unwrap();
    assert!(readers.iter().all(|r| r.latest_id() == Some(2)));
    drop(writer);
    let again = RingBuffer::open(&path, options(IoMode::Pread, 16, 64)).unwrap();
    assert_eq!(again.latest_id(), Some(2));
}

#[test]
fn bad_options_and_paths_are_errors_that_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    for (opts, needle) in [
        (RingOptions::new(0, 64), "records must be at least 1"),
        (RingOptions::new(8, 0), "record_size"),
        (RingOptions::new(8, 24), "record_size"),
        (RingOptions::new(8, 100), "multiple of 8"),
        (RingOptions::new(8, !7), "record_size"),
        (RingOptions { shard_bytes: 0, ..RingOptions::new(8, 64) }, "shard_bytes"),
        (RingOptions { shard_bytes: 4096, ..RingOptions::new(8, 64) }, "shard_bytes"),
        (RingOptions { shard_bytes: 4096 + 64, ..RingOptions::new(10_000, 64) }, "shard files"),
    ] {
        let e = RingBuffer::open(&path, opts).unwrap_err();
        assert!(matches!(&e, Error::InvalidOptions { reason } if reason.contains(needle)), "{e}");
    }
    assert!(!path.exists());
    let missing = dir.path().join("no/such/dir/ring.dat");
    let e = RingBuffer::open(&missing, RingOptions::new(8, 64)).unwrap_err();
    assert!(matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("no/such/dir/ring.dat"), "{e}");
    let e = RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap_err();
    assert!(matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{e}");
    // A directory, and a file that is not a ring.
    assert!(RingBuffer::open(dir.path(), RingOptions::new(8, 64)).is_err());
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "remember the milk").unwrap();
    for e in [
        RingBuffer::open(&notes, RingOptions::new(8, 64)).unwrap_err(),
        RingBuffer::open_read_only(&notes, ReadOptions::default()).unwrap_err(),
    ] {
        assert!(matches!(e, Error::BadHeader { .. }), "{e}");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "remember the milk");
}

#[test]
fn shards_split_the_ring_at_whole_records() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.dat");
        // shard_bytes not a multiple of record_size: 3 records of 200 bytes per file, 7 files.
        let opts = RingOptions { shard_bytes: 4096 + 650, ..options(mode, 20, 200) };
        let ring = RingBuffer::open(&path, opts).unwrap();
        let sizes: Vec<u64> = ring.files().iter().map(|f| std::fs::metadata(f).unwrap().len()).collect();
        assert_eq!(sizes, [4696, 4696, 4696, 4696, 4696, 4696, 4496]);
        assert!(sizes.iter().all(|&s| s <= 4096 + 650));
        assert_eq!(ring.files()[3], dir.path().join("ring.dat.3"));
        for id in 0..45 {
            ring.write(id, &payload(id, 176)).unwrap();
        }
        ring.flush().unwrap();
        for id in 25..45 {
            assert_eq!(read(&ring, id).unwrap(), payload(id, 176));
        }
        assert_eq!(ring.verify(|_, _| {}).unwrap().valid, 20);
        // Batches cross shard ends and the ring's end (ids 25..45 are slots 5..20 then 0..5).
        let mut batch = ReadBatch::new();
        assert_eq!(ring.read_many(0..100, &mut batch).unwrap(), 20);
        assert!(batch.iter().map(|(id, p)| (id, p.to_vec())).eq((25..45).map(|id| (id, payload(id, 176)))));
        let reader = RingBuffer::open_read_only(&path, ReadOptions { mode, ..ReadOptions::default() }).unwrap();
        assert_eq!(reader.read_many(30..33, &mut batch).unwrap(), 3);
        assert_eq!(batch.iter().map(|(id, _)| id).collect::<Vec<_>>(), [30, 31, 32]);
    }
}

#[test]
fn a_guard_holds_its_slot_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let ring = RingBuffer::open(dir.path().join("ring.dat"), options(IoMode::Mmap, 4, 64)).unwrap();
    for id in 0..4 {
        ring.write(id, &payload(id, 32)).unwrap();
    }
    let guard = ring.get(1).unwrap();
    assert!(guard.is_zero_copy());
    ring.write(4, b"slot 0 is free").unwrap();
    let started = Instant::now();
    let e = ring.write(5, b"slot 1 is pinned").unwrap_err();
    assert!(matches!(e, Error::SlotPinned { id: 5, .. }), "{e}");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for the guard first");
    assert_eq!(&*guard, &payload(1, 32)[..], "the lent bytes never changed");
    assert_eq!(ring.latest_id(), Some(4));
    // Dropped by another thread while the writer waits: the write goes through.
    std::thread::scope(|scope| {
        scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(guard);
        });
        ring.write(5, b"slot 1 again").unwrap();
    });
    assert_eq!(read(&ring, 5).unwrap(), b"slot 1 again");
    assert!(ring.stats().pin_waits >= 2);
}

#[test]
fn wait_for_wakes_a_consumer_in_this_process_and_in_a_read_only_handle() {
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.dat");
        let ring = Arc::new(RingBuffer::open(&path, options(mode, 64, 64)).unwrap());
        assert!(!ring.wait_for(0, Duration::from_millis(5)).unwrap(), "nothing written: times out");
        let reader =
            Arc::new(RingBuffer::open_read_only(&path, ReadOptions { mode, ..ReadOptions::default() }).unwrap());
        // How many records each consumer has read: the writer stays less than the ring's 64 records
        // ahead of the slower one, so that a consumer slowed by load never finds its record overwritten
        // (the ring's design); it still runs ahead, so consumers do wait for records.
        let progress: Arc<[AtomicU64; 2]> = Arc::default();
        let consumers: Vec<_> = [ring.clone(), reader]
            .into_iter()
            .enumerate()
            .map(|(c, r)| {
                let progress = progress.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = Vec::new();
                    for id in 0..200u64 {
                        assert!(r.wait_for(id, Duration::from_secs(30)).unwrap(), "{id} never came");
                        r.read(id, &mut buf).unwrap();
                        seen.push(u64::from_le_bytes(buf[..8].try_into().unwrap()));
                        progress[c].store(id + 1, Ordering::Release);
                    }
                    seen
                })
            })
            .collect();
        for id in 0..200u64 {
            let started = Instant::now();
            while progress.iter().any(|p| p.load(Ordering::Acquire) + 48 <= id) {
                assert!(started.elapsed() < Duration::from_secs(30), "a consumer stopped before {id}");
                std::thread::sleep(Duration::from_millis(1));
            }
            ring.write(id, &id.to_le_bytes()).unwrap();
            if id % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        for c in consumers {
            assert_eq!(c.join().unwrap(), (0..200).collect::<Vec<_>>());
        }
        assert!(ring.wait_for(10, Duration::MAX).unwrap(), "an infinite timeout does not overflow");
    }
}

/// A writer closed while another thread is spawning a child process (which holds a copy of every
/// descriptor between its fork and its exec) releases its lock at once: reopening right after works.
/// Before the lock was released explicitly, the child's copy kept it, and the reopen failed with `Locked`
/// (seen in CI: two hostile ring tests reopened a ring while other tests of their binary spawned children).
#[test]
fn a_writer_reopened_while_a_child_is_being_spawned_is_not_locked() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, RingOptions::new(8, 64)).unwrap();
    ring.write(1, b"one").unwrap();
    let spawner = std::thread::spawn(|| {
        let mut cmd = std::process::Command::new("true");
        // SAFETY: the closure runs in the child between fork and exec, and only sleeps (`nanosleep`, which
        // is async-signal-safe); it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                std::thread::sleep(Duration::from_millis(1500));
                Ok(())
            });
        }
        cmd.status().unwrap()
    });
    // The child has forked (holding a copy of the ring's descriptors) and sleeps before its exec.
    std::thread::sleep(Duration::from_millis(300));
    ring.close().unwrap();
    let ring = RingBuffer::open(&path, RingOptions::new(8, 64)).expect("reopened while the child still sleeps");
    assert_eq!(read(&ring, 1).unwrap(), b"one");
    assert!(spawner.join().unwrap().success());
}
