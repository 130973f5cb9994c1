//! Warm restart: `Cache::save_snapshot` / `Cache::load_snapshot`, round trips for every policy, time to
//! live carried over, capacity, the policy's memory of what is valuable, and every kind of bad input.
#![cfg(feature = "snapshot")]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::Duration;

use cachefs::{Cache, ManualClock, Policy, SnapshotError};

const POLICIES: [Policy; 4] = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid];

fn cache(policy: Policy, capacity: u64) -> Cache<u64, String> {
    Cache::builder().max_capacity(capacity).policy(policy).build()
}

fn save(c: &Cache<u64, String>) -> Vec<u8> {
    let mut bytes = Vec::new();
    let saved = c.save_snapshot(&mut bytes).expect("save");
    assert_eq!(saved.bytes as usize, bytes.len());
    bytes
}

fn contents(c: &Cache<u64, String>) -> HashMap<u64, String> {
    c.iter().collect()
}

#[test]
fn every_policy_round_trips_its_entries() {
    for policy in POLICIES {
        let old = cache(policy, 1_000);
        for k in 0..500 {
            old.insert(k, format!("value {k}"));
        }
        let bytes = save(&old);
        let new = cache(policy, 1_000);
        let report = new.load_snapshot(bytes.as_slice()).expect("load");
        assert_eq!(
            (report.saved, report.loaded, report.expired, report.beyond_capacity),
            (500, 500, 0, 0),
            "{policy:?}"
        );
        assert_eq!(contents(&new), contents(&old), "{policy:?}");
    }
}

#[test]
fn an_empty_cache_round_trips() {
    let bytes = save(&cache(Policy::Hybrid, 10));
    let new = cache(Policy::Hybrid, 10);
    assert_eq!(new.load_snapshot(bytes.as_slice()).unwrap().loaded, 0);
    assert!(new.is_empty());
}

#[test]
fn entries_keep_the_time_to_live_they_had_left() {
    let clock = ManualClock::new();
    let old: Cache<u64, String> = Cache::builder().max_capacity(100).clock(clock.clone()).build();
    old.insert_with_ttl(1, "short".into(), Duration::from_secs(100));
    old.insert(2, "forever".into());
    clock.advance(Duration::from_secs(40));
    let bytes = save(&old);

    let clock = ManualClock::new();
    let new: Cache<u64, String> = Cache::builder().max_capacity(100).clock(clock.clone()).build();
    new.load_snapshot(bytes.as_slice()).unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(new.get(&1).as_deref(), Some("short"), "60 s were left at the save");
    clock.advance(Duration::from_secs(2));
    assert_eq!(new.get(&1), None, "and they are up");
    assert_eq!(new.get(&2).as_deref(), Some("forever"));
}

#[test]
fn entries_that_expired_during_the_downtime_are_skipped() {
    let old = cache(Policy::Lru, 100);
    old.insert_with_ttl(1, "brief".into(), Duration::from_millis(30));
    old.insert_with_ttl(2, "long".into(), Duration::from_secs(3600));
    let bytes = save(&old);
    std::thread::sleep(Duration::from_millis(80));
    let new = cache(Policy::Lru, 100);
    let report = new.load_snapshot(bytes.as_slice()).unwrap();
    assert_eq!((report.loaded, report.expired), (1, 1));
    assert_eq!(new.get(&1), None);
    assert!(new.contains_key(&2));
}

#[test]
fn entries_saved_without_a_deadline_get_the_new_caches_time_to_live() {
    let old = cache(Policy::Lru, 100);
    old.insert(1, "a".into());
    let bytes = save(&old);
    let clock = ManualClock::new();
    let new: Cache<u64, String> =
        Cache::builder().max_capacity(100).time_to_live(Duration::from_secs(10)).clock(clock.clone()).build();
    new.load_snapshot(bytes.as_slice()).unwrap();
    assert!(new.contains_key(&1));
    clock.advance(Duration::from_secs(11));
    assert!(!new.contains_key(&1));
}

