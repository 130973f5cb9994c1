//! Hostile crash test of `cachefs::ring` from its public documentation: a child process writes and
//! flushes (explicitly, or through flush_every), reporting each flush that returned Ok; the parent
//! SIGKILLs it at random moments, 50 times, alternating Mmap and Pread. After each kill the writer's
//! open recovers: every flushed record of the last lap is byte-identical, latest_id >= the last flushed
//! id, nothing is served torn, and a read-only handle that stayed open across the crashes agrees.
#![cfg(feature = "ring")]

mod hostile_ring_util;
mod kill_window;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachefs::ring::{Error, IoMode, ReadOptions, RingBuffer, RingOptions};
use hostile_ring_util::*;

const DIR: &str = "HOSTILE_RING_CRASH_DIR";
const GEN: &str = "HOSTILE_RING_CRASH_GEN";
const RECORDS: u64 = 256;
const MAXP: usize = 104;

fn options(mode: IoMode, flush_every: u32) -> RingOptions {
    RingOptions { mode, flush_every, ..RingOptions::new(RECORDS, 128) }
}

fn mode_of(generation: u64) -> IoMode {
    if generation.is_multiple_of(2) { IoMode::Mmap } else { IoMode::Pread }
}

#[test]
#[ignore = "child of holds_sigkill_never_loses_a_flushed_record"]
fn crash_child() {
    let Ok(generation) = std::env::var(GEN) else { return };
    let generation: u64 = generation.parse().unwrap();
    let path = env_path(DIR).join("r.dat");
    // odd generations of each mode use flush_every, even ones explicit flushes
    let auto = (generation / 2) % 2 == 1;
    let ring = RingBuffer::open(&path, options(mode_of(generation), if auto { 16 } else { 0 })).unwrap();
    let start = ring.latest_id().map_or(0, |l| l + 1);
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(out, "S {start}").unwrap();
    out.flush().unwrap();
    let mut flushed = ring.stats().flushed_id;
    for id in start.. {
        ring.write(id, &payload(id, generation, len_for(id, MAXP))).unwrap();
        if auto {
            let f = ring.stats().flushed_id;
            if f != flushed {
                flushed = f;
                writeln!(out, "F {}", f.unwrap()).unwrap();
                out.flush().unwrap();
            }
        } else if id % 16 == 15 {
            ring.flush().unwrap();
            writeln!(out, "F {id}").unwrap();
            out.flush().unwrap();
        }
    }
}

