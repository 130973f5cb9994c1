//! The byte budget against real memory. README: "the byte budget counts what entries really hold
//! (allocations, buffers, slots)"; docs/cachefs.md: "Each cached entry weighs what it holds: its bytes
//! and its key as the allocator sizes them". Each scenario runs in a child process (this binary,
//! re-run with `--ignored`) that reports its RSS growth; the parent checks it against the budget.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cachefs::fs::{CacheFs, MemBackend, WriteMode};

const SCENARIO: &str = "HOSTILE_RSS_SCENARIO";
const BUDGET: u64 = 16 << 20;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[ignore = "run by the other tests of this file in a child process"]
fn hostile_rss_child() {
    let scenario = std::env::var(SCENARIO).expect("run by its parent");
    let mode = if scenario.ends_with("wb") {
        WriteMode::WriteBack { delay: Duration::from_millis(5), max_dirty_bytes: 4 << 20 }
    } else {
        WriteMode::WriteThrough
    };
    let fs = CacheFs::builder(MemBackend::new()).max_bytes(BUDGET).write_mode(mode).build();
    let before = rss_kib();
    match scenario.trim_end_matches("_wb") {
        // 4,000 writes of 100 bytes handed over as `Bytes` made from a Vec with 64 KiB of (touched)
        // capacity: the cache keeps what the caller gave it.
        "spare_capacity" => {
            for i in 0..4000 {
                let mut v = vec![7u8; 64 << 10];
                v.truncate(100);
                if i % 2 == 0 {
                    fs.write(format!("s/{i}"), v).unwrap(); // a plain Vec<u8>
                } else {
                    fs.write(format!("s/{i}"), Bytes::from(v)).unwrap();
                }
            }
        }
        // The same content with an exact allocation, for comparison.
        "exact" => {
            for i in 0..4000 {
                fs.write(format!("s/{i}"), vec![7u8; 100]).unwrap();
            }
        }
        // 1,200 files of 97 KiB (pooled buffers of 128 KiB) read twice through the budget.
        "pooled_reads" => {
            for i in 0..1200 {
                fs.backend().write(&format!("p/{i}"), &vec![3u8; 97 << 10]).unwrap();
            }
            let before = rss_kib();
            for _ in 0..2 {
                for i in 0..1200 {
                    fs.read(format!("p/{i}")).unwrap();
                }
            }
            println!("RSS_GROWTH_KIB {}", rss_kib().saturating_sub(before));
            println!("WEIGHED {}", fs.stats().data.weighted_size);
            return;
        }
        other => panic!("unknown scenario {other}"),
    }
    let _ = fs.flush();
    println!("RSS_GROWTH_KIB {}", rss_kib().saturating_sub(before));
    println!("WEIGHED {}", fs.stats().data.weighted_size);
    std::io::stdout().flush().unwrap();
}

fn child(scenario: &str) -> (u64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["hostile_rss_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{scenario}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let get = |key: &str| -> u64 {
        let i = text.find(key).unwrap_or_else(|| panic!("{scenario}: no {key} in {text}"));
        text[i + key.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    (get("RSS_GROWTH_KIB "), get("WEIGHED "))
}

/// Reads through the budget: pooled buffers must not grow memory past the budget (plus slack).
#[test]
fn holds_pooled_reads_stay_near_the_budget() {
    let (kib, weighed) = child("pooled_reads");
    eprintln!("pooled_reads: RSS +{kib} KiB, weighed {weighed} B, budget {BUDGET} B");
    assert!(kib * 1024 <= 3 * BUDGET + (16 << 20), "pooled reads grew RSS by {kib} KiB with a {BUDGET}-byte budget");
}

/// Writes whose `Bytes` keep spare capacity: the cached entry holds 64 KiB but is weighed as ~100 B,
/// so 4,000 of them (256 MiB) all fit a 16 MiB budget.
#[test]
fn written_bytes_spare_capacity_is_not_held() {
    let (exact_kib, _) = child("exact");
    let (kib, weighed) = child("spare_capacity");
    eprintln!("exact: RSS +{exact_kib} KiB; spare capacity: RSS +{kib} KiB, weighed {weighed} B, budget {BUDGET} B");
    assert!(
        kib * 1024 <= 3 * BUDGET + (16 << 20),
        "4,000 cached writes grew RSS by {} MiB under a {} MiB budget (weighed {} KiB); with exact allocations: +{} MiB",
        kib / 1024,
        BUDGET >> 20,
        weighed / 1024,
        exact_kib / 1024
    );
}

/// The same in write-back mode (the dirty copy is the caller's `Bytes` too).
#[test]
fn written_bytes_spare_capacity_is_not_held_write_back() {
    let (kib, weighed) = child("spare_capacity_wb");
    eprintln!("spare capacity, write-back: RSS +{kib} KiB, weighed {weighed} B, budget {BUDGET} B");
    assert!(
        kib * 1024 <= 3 * BUDGET + (16 << 20),
        "write-back: 4,000 cached writes grew RSS by {} MiB under a {} MiB budget (weighed {} KiB)",
        kib / 1024,
        BUDGET >> 20,
        weighed / 1024
    );
}
