//! One writer lapping a small ring as fast as it can while readers read it from many threads: through
//! the writer's handle (pinned reads and zero-copy guards) and through read-only handles (seqlock
//! copies), in both modes. Every record served must be exactly the one asked for: a torn or mixed-up
//! read would show as a payload that does not match its id. No read may report corruption, since
//! nothing is damaged; the only refusals allowed are `NotFound` (overwritten, or not yet written).
#![cfg(feature = "ring")]

mod ring_common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use cachefs::ring::{Error, IoMode, ReadBatch, ReadOptions, RingBuffer};
use ring_common::{MODES, Rng, len_for, options, payload, time_seed};

const RECORDS: u64 = 32;
const SIZE: u32 = 512;
const WRITES: u64 = 40_000;
/// A bound on the whole run, whatever the machine's load.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Tally {
    hits: AtomicU64,
    misses: AtomicU64,
}

fn check(ring: &RingBuffer, id: u64, max: usize, buf: &mut Vec<u8>, tally: &Tally, guard: bool) {
    let got = if guard {
        ring.get(id).map(|r| {
            assert_eq!(r.id(), id);
            assert!(*r == payload(id, len_for(id, max))[..], "guard of {id} differs");
        })
    } else {
        ring.read(id, buf).map(|_| assert!(*buf == payload(id, len_for(id, max)), "record {id} differs"))
    };
    match got {
        Ok(()) => tally.hits.fetch_add(1, Relaxed),
        Err(Error::NotFound { .. }) => tally.misses.fetch_add(1, Relaxed),
        Err(e) => panic!("record {id}: {e}"),
    };
}

#[test]
fn readers_racing_a_lapping_writer_never_see_a_torn_record() {
    let seed = time_seed();
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.dat");
        let writer = RingBuffer::open(&path, options(mode, RECORDS, SIZE)).unwrap();
        let max = writer.max_payload();
        let readers: Vec<RingBuffer> = MODES
            .iter()
            .map(|&m| RingBuffer::open_read_only(&path, ReadOptions { mode: m, ..ReadOptions::default() }).unwrap())
            .collect();
        let (done, tally, started) = (AtomicBool::new(false), Tally::default(), Instant::now());
        std::thread::scope(|s| {
            // Readers of the writer's handle: random recent ids, alternately copied and lent.
            for t in 0..3u64 {
                let (w, done, tally) = (&writer, &done, &tally);
                s.spawn(move || {
                    let (mut rng, mut buf) = (Rng(seed ^ t), Vec::new());
                    while !done.load(Relaxed) && started.elapsed() < LIMIT {
                        if rng.next() % 64 == 0 {
                            std::thread::yield_now(); // five busy threads share two cores here
                        }
                        let Some(latest) = w.latest_id() else { continue };
                        if rng.next() % 16 == 0 {
                            let mut batch = ReadBatch::new();
                            w.read_many(latest.saturating_sub(RECORDS)..latest + 1, &mut batch).unwrap();
                            assert!(batch.corrupt().is_empty(), "{:?}", batch.corrupt());
                            for (id, p) in batch.iter() {
                                assert!(p == payload(id, len_for(id, max)), "batch record {id} differs");
                            }
                            continue;
                        }
                        let id = latest.saturating_sub(rng.below(RECORDS + 2));
                        check(w, id, max, &mut buf, tally, rng.next() % 2 == 0);
                    }
                });
            }
            // Read-only handles (mapped and pread), and a batch reader.
            for (t, r) in readers.iter().enumerate() {
                let (done, tally) = (&done, &tally);
                s.spawn(move || {
                    let (mut rng, mut buf, mut batch) = (Rng(seed ^ (10 + t as u64)), Vec::new(), ReadBatch::new());
                    while !done.load(Relaxed) && started.elapsed() < LIMIT {
                        let Some(latest) = r.latest_id() else { continue };
                        if rng.next() % 8 == 0 {
                            r.read_many(latest.saturating_sub(RECORDS)..latest + 1, &mut batch).unwrap();
                            assert!(batch.corrupt().is_empty(), "{:?}", batch.corrupt());
                            for (id, p) in batch.iter() {
                                assert!(p == payload(id, len_for(id, max)), "batch record {id} differs");
                            }
                        } else {
                            check(r, latest.saturating_sub(rng.below(RECORDS + 2)), max, &mut buf, tally, true);
                        }
                    }
                });
            }
            for id in 0..WRITES {
                if started.elapsed() > LIMIT {
                    break;
                }
                writer.write(id, &payload(id, len_for(id, max))).unwrap();
            }
            done.store(true, Relaxed);
        });
        let (hits, misses) = (tally.hits.load(Relaxed), tally.misses.load(Relaxed));
        let ws = writer.stats();
        let retries: u64 = readers.iter().map(|r| r.stats().retries).sum();
        eprintln!(
            "{mode:?}: {} writes, {hits} reads served intact, {misses} not found, {} pin waits, {retries} seqlock \
             retries, {:.1} s",
            ws.writes,
            ws.pin_waits,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(ws.writes, WRITES, "the writer finished within the time bound");
        assert!(hits > 1_000, "too few reads overlapped the writes: {hits}");
        assert_eq!(ws.crc_failures + readers.iter().map(|r| r.stats().crc_failures).sum::<u64>(), 0);
    }
}

#[test]
fn readers_of_a_quiet_ring_agree_from_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let ring = RingBuffer::open(dir.path().join("ring.dat"), options(IoMode::Pread, 256, 256)).unwrap();
    let max = ring.max_payload();
    for id in 0..256 {
        ring.write(id, &payload(id, len_for(id, max))).unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let ring = &ring;
            s.spawn(move || {
                let mut buf = Vec::new();
                for round in 0..20 {
                    for id in 0..256 {
                        let id = (id * 7 + t + round) % 256;
                        ring.read(id, &mut buf).unwrap();
                        assert!(buf == payload(id, len_for(id, max)));
                    }
                }
            });
        }
    });
    assert_eq!(ring.stats().hits, 4 * 20 * 256);
}
