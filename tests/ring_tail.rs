//! A reader process tails a writer process (must-show 4): the reader opens the ring read-only and calls
//! `wait_for` on each next id, and sees every record, in order, byte-identical. The writer writes in
//! bursts with pauses, so the reader both keeps up with a busy ring and waits on an idle one. Run with
//! the two processes in opposite I/O modes, both ways round. Each record carries the wall-clock time it
//! was written, and the reader reports how long after that it had the record: over all records, and for
//! the first record after each pause (the wake-up latency of its polling `wait_for`). Reported, not
//! asserted: timing is for benchmarks, not tests.
#![cfg(feature = "ring")]

mod ring_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachefs::ring::{IoMode, ReadOptions, RingBuffer};
use ring_common::{len_for, options, payload};

const ROLE: &str = "CACHEFS_RING_TAIL_ROLE";
const DIR: &str = "CACHEFS_RING_TAIL_DIR";
const MODE: &str = "CACHEFS_RING_TAIL_MODE";
const RECORDS: u64 = 8192;
const SIZE: u32 = 512;
const COUNT: u64 = 5_000;

fn mode_named(name: &str) -> IoMode {
    if name == "pread" { IoMode::Pread } else { IoMode::Mmap }
}

/// The writer or the reader: the parent runs it (with `--ignored`) in a process of its own.
#[test]
#[ignore = "a child process of the tail tests"]
fn tail_child() {
    let (Ok(role), Ok(dir), Ok(mode)) = (std::env::var(ROLE), std::env::var(DIR), std::env::var(MODE)) else {
        panic!("tail_child is run by its parent test, which sets its environment")
    };
    let (path, mode) = (Path::new(&dir).join("ring.dat"), mode_named(&mode));
    if role == "writer" {
        let ring = RingBuffer::open(&path, options(mode, RECORDS, SIZE)).expect("open");
        let max = ring.max_payload();
        for id in 0..COUNT {
            ring.write(id, &stamped(id, max)).expect("write");
            if id % 500 == 499 {
                std::thread::sleep(Duration::from_millis(20)); // idle: the reader must wait
            }
        }
        ring.close().expect("close");
        println!("WROTE {COUNT}");
    } else {
        let ring = RingBuffer::open_read_only(&path, ReadOptions { mode, ..ReadOptions::default() }).expect("open");
        let max = ring.max_payload();
        let (mut buf, mut all, mut woken) = (Vec::new(), Vec::new(), Vec::new());
        for id in 0..COUNT {
            assert!(ring.wait_for(id, Duration::from_secs(60)).expect("wait"), "record {id} never came");
            ring.read(id, &mut buf).expect("read");
            let latency = now_nanos().saturating_sub(u64::from_le_bytes(buf[..8].try_into().unwrap()));
            assert!(buf[8..] == payload(id, len_for(id, max - 8)), "record {id} differs");
            all.push(latency);
            if id % 500 == 0 && id > 0 {
                woken.push(latency);
            }
        }
        let s = ring.stats();
        let us = |v: &mut Vec<u64>, q: f64| {
            v.sort_unstable();
            v[((v.len() - 1) as f64 * q) as usize] as f64 / 1e3
        };
        println!(
            "READ {COUNT} in order; {} retries, {} crc failures; write-to-read latency p50 {:.0} µs, p99 {:.0} µs; \
             after a pause p50 {:.0} µs, max {:.0} µs",
            s.retries,
            s.crc_failures,
            us(&mut all, 0.5),
            us(&mut all, 0.99),
            us(&mut woken, 0.5),
            us(&mut woken, 1.0)
        );
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Record `id`: the time it is written, then bytes derived from the id.
fn stamped(id: u64, max: usize) -> Vec<u8> {
    let mut p = now_nanos().to_le_bytes().to_vec();
    p.extend(payload(id, len_for(id, max - 8)));
    p
}

fn spawn(role: &str, dir: &Path, mode: IoMode) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["tail_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .env(MODE, mode.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn tail(writer_mode: IoMode, reader_mode: IoMode) {
    let dir = tempfile::tempdir().unwrap();
    // Create the ring first, so that the reader can open it before the writer starts.
    drop(RingBuffer::open(dir.path().join("ring.dat"), options(writer_mode, RECORDS, SIZE)).unwrap());
    let started = Instant::now();
    let reader = spawn("reader", dir.path(), reader_mode);
    std::thread::sleep(Duration::from_millis(50));
    let writer = spawn("writer", dir.path(), writer_mode);
    let (w, r) = (writer.wait_with_output().unwrap(), reader.wait_with_output().unwrap());
    let show = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert!(w.status.success() && show(&w).contains(&format!("WROTE {COUNT}")), "writer: {}", show(&w));
    assert!(r.status.success() && show(&r).contains(&format!("READ {COUNT} in order")), "reader: {}", show(&r));
    let out = show(&r);
    let line = out.split("READ").nth(1).and_then(|l| l.lines().next()).unwrap_or_default().to_string();
    eprintln!("writer {writer_mode:?}, reader {reader_mode:?}: read{line}; {:.2} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_reader_process_tails_a_writer_process_mmap_writer() {
    tail(IoMode::Mmap, IoMode::Pread);
}

#[test]
fn a_reader_process_tails_a_writer_process_pread_writer() {
    tail(IoMode::Pread, IoMode::Mmap);
}