/// A smaller cache keeps the most valuable entries of a larger one, and they end most recently used.
#[test]
fn a_smaller_cache_keeps_the_most_valuable() {
    // LRU: the 100 most recently used of 1,000.
    let old = Cache::builder().max_capacity(2_000).shards(4).policy(Policy::Lru).build();
    for k in 0..1_000u64 {
        old.insert(k, k.to_string());
    }
    let bytes = save(&old);
    let new: Cache<u64, String> = Cache::builder().max_capacity(100).shards(4).policy(Policy::Lru).build();
    let report = new.load_snapshot(bytes.as_slice()).unwrap();
    assert_eq!(report.loaded + report.beyond_capacity, 1_000);
    assert!(report.loaded >= 95, "loaded {}", report.loaded);
    let kept: Vec<u64> = new.iter().map(|(k, _)| k).collect();
    let low = kept.iter().filter(|&&k| k < 850).count();
    assert!(low <= 5, "kept {low} keys outside the 150 most recent: {kept:?}");

    // LFU: the frequently read keys, whatever their insertion order.
    let old = Cache::builder().max_capacity(1_000).shards(1).policy(Policy::Lfu).build();
    for k in 0..1_000u64 {
        old.insert(k, k.to_string());
    }
    for _ in 0..5 {
        for k in (0..1_000u64).step_by(20) {
            old.get(&k);
        }
    }
    old.insert(5_000, String::new()); // a write replays the recorded reads
    let bytes = save(&old);
    let new: Cache<u64, String> = Cache::builder().max_capacity(50).shards(1).policy(Policy::Lfu).build();
    new.load_snapshot(bytes.as_slice()).unwrap();
    let hot = (0..1_000u64).step_by(20).filter(|k| new.contains_key(k)).count();
    assert_eq!(hot, 50, "every frequently read key");
}

#[test]
fn the_most_valuable_end_most_recently_used() {
    let old = Cache::builder().max_capacity(10).shards(1).policy(Policy::Lru).build();
    for k in 0..10u64 {
        old.insert(k, k.to_string());
    }
    old.get(&0); // now the most recent
    let bytes = save(&old);
    let new: Cache<u64, String> = Cache::builder().max_capacity(10).shards(1).policy(Policy::Lru).build();
    new.load_snapshot(bytes.as_slice()).unwrap();
    assert_eq!(new.hot_keys(3), vec![0, 9, 8]);
    new.insert(100, String::new());
    assert!(!new.contains_key(&1), "the least recent goes first, as it would have in the old cache");
    assert!(new.contains_key(&0));
}

/// W-TinyLFU's state comes back: a restored hot set resists a scan of new keys as well as the cache that
/// never restarted does.
#[test]
fn restored_frequencies_keep_the_hot_set_through_a_scan() {
    let build = || -> Cache<u64, String> { Cache::builder().max_capacity(200).shards(1).build() };
    let old = build();
    for _ in 0..8 {
        for k in 0..150u64 {
            if old.get(&k).is_none() {
                old.insert(k, k.to_string());
            }
        }
    }
    let bytes = save(&old);
    let new = build();
    new.load_snapshot(bytes.as_slice()).unwrap();
    for c in [&old, &new] {
        for k in 10_000..12_000u64 {
            c.insert(k, String::new());
        }
    }
    let kept_old = (0..150u64).filter(|k| old.contains_key(k)).count();
    let kept = (0..150u64).filter(|k| new.contains_key(k)).count();
    // The window the two caches' miniatures choose during the scan differs (the restored one has not
    // seen the hot set's history), so the counts differ by up to about 20.
    assert!(kept * 10 >= kept_old * 8, "the hot set survives the scan: {kept} of 150 ({kept_old} never restarted)");
}

#[test]
fn loading_into_a_cache_that_holds_entries_respects_its_room() {
    let old = cache(Policy::Lru, 100);
    for k in 0..100 {
        old.insert(k, "x".into());
    }
    let bytes = save(&old);
    let new: Cache<u64, String> = Cache::builder().max_capacity(100).shards(1).policy(Policy::Lru).build();
    for k in 1_000..1_060 {
        new.insert(k, "mine".into());
    }
    let report = new.load_snapshot(bytes.as_slice()).unwrap();
    assert_eq!((report.loaded, report.beyond_capacity), (40, 60));
    assert_eq!((1_000..1_060).filter(|k| new.contains_key(k)).count(), 60, "nothing of its own displaced");
}

#[test]
fn weights_count_towards_capacity() {
    let old: Cache<u64, String> = Cache::builder().max_capacity(10_000).weigher(|_, v: &String| v.len() as u32).build();
    for k in 0..100 {
        old.insert(k, "x".repeat(100));
    }
    let mut bytes = Vec::new();
    old.save_snapshot(&mut bytes).unwrap();
    let new: Cache<u64, String> =
        Cache::builder().max_capacity(2_550).shards(1).weigher(|_, v: &String| v.len() as u32).build();
    let report = new.load_snapshot(bytes.as_slice()).unwrap();
    assert_eq!(report.loaded, 25);
    assert!(new.weighted_size() <= 2_550);
}

