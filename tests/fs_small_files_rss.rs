//! Defect 8 (issue 11): small files were filled into pooled buffers of at least 4 KiB but weighed by
//! their length, so the byte budget undercounted what the cache held by up to 40×. Reading 200,000 files
//! of 100 bytes through a 16 MiB budget must grow the process's RSS by at most 1.25 × the budget + 16 MiB.
//! Alone in its test binary so that nothing else moves the process's RSS.

use cachefs::fs::{Backend, CacheFs, MemBackend};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn small_files_stay_within_the_byte_budget() {
    const FILES: usize = 200_000;
    const BUDGET: u64 = 16 << 20;
    let store = std::sync::Arc::new(MemBackend::new());
    for i in 0..FILES {
        store.write(&format!("d{}/f{i}", i % 100), &[(i % 251) as u8; 100]).unwrap();
    }
    let fs = CacheFs::builder(std::sync::Arc::clone(&store)).max_bytes(BUDGET).build();
    let before = rss_kib();
    for round in 0..2 {
        for i in 0..FILES {
            let data = fs.read(format!("d{}/f{i}", i % 100)).unwrap();
            assert_eq!(data.len(), 100, "round {round}");
        }
    }
    let grown_mib = (rss_kib().saturating_sub(before)) as f64 / 1024.0;
    let stats = fs.stats();
    let limit_mib = 1.25 * (BUDGET >> 20) as f64 + 16.0;
    eprintln!(
        "{FILES} files of 100 B read twice through a {} MiB budget: RSS grew {grown_mib:.1} MiB (limit {limit_mib}), cache reports {:.1} MiB in {} entries",
        BUDGET >> 20,
        stats.data.weighted_size as f64 / 1048576.0,
        stats.data.entries
    );
    assert!(stats.data.weighted_size <= BUDGET);
    assert!(grown_mib <= limit_mib, "RSS grew {grown_mib:.1} MiB, over {limit_mib} MiB");
}
