//! Model-based property tests: random operation sequences run against the cache and a small reference
//! model, with every shard's invariants validated after each step.
//!
//! - LRU on one shard must equal a reference LRU exactly (contents after every step, value of every read).
//! - Every policy, with TTLs and a manual clock: the weighted size never exceeds capacity, a read never
//!   returns an expired or stale value, and the statistics add up to the operations performed.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::check_stats;
use crate::{Cache, ManualClock, Policy};

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    InsertTtl(u8, u32, u16),
    Get(u8),
    Remove(u8),
    Invalidate(u8),
    Advance(u16),
}

fn op(keys: u8, with_time: bool) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    let timed = if with_time { 1 } else { 0 };
    prop_oneof![
        4 => (k.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        timed => (k.clone(), any::<u32>(), 1u16..2000).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        5 => k.clone().prop_map(Op::Get),
        1 => k.clone().prop_map(Op::Remove),
        1 => k.prop_map(Op::Invalidate),
        timed => (1u16..1500).prop_map(Op::Advance),
    ]
}

/// The reference LRU: a vector ordered from least to most recently used.
#[derive(Default)]
struct ModelLru {
    order: Vec<(u8, u32, u64)>,
    capacity: u64,
}

impl ModelLru {
    fn weight(&self) -> u64 {
        self.order.iter().map(|e| e.2).sum()
    }
    fn take(&mut self, k: u8) -> Option<(u8, u32, u64)> {
        let pos = self.order.iter().position(|e| e.0 == k)?;
        Some(self.order.remove(pos))
    }
    fn insert(&mut self, k: u8, v: u32, w: u64) {
        self.take(k);
        if w > self.capacity {
            return;
        }
        self.order.push((k, v, w));
        while self.weight() > self.capacity {
            self.order.remove(0);
        }
    }
    fn get(&mut self, k: u8) -> Option<u32> {
        let e = self.take(k)?;
        self.order.push(e);
        Some(e.1)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lru_on_one_shard_matches_the_reference(
        capacity in 1u64..12,
        ops in prop::collection::vec(op(16, false), 1..300),
    ) {
        let cache: Cache<u8, u32> = Cache::builder()
            .max_capacity(capacity)
            .shards(1)
            .policy(Policy::Lru)
            .weigher(|_, v: &u32| v % 3 + 1)
            .build();
        let mut model = ModelLru { capacity, ..ModelLru::default() };
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    cache.insert(k, v);
                    model.insert(k, v, u64::from(v % 3 + 1));
                }
                Op::Get(k) => prop_assert_eq!(cache.get(&k), model.get(k)),
                Op::Remove(k) => prop_assert_eq!(cache.remove(&k), model.take(k).map(|e| e.1)),
                Op::Invalidate(k) => prop_assert_eq!(cache.invalidate(&k), model.take(k).is_some()),
                Op::InsertTtl(..) | Op::Advance(_) => unreachable!(),
            }
            cache.validate();
            let mut got: Vec<(u8, u32)> = cache.iter().collect();
            got.sort();
            let mut want: Vec<(u8, u32)> = model.order.iter().map(|e| (e.0, e.1)).collect();
            want.sort();
            prop_assert_eq!(got, want);
            prop_assert_eq!(cache.weighted_size(), model.weight());
        }
        check_stats(&cache);
    }

    #[test]
    fn every_policy_keeps_its_invariants(
        policy in prop_oneof![Just(Policy::Lru), Just(Policy::Lfu), Just(Policy::Ttl), Just(Policy::Hybrid)],
        capacity in 0u64..40,
        shards in prop_oneof![Just(1usize), Just(2), Just(4)],
        ttl in prop::option::of(1u16..3000),
        tti in prop::option::of(1u16..3000),
        ops in prop::collection::vec(op(24, true), 1..300),
    ) {
        let clock = ManualClock::new();
        let mut b = Cache::builder()
            .max_capacity(capacity)
            .shards(shards)
            .policy(policy)
            .weigher(|_, v: &u32| v % 4)
            .clock(clock.clone());
        if let Some(ttl) = ttl {
            b = b.time_to_live(Duration::from_millis(ttl.into()));
        }
        if let Some(tti) = tti {
            b = b.time_to_idle(Duration::from_millis(tti.into()));
        }
        let cache: Cache<u8, u32> = b.build();
        let ms = |n: u16| u64::from(n) * 1_000_000;
        // What the model knows for sure: the last value written to each key, the deadline of that
        // write (TTL) and when it was last read or written (idle); absent keys were removed.
        let mut last: HashMap<u8, (u32, u64, u64)> = HashMap::new();
        let (mut now, mut gets, mut writes) = (0u64, 0u64, 0u64);
        for op in ops {
            match op {
                Op::Insert(k, v) => {
                    cache.insert(k, v);
                    writes += 1;
                    last.insert(k, (v, ttl.map_or(u64::MAX, |t| now + ms(t)), now));
                }
                Op::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_millis(t.into()));
                    writes += 1;
                    last.insert(k, (v, now + ms(t), now));
                }
                Op::Get(k) => {
                    gets += 1;
                    let got = cache.get(&k);
                    match (got, last.get_mut(&k)) {
                        (Some(v), Some((want, deadline, accessed))) => {
                            prop_assert_eq!(v, *want, "stale value");
                            let idle = tti.map_or(u64::MAX, |t| *accessed + ms(t));
                            prop_assert!(now < (*deadline).min(idle), "expired entry returned");
                            *accessed = now;
                        }
                        (Some(v), None) => prop_assert!(false, "removed key returned {}", v),
                        (None, _) => {}
                    }
                }
                Op::Remove(k) => {
                    cache.remove(&k);
                    last.remove(&k);
                }
                Op::Invalidate(k) => {
                    cache.invalidate(&k);
                    last.remove(&k);
                }
                Op::Advance(t) => {
                    clock.advance(Duration::from_millis(t.into()));
                    now += ms(t);
                }
            }
            cache.validate();
            prop_assert!(cache.weighted_size() <= capacity);
            let s = cache.stats();
            prop_assert_eq!(s.hits + s.misses, gets);
            prop_assert_eq!(s.inserts + s.updates + s.rejections, writes);
            check_stats(&cache);
        }
    }
}