// ---- bad input ---------------------------------------------------------------------------------------

fn sample() -> (Cache<u64, String>, Vec<u8>) {
    let old = cache(Policy::Hybrid, 10_000);
    for k in 0..3_000 {
        old.insert(k, format!("{k:>64}"));
    }
    let bytes = save(&old);
    (old, bytes)
}

#[test]
fn a_truncated_snapshot_is_refused_whole() {
    let (_, bytes) = sample();
    assert!(bytes.len() > 3 * 64 * 1024 / 4, "several frames");
    let mut cuts: Vec<usize> = (0..64).collect();
    cuts.extend((64..bytes.len()).step_by(997));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        let new = cache(Policy::Hybrid, 10_000);
        let err = new.load_snapshot(&bytes[..cut]).expect_err("truncated");
        assert!(matches!(err, SnapshotError::Truncated { .. } | SnapshotError::NotASnapshot), "cut at {cut}: {err}");
        assert!(new.is_empty(), "nothing inserted from a truncated snapshot (cut at {cut})");
    }
}

#[test]
fn a_flipped_bit_anywhere_is_refused_whole() {
    let (_, bytes) = sample();
    for at in (0..bytes.len()).step_by(211) {
        for bit in [0, 7] {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << bit;
            let new = cache(Policy::Hybrid, 10_000);
            let err = new.load_snapshot(bad.as_slice()).expect_err("corrupt");
            assert!(!err.to_string().is_empty());
            assert!(new.is_empty(), "byte {at} bit {bit}: {err}");
        }
    }
}

#[test]
fn wrong_magic_version_and_types_are_named() {
    let (_, bytes) = sample();
    let new = cache(Policy::Lru, 10);
    assert!(matches!(new.load_snapshot(&b"hello world, not a snapshot"[..]), Err(SnapshotError::NotASnapshot)));
    assert!(matches!(new.load_snapshot(&b""[..]), Err(SnapshotError::Truncated { offset: 0 })));
    let mut v2 = bytes.clone();
    v2[8..12].copy_from_slice(&2u32.to_le_bytes());
    let err = new.load_snapshot(v2.as_slice()).unwrap_err();
    assert!(matches!(err, SnapshotError::UnsupportedVersion { found: 2, supported: 1 }), "{err}");
    assert!(err.to_string().contains("version 2"), "{err}");

    // A snapshot of a cache of other types, even ones whose entries would decode (u64 as i64).
    let other: Cache<String, Vec<u64>> = Cache::new(100);
    other.insert("a key that is not a u64".into(), vec![1, 2, 3]);
    let mut bytes = Vec::new();
    other.save_snapshot(&mut bytes).unwrap();
    let err = new.load_snapshot(bytes.as_slice()).unwrap_err();
    assert!(matches!(err, SnapshotError::WrongTypes { .. }), "{err}");
    assert!(err.to_string().contains("alloc::vec::Vec<u64>"), "{err}");
    assert!(new.is_empty());
    let unsigned: Cache<u64, u64> = Cache::new(100);
    unsigned.insert(1, 2);
    let mut bytes = Vec::new();
    unsigned.save_snapshot(&mut bytes).unwrap();
    let signed: Cache<i64, i64> = Cache::new(100);
    assert!(matches!(signed.load_snapshot(bytes.as_slice()), Err(SnapshotError::WrongTypes { .. })));
    assert!(signed.is_empty());
}

struct Failing {
    after: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.after < buf.len() {
            return Err(io::Error::other("disk full"));
        }
        self.after -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("connection reset"))
    }
}

#[test]
fn io_failures_are_reported() {
    let (old, bytes) = sample();
    for after in [0, 5, 20, 70_000, bytes.len() - 1] {
        assert!(after < bytes.len());
        let err = old.save_snapshot(Failing { after }).unwrap_err();
        assert!(matches!(&err, SnapshotError::Io(e) if e.to_string() == "disk full"), "{err}");
    }
    let new = cache(Policy::Lru, 10);
    assert!(matches!(new.load_snapshot(Failing { after: 0 }), Err(SnapshotError::Io(_))));
    // A reader that fails after the header: the chained reader fails mid-stream.
    let err = new.load_snapshot(bytes[..30].chain(Failing { after: 0 })).unwrap_err();
    assert!(matches!(err, SnapshotError::Io(_)), "{err}");
    assert!(new.is_empty());
}

