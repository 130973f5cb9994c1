//! The default policy's promise, checked literally through the public API: W-TinyLFU "adapts to recency-
//! and frequency-heavy loads". On a load where recency wins (LRU far ahead of LFU) and on one where
//! frequency wins (LFU far ahead of LRU), and on one that switches between them, the default policy must
//! come within 1 pp of the better of the two once it has had time to adapt (the second half of each
//! phase), sharded as a user gets it, and weighted as well as unweighted.

use cachefs::{Cache, Policy};

/// A deterministic xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Recency: every key is read twice, `gap` new keys apart, then never again. LRU keeps it for its
/// second read if the cache holds `2 × gap` keys; a frequency filter sees nothing worth keeping.
fn recency(first: u64, len: usize, gap: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(len);
    let mut i = first + gap;
    while out.len() < len {
        out.push(i);
        out.push(i - gap);
        i += 1;
    }
    out.truncate(len);
    out
}

/// Frequency: half the reads go to a skewed hot set of `hot` keys (twice the capacity), half to keys
/// never seen before, all numbered from `from`. LRU lets the one-hit keys flush the hot set; LFU keeps
/// the hottest.
fn frequency(rng: &mut Rng, len: usize, hot: u64, from: u64) -> Vec<u64> {
    (0..len as u64)
        .map(|i| if i % 2 == 0 { from + (hot as f64 * rng.unit().powi(3)) as u64 } else { from + hot + i })
        .collect()
}

/// Replays `keys` (get, insert on a miss) and returns the hit ratio, in percent, of each phase's
/// second half (`phases` gives each phase's length).
fn replay(cache: &Cache<u64, u64>, keys: &[u64], phases: &[usize]) -> Vec<f64> {
    let mut at = 0;
    phases
        .iter()
        .map(|&len| {
            let phase = &keys[at..at + len];
            at += len;
            let mut hits = 0;
            for (i, &k) in phase.iter().enumerate() {
                let hit = cache.get(&k).is_some();
                if !hit {
                    cache.insert(k, k);
                }
                if i >= len / 2 && hit {
                    hits += 1;
                }
            }
            100.0 * hits as f64 / (len - len / 2) as f64
        })
        .collect()
}

fn build(policy: Policy, entries: u64, weight: u32) -> Cache<u64, u64> {
    let b = Cache::builder().max_capacity(entries * u64::from(weight)).policy(policy);
    if weight == 1 { b.build() } else { b.weigher(move |_: &u64, _: &u64| weight).build() }
}

/// Each policy's per-phase hit ratios.
fn compare(keys: &[u64], phases: &[usize], entries: u64, weight: u32) -> [Vec<f64>; 3] {
    [Policy::Hybrid, Policy::Lru, Policy::Lfu].map(|p| replay(&build(p, entries, weight), keys, phases))
}

fn check(what: &str, [hybrid, lru, lfu]: [Vec<f64>; 3]) {
    for (phase, ((h, l), f)) in hybrid.iter().zip(&lru).zip(&lfu).enumerate() {
        let best = l.max(*f);
        println!("{what}, phase {phase}: hybrid {h:.2}%, lru {l:.2}%, lfu {f:.2}%");
        assert!(*h >= best - 1.0, "{what}, phase {phase}: hybrid {h:.2}% is more than 1 pp under {best:.2}%");
    }
}

const ENTRIES: u64 = 4_096;

#[test]
fn recency_heavy_load_gets_lru_hit_ratio() {
    let keys = recency(0, 300_000, ENTRIES / 4);
    let results = compare(&keys, &[keys.len()], ENTRIES, 1);
    // The load is what it claims: LRU far ahead of LFU.
    assert!(results[1][0] > results[2][0] + 20.0, "recency load: lru {:?} lfu {:?}", results[1], results[2]);
    check("recency", results);
}

#[test]
fn frequency_heavy_load_gets_lfu_hit_ratio() {
    let keys = frequency(&mut Rng(7), 300_000, 2 * ENTRIES, 0);
    let results = compare(&keys, &[keys.len()], ENTRIES, 1);
    assert!(results[2][0] > results[1][0] + 5.0, "frequency load: lru {:?} lfu {:?}", results[1], results[2]);
    check("frequency", results);
}

#[test]
fn a_load_that_changes_character_is_followed_both_ways() {
    // Each phase on keys of its own: a hot set that comes back would favour LFU's long memory of
    // counts, which is not what this checks.
    let mut rng = Rng(11);
    let mut keys = frequency(&mut rng, 300_000, 2 * ENTRIES, 0);
    keys.extend(recency(1 << 50, 300_000, ENTRIES / 4));
    keys.extend(frequency(&mut rng, 300_000, 2 * ENTRIES, 1 << 55));
    check("frequency, recency, frequency", compare(&keys, &[300_000; 3], ENTRIES, 1));
}

#[test]
fn a_weighted_cache_adapts_too() {
    // Every entry weighs 100: the capacity holds 4,096 entries, not 409,600, and the miniature must
    // learn that from the weights to sample the right share of the keys.
    let keys = recency(0, 300_000, ENTRIES / 4);
    check("recency, weighted", compare(&keys, &[keys.len()], ENTRIES, 100));
}
