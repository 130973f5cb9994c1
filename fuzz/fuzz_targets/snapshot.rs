//! Warm-restart snapshot streams: any bytes load into a typed error (nothing inserted) or a cache whose
//! every entry is one the saved cache held with that value. Half the inputs are read as they are; the
//! other half patch a valid snapshot and recompute every frame's CRC, so that the entry decoder, the
//! header and the frame bookkeeping meet the damage rather than the checksum.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cachefs::{Cache, Policy};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(Vec<u8>),
    Patched { policy: u8, capacity: u8, patches: Vec<(u16, u8)>, cut: Option<u16>, fix_checksums: bool },
}

/// A snapshot of each policy's cache of 200 entries (some with a time to live), and what they held.
fn saved() -> &'static [(Vec<u8>, HashMap<u32, String>); 4] {
    static SAVED: OnceLock<[(Vec<u8>, HashMap<u32, String>); 4]> = OnceLock::new();
    SAVED.get_or_init(|| {
        [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid].map(|policy| {
            let c: Cache<u32, String> = Cache::builder().max_capacity(300).policy(policy).shards(2).build();
            for k in 0..200u32 {
                if k % 3 == 0 {
                    c.insert_with_ttl(k, format!("v{k}"), std::time::Duration::from_secs(3_600));
                } else {
                    c.insert(k, "x".repeat(k as usize % 20));
                }
                if k % 7 == 0 {
                    c.get(&(k / 2));
                }
            }
            let mut bytes = Vec::new();
            c.save_snapshot(&mut bytes).expect("a snapshot into memory");
            (bytes, c.iter().collect())
        })
    })
}

/// Recomputes each frame's CRC (frames: u32 length, u32 CRC, payload; after 12 bytes of magic and
/// version), up to the first length that runs past the end.
fn fix_checksums(bytes: &mut [u8]) {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            return;
        }
        let crc = crc32fast::hash(&bytes[at + 8..at + 8 + len]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at += 8 + len;
    }
}

fuzz_target!(|input: Input| {
    let (bytes, held, capacity, policy) = match input {
        Input::Raw(bytes) => (bytes, None, 300, Policy::Hybrid),
        Input::Patched { policy, capacity, patches, cut, fix_checksums: fix } => {
            let (good, held) = &saved()[usize::from(policy % 4)];
            let mut bytes = good.clone();
            for (at, byte) in patches.iter().take(8) {
                let at = usize::from(*at) % bytes.len();
                bytes[at] = *byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(usize::from(cut) % (bytes.len() + 1));
            }
            // With checksums recomputed, a patch may forge a value: only the unchecked case must match.
            let check = if fix {
                fix_checksums(&mut bytes);
                None
            } else {
                Some(held)
            };
            let policy = [Policy::Lru, Policy::Lfu, Policy::Ttl, Policy::Hybrid][usize::from(policy % 4)];
            (bytes, check, u64::from(capacity) + 1, policy)
        }
    };
    let cache: Cache<u32, String> = Cache::builder().max_capacity(capacity).policy(policy).shards(2).build();
    match cache.load_snapshot(bytes.as_slice()) {
        Err(e) => {
            assert!(cache.is_empty(), "refused ({e}) but inserted {}", cache.len());
            assert!(!e.to_string().is_empty());
        }
        Ok(report) => {
            assert!(report.loaded <= report.saved);
            assert!(cache.len() <= report.loaded, "{} held, {report:?}", cache.len());
            assert!(cache.weighted_size() <= capacity);
            if let Some(held) = held {
                for (k, v) in cache.iter() {
                    assert_eq!(held.get(&k), Some(&v), "{k} loaded with a value that was never saved");
                }
            }
        }
    }
    cache.validate();
});