#[derive(Clone, Debug)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses"))
    }
}

#[test]
fn a_value_that_fails_to_serialise_is_reported() {
    let c: Cache<u64, Unencodable> = Cache::new(10);
    c.insert(1, Unencodable);
    let mut out = Vec::new();
    let err = c.save_snapshot(&mut out).unwrap_err();
    assert!(matches!(&err, SnapshotError::Encode(m) if m.contains("refuses") || !m.is_empty()), "{err}");
    assert!(out.is_empty(), "nothing written: encoding comes before writing");
}

#[test]
fn a_save_racing_writers_gives_a_loadable_snapshot() {
    let old: Cache<u64, String> = Cache::builder().max_capacity(2_000).build();
    let values: HashMap<u64, String> = (0..4_000u64).map(|k| (k, format!("v{k}"))).collect();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (old, values) = (&old, &values);
            s.spawn(move || {
                for i in 0..20_000u64 {
                    let k = (i * 7 + t) % 4_000;
                    if i % 5 == 0 {
                        old.invalidate(&k);
                    } else {
                        old.insert(k, values[&k].clone());
                    }
                }
            });
        }
        for _ in 0..10 {
            let mut bytes = Vec::new();
            old.save_snapshot(&mut bytes).unwrap();
            let new: Cache<u64, String> = Cache::builder().max_capacity(2_000).build();
            new.load_snapshot(bytes.as_slice()).unwrap();
            for (k, v) in new.iter() {
                assert_eq!(v, values[&k], "never a wrong value");
            }
        }
    });
}

// ---- fuzzed bytes ------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Rewrites every frame's CRC to match its (mutated) payload, so that the decoder itself meets the
/// damage. Stops at the first frame whose length runs past the end.
fn fix_checksums(bytes: &mut [u8]) {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            return;
        }
        let crc = crc32fast::hash(&bytes[at + 8..at + 8 + len]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at += 8 + len;
    }
}

fn mutate(rng: &mut Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 => {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(out.len());
                out[at] = rng.next() as u8;
            }
            2 => out.truncate(rng.below(out.len())),
            3 => {
                let at = rng.below(out.len());
                let n = rng.below(16);
                out.splice(at..at, (0..n).map(|_| rng.next() as u8));
            }
            4 => {
                let at = rng.below(out.len());
                let end = (at + rng.below(32)).min(out.len());
                out.drain(at..end);
            }
            _ => {
                // A length or count field set to an extreme.
                let at = rng.below(out.len().saturating_sub(4));
                let v = [0u32, 1, u32::MAX, 0x7fff_ffff][rng.below(4)];
                if at + 4 <= out.len() {
                    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        if out.is_empty() {
            break;
        }
    }
    out
}

/// 1,000 mutated snapshots (half with their checksums fixed up so the entry decoder meets the damage):
/// no panic, and without fixed checksums never an inserted entry that was not saved.
#[test]
fn fuzzed_snapshots_never_panic_or_serve_what_was_not_saved() {
    let old: Cache<u64, String> = Cache::builder().max_capacity(1_000).build();
    for k in 0..300 {
        old.insert_with_ttl(k, format!("value {k}"), Duration::from_secs(3_600 + k));
    }
    for k in 300..400 {
        old.insert(k, "x".repeat(k as usize % 50));
    }
    let originals = contents(&old);
    let mut bytes = Vec::new();
    old.save_snapshot(&mut bytes).unwrap();
    let mut rng = Rng(0x5eed_cafe);
    let (mut refused, mut accepted) = (0, 0);
    for round in 0..1_000 {
        let mut bad = mutate(&mut rng, &bytes);
        let fixed = round % 2 == 1;
        if fixed {
            fix_checksums(&mut bad);
        }
        let new: Cache<u64, String> = Cache::builder().max_capacity(1_000).build();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| new.load_snapshot(bad.as_slice())));
        let result = outcome.unwrap_or_else(|_| panic!("round {round} panicked"));
        match result {
            Err(_) => {
                refused += 1;
                assert!(new.is_empty(), "round {round}: refused but inserted");
            }
            Ok(_) => {
                accepted += 1;
                if !fixed {
                    for (k, v) in new.iter() {
                        assert_eq!(Some(&v), originals.get(&k), "round {round}: a value that was never saved");
                    }
                }
            }
        }
    }
    assert!(refused > 900, "refused {refused}, accepted {accepted}");
}
