//! A cold 2 GiB ring opened with mmap costs almost no memory until read (must-show 6).
//!
//! The parent creates a 2 GiB ring (three shard files), writes 16 4 KiB records every 4,096 slots (8 MiB in
//! all), closes it and drops its pages from the page cache (`posix_fadvise(DONTNEED)`). A child process
//! then opens it mapped, as the writer (which runs recovery) and read-only, and reports its resident set
//! (`VmRSS`) from `/proc/self/status` after each step: it must stay under 16 MiB until records are read,
//! and grow once they are, which shows that the measure sees the mapping.
#![cfg(feature = "ring")]

mod ring_common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use cachefs::ring::{IoMode, ReadOptions, RingBuffer, RingOptions};
use ring_common::payload;

const CHILD_DIR: &str = "CACHEFS_RING_RSS_DIR";
const RECORDS: u64 = 1 << 19;
const SIZE: u32 = 4096;
/// Records are written in runs of `RUN` every `EVERY` slots: spread over the whole ring, in few extents
/// (so that deleting the files afterwards is quick).
const EVERY: u64 = 4096;
const RUN: u64 = 16;

fn written_ids() -> impl Iterator<Item = u64> {
    (0..RECORDS / EVERY).flat_map(|run| run * EVERY..run * EVERY + RUN)
}
const LIMIT_MIB: u64 = 16;

fn ring_options() -> RingOptions {
    RingOptions { mode: IoMode::Mmap, ..RingOptions::new(RECORDS, SIZE) }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The child: the parent runs it (with `--ignored`); opens the cold ring and prints `RSS <step> <KiB>` lines.
#[test]
#[ignore = "a child process of a_cold_2_gib_ring_opened_with_mmap_stays_under_16_mib_until_read"]
fn rss_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        panic!("rss_child is run by its parent test, which sets its environment")
    };
    let path = Path::new(&dir).join("ring.dat");
    let report = |step: &str| println!("RSS {step} {}", status_kib("VmRSS:"));
    report("start");
    let ring = RingBuffer::open(&path, ring_options()).expect("open");
    assert_eq!(ring.latest_id(), Some(RECORDS - EVERY + RUN - 1));
    let stats = ring.stats();
    assert_eq!(stats.geometry.records, RECORDS);
    report("opened");
    let reader = RingBuffer::open_read_only(&path, ReadOptions::default()).expect("open read-only");
    assert_eq!(reader.latest_id(), Some(RECORDS - EVERY + RUN - 1));
    report("reader_opened");
    let mut buf = Vec::new();
    for id in written_ids() {
        ring.read(id, &mut buf).expect("read");
        assert!(buf == payload(id, buf.len()) && buf.len() == 4000, "record {id}");
    }
    report("read_all");
}

fn evict(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: a hint on an open descriptor; it touches no memory.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}

#[test]
fn a_cold_2_gib_ring_opened_with_mmap_stays_under_16_mib_until_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, ring_options()).unwrap();
    let total: u64 = ring.files().iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(total > 2 << 30, "{total} bytes");
    for id in written_ids() {
        ring.write(id, &payload(id, 4000)).unwrap();
    }
    let files = ring.files().to_vec();
    ring.close().unwrap();
    for f in &files {
        evict(f);
    }

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["rss_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let mib = |step: &str| -> f64 {
        let at = text.find(&format!("RSS {step} ")).unwrap_or_else(|| panic!("no {step} in {text}"));
        let kib: f64 = text[at..].split_whitespace().nth(2).unwrap().parse().unwrap();
        kib / 1024.0
    };
    let (start, opened, reader, read) = (mib("start"), mib("opened"), mib("reader_opened"), mib("read_all"));
    eprintln!(
        "2 GiB ring ({} files), mmap: RSS {start:.1} MiB at start, {opened:.1} MiB after opening as writer \
         (recovery included), {reader:.1} MiB with a read-only handle too, {read:.1} MiB after reading the \
         {} records (8 MiB)",
        files.len(),
        RECORDS / EVERY * RUN
    );
    assert!(opened < LIMIT_MIB as f64 && reader < LIMIT_MIB as f64, "{text}");
    assert!(read > reader + 6.0, "reading 8 MiB of records did not show in RSS: {text}");
}
