//! A disk ring buffer with one producer and two consumers in one process.
//!
//! The producer appends sensor frames (id = frame number) and flushes every 64; one consumer tails the
//! ring record by record with `wait_for` and zero-copy `get`, the other reads it in batches with
//! `read_many`. At the end a read-only handle (as another process would open it) checks the last lap.
//!
//! `cargo run --release --example ring_buffer --features ring [DIR]` (default: a temporary directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefs::ring::{IoMode, ReadBatch, ReadOptions, RingBuffer, RingOptions};

const FRAMES: u64 = 20_000;

/// Frame `id`: a little header and readings derived from the id, 200 bytes.
fn frame(id: u64) -> Vec<u8> {
    let mut f = format!("frame {id:08} ").into_bytes();
    f.extend((0..200 - f.len()).map(|i| (id as usize * 31 + i) as u8));
    f
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);
    let path = dir.join("sensors.ring");
    let options =
        RingOptions { mode: IoMode::Mmap, flush_every: 64, name: "sensors".into(), ..RingOptions::new(4096, 256) };
    let ring = Arc::new(RingBuffer::open(&path, options)?);
    let first = ring.latest_id().map_or(0, |l| l + 1); // a rerun on the same directory continues
    let last = first + FRAMES - 1;
    let started = Instant::now();

    // Consumer 1: record by record, waiting for each, borrowing the mapped bytes.
    let tail = {
        let ring = ring.clone();
        std::thread::spawn(move || -> Result<u64, cachefs::ring::Error> {
            let mut checked = 0;
            for id in first..=last {
                if !ring.wait_for(id, Duration::from_secs(10))? {
                    panic!("frame {id} never came");
                }
                match ring.get(id) {
                    Ok(record) => {
                        assert_eq!(*record, frame(id)[..]);
                        checked += 1;
                    }
                    // A consumer slower than a whole lap finds the frame already overwritten.
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(checked)
        })
    };
    // Consumer 2: batches of up to 500 frames.
    let batches = {
        let ring = ring.clone();
        std::thread::spawn(move || -> Result<(u64, u64), cachefs::ring::Error> {
            let (mut next, mut seen, mut calls, mut batch) = (first, 0, 0, ReadBatch::new());
            while next <= last {
                ring.wait_for(next, Duration::from_secs(10))?;
                let end = ring.latest_id().map_or(next, |l| l + 1).min(next + 500);
                ring.read_many(next..end, &mut batch)?;
                for (id, payload) in batch.iter() {
                    assert_eq!(payload, &frame(id)[..]);
                    seen += 1;
                }
                calls += 1;
                next = end;
            }
            Ok((seen, calls))
        })
    };

    // The producer.
    for id in first..=last {
        ring.write(id, &frame(id))?;
    }
    ring.flush()?;
    let wrote = started.elapsed();
    let tailed = tail.join().expect("tail consumer")?;
    let (batched, calls) = batches.join().expect("batch consumer")?;

    // What another process would see.
    let reader = RingBuffer::open_read_only(&path, ReadOptions::default())?;
    let mut buf = Vec::new();
    for id in last + 1 - 4096..=last {
        reader.read(id, &mut buf)?;
        assert_eq!(buf, frame(id));
    }

    let s = ring.stats();
    println!("wrote {FRAMES} frames of 200 bytes in {wrote:?} ({} flushes)", s.flushes);
    println!("tail consumer: {tailed} frames checked in place; batch consumer: {batched} frames in {calls} batches");
    println!("read-only handle: the last lap of 4096 frames intact; latest id {:?}", reader.latest_id());
    println!("ring stats: {} reads, {} hits, {} misses, {} CRC failures", s.reads, s.hits, s.misses, s.crc_failures);
    Ok(())
}
