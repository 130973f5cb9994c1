//! Writing and then reading a 1 GiB file through `CacheFs` keeps the process's peak RSS under 64 MiB:
//! large files are streamed to the backend when written and read in cached chunks, never held whole.
//! Alone in its test binary so that nothing else moves the process's high-water mark.

use std::io::{Read, Write};

use cachefs::fs::{CacheFs, OsBackend};

const GIB: usize = 1 << 30;
const BLOCK: usize = 1 << 20;

/// Block `i` of the file: every byte is `i % 251`, then the block index in its first 8 bytes.
fn block(i: usize, buf: &mut [u8]) {
    buf.fill((i % 251) as u8);
    buf[..8].copy_from_slice(&(i as u64).to_le_bytes());
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn writing_and_reading_a_1_gib_file_keeps_peak_rss_under_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let fs = CacheFs::builder(OsBackend::new(dir.path()).unwrap()).max_bytes(32 << 20).build();
    // Reset the high-water mark so that only the write and read below count (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmHWM:");
    {
        let mut writer = fs.create("weights.bin").unwrap();
        let mut buf = vec![0u8; BLOCK];
        for i in 0..GIB / BLOCK {
            block(i, &mut buf);
            writer.write_all(&buf).unwrap();
        }
        writer.close().unwrap();
    }
    let after_write_mib = status_kib("VmHWM:") / 1024;
    assert_eq!(std::fs::metadata(dir.path().join("weights.bin")).unwrap().len(), GIB as u64);

    let mut reader = fs.open("weights.bin").unwrap();
    assert_eq!(reader.len(), GIB as u64);
    let (mut got, mut want) = (vec![0u8; 256 << 10], vec![0u8; BLOCK]);
    let mut at = 0usize;
    loop {
        let n = reader.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        let mut done = 0;
        while done < n {
            let i = (at + done) / BLOCK;
            block(i, &mut want);
            let off = (at + done) % BLOCK;
            let take = (n - done).min(BLOCK - off);
            assert!(got[done..done + take] == want[off..off + take], "mismatch at byte {}", at + done);
            done += take;
        }
        at += n;
    }
    assert_eq!(at, GIB);
    let peak_mib = status_kib("VmHWM:") / 1024;
    let stats = fs.stats();
    eprintln!(
        "1 GiB written then read: peak RSS {after_write_mib} MiB after the write, {peak_mib} MiB after the read (was {} MiB before), cached {} MiB, {} chunk misses",
        before / 1024,
        stats.data.weighted_size >> 20,
        stats.read_misses
    );
    assert_eq!(stats.bytes_from_backend, GIB as u64);
    assert!(stats.data.weighted_size <= 32 << 20);
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");
}