#[test]
fn holds_sigkill_never_loses_a_flushed_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.dat");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(seed());
    // id -> generation whose flush covered it
    let mut flushed: BTreeMap<u64, u64> = BTreeMap::new();
    let mut long_lived: Option<RingBuffer> = None;
    let (mut acks, mut unflushed_served, mut torn, mut sacrificed_lost, started) =
        (0u64, 0u64, 0u64, 0u64, Instant::now());
    let mut window = kill_window::KillWindow::new(5, 150);
    for generation in 1..=50u64 {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(DIR, dir.path())
            .env(GEN, generation.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(window.delay(rng.next()));
        child.kill().unwrap();
        let mut text = String::new();
        child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "generation {generation}: the child ended by itself: {err}");
        assert!(!err.contains("panicked"), "generation {generation}: the child panicked:\n{err}");
        let complete = text.rfind('\n').map_or("", |e| &text[..e]);
        let mut start = None;
        let acks_before = acks;
        for line in complete.lines() {
            let line = line.trim_start_matches("test crash_child ... ");
            if let Some(s) = line.strip_prefix("S ") {
                start = Some(s.parse::<u64>().unwrap());
            } else if let Some(f) = line.strip_prefix("F ") {
                let f: u64 = f.parse().unwrap();
                let s = start.expect("F before S");
                for id in s.max(f.saturating_sub(RECORDS * 2))..=f {
                    flushed.entry(id).or_insert(generation);
                }
                acks += 1;
            }
        }
        window.after_kill((acks - acks_before) as usize);
        // forget ids more than two laps old
        if let Some(&max) = flushed.keys().next_back() {
            flushed = flushed.split_off(&max.saturating_sub(RECORDS * 2));
        }

        // the writer's next open recovers
        let mode = mode_of(generation + 1);
        let ring = RingBuffer::open(&path, options(mode, 0))
            .unwrap_or_else(|e| panic!("generation {generation}: reopen: {e:?}"));
        let latest = ring.latest_id();
        let max_flushed = flushed.keys().next_back().copied();
        assert!(latest >= max_flushed, "generation {generation}: latest {latest:?} < last flushed {max_flushed:?}");
        let fresh =
            RingBuffer::open_read_only(&path, ReadOptions { mode: mode_of(generation), ..Default::default() }).unwrap();
        if long_lived.is_none() {
            long_lived = RingBuffer::open_read_only(&path, ReadOptions::default()).ok();
        }
        let Some(latest) = latest else { continue };
        let generations = 1..=generation;
        for (h, name) in
            [(Some(&ring), "writer"), (Some(&fresh), "fresh read-only"), (long_lived.as_ref(), "long-lived read-only")]
        {
            let Some(h) = h else { continue };
            let t = Instant::now();
            assert_eq!(h.latest_id(), Some(latest), "generation {generation}: {name} sees another latest id");
            // The oldest record of the lap shares its slot with `latest + 1`: a write of that id cut short by
            // the kill had begun to overwrite it (as `write` documents), so it may be gone (`NotFound`),
            // never served torn.
            let sacrificed = (latest + 1).checked_sub(RECORDS);
            for id in (latest + 1).saturating_sub(RECORDS)..=latest {
                let r = read_vec(h, id);
                match (flushed.get(&id), r) {
                    (Some(&g), Ok(bytes)) => assert!(
                        bytes == payload(id, g, len_for(id, MAXP)),
                        "generation {generation} {name}: flushed record {id} (generation {g}) not byte-identical"
                    ),
                    (Some(_), Err(Error::NotFound { .. })) if Some(id) == sacrificed => sacrificed_lost += 1,
                    (Some(&g), Err(e)) => panic!(
                        "generation {generation} {name} ({mode:?}): flushed record {id} (generation {g}) lost: {e:?}"
                    ),
                    (None, Ok(bytes)) => {
                        assert!(
                            is_payload_of(id, &bytes, generations.clone()),
                            "generation {generation} {name}: unflushed {id} served wrong bytes"
                        );
                        unflushed_served += 1;
                    }
                    (None, Err(Error::NotFound { .. })) => {}
                    (None, Err(Error::Corrupt { .. })) => torn += 1,
                    (None, Err(e)) => panic!("generation {generation} {name}: {id}: {e:?}"),
                }
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{name}: reads took {:?}", t.elapsed());
        }
        let v = ring.verify(|_, _| {}).unwrap();
        assert!(v.corrupt <= 2, "generation {generation}: {v:?}");
        ring.close().unwrap();
    }
    eprintln!(
        "50 kills, {acks} flushes acknowledged, {} flushed ids tracked, {unflushed_served} unflushed records served, {torn} torn refused, {sacrificed_lost} records overwritten by a write the kill cut short, kill window {} ms, {:.1} s",
        flushed.len(),
        window.span_ms(),
        started.elapsed().as_secs_f64()
    );
    assert!(acks > 50, "too few flushes to prove anything");
}

/// A header older than the records (written, then the header page put back as it was before): the
/// writer's open recovers a latest id at least the header's, and serves only intact records; if the
/// new history skips ids, whatever it serves between is byte-identical.
#[test]
fn holds_recovery_with_a_stale_header() {
    // Build the state by hand: a ring whose header says latest 9 but whose slots hold valid records
    // up to 14 (written, not flushed, then a copy of the header from before them).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.dat");
    let ring = RingBuffer::open(&path, RingOptions::new(64, 128)).unwrap();
    for id in 0..10 {
        ring.write(id, &payload(id, 1, 50)).unwrap();
    }
    ring.close().unwrap();
    let before = std::fs::read(&path).unwrap();
    let ring = RingBuffer::open(&path, RingOptions::new(64, 128)).unwrap();
    for id in 10..15 {
        ring.write(id, &payload(id, 1, 50)).unwrap();
    }
    ring.close().unwrap();
    let mut after = std::fs::read(&path).unwrap();
    after[..4096].copy_from_slice(&before[..4096]);
    std::fs::write(&path, &after).unwrap();
    let ring = RingBuffer::open(&path, RingOptions::new(64, 128)).unwrap();
    let latest = ring.latest_id().unwrap();
    eprintln!("recovered latest {latest} (records to 14 were intact on disk)");
    assert!((9..=14).contains(&latest));
    for id in 0..=latest {
        assert_eq!(read_vec(&ring, id).unwrap(), payload(id, 1, 50));
    }
    let v = ring.verify(|_, _| {}).unwrap();
    eprintln!("{v:?}");
    // the new history skips to latest + 3
    let next = latest + 3;
    ring.write(next, b"new history").unwrap();
    let mut seen = BTreeSet::new();
    for id in latest + 1..next {
        if let Ok(b) = read_vec(&ring, id) {
            seen.insert(id);
            assert_eq!(b, payload(id, 1, 50));
        }
    }
    eprintln!("ids between the recovered latest and the next write served: {seen:?}");
}
