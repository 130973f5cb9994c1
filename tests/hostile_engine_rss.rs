//! Hostile test of `cachefs::Cache` memory release, measured as the process's resident set. Alone in its
//! binary so that no other test moves the RSS. Written from the public documentation only.

mod hostile_engine_util;

use std::time::Duration;

use cachefs::Cache;
use hostile_engine_util::rss_bytes;

const MIB: u64 = 1 << 20;

fn filled(n: u64) -> Cache<u64, Vec<u8>> {
    let cache: Cache<u64, Vec<u8>> = Cache::builder().max_capacity(1_000).build();
    for i in 0..n {
        cache.insert(i, vec![(i as u8) | 1; 4 * MIB as usize]);
    }
    cache
}

/// Docs (`Cache`, Guarantees): "A departing value is dropped once no reader can still be reading it
/// ...: soon, on whichever thread next lets the epoch collect (any thread using a cache), or when the
/// cache itself is dropped"; `run_pending_tasks`: "hands departed entries to the epoch in every shard
/// now"; `invalidate_all`: "Drops every entry."
///
/// 256 MiB of values are cleared with `invalidate_all`, then `run_pending_tasks`, then 1,000 reads and a
/// 100 ms pause: the resident set must have come down (allowed: 32 MiB above where it started). The same
/// values released by dropping the cache are the control: RSS does come down then.
// DEFECT: RSS stays 256 MiB up after invalidate_all + run_pending_tasks + reads; dropping the cache
// releases it.
#[test]
fn clearing_a_cache_of_large_values_releases_the_memory() {
    let base = rss_bytes();
    let cache = filled(64);
    let full = rss_bytes();
    assert!(full - base >= 200 * MIB, "the values were not resident: {} MiB", (full - base) / MIB);
    cache.invalidate_all();
    cache.run_pending_tasks();
    for i in 0..1_000u64 {
        let _ = cache.get(&(i % 64));
    }
    std::thread::sleep(Duration::from_millis(100));
    let cleared = rss_bytes();
    let len = cache.len();
    drop(cache);
    let dropped = rss_bytes();
    assert_eq!(len, 0);
    assert!(
        dropped.saturating_sub(base) <= 32 * MIB,
        "control failed: RSS still {} MiB up after dropping the cache",
        dropped.saturating_sub(base) / MIB
    );
    assert!(
        cleared.saturating_sub(base) <= 32 * MIB,
        "after invalidate_all + run_pending_tasks + 1,000 reads: RSS {} MiB above the start (full: {} MiB, \
         after dropping the cache: {} MiB)",
        cleared.saturating_sub(base) / MIB,
        (full - base) / MIB,
        dropped.saturating_sub(base) / MIB
    );
}
