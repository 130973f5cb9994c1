//! Belady's optimum (MIN): on a miss with the cache full, evict the key whose next use is farthest in the
//! future, or do not admit the new key at all if it is the one used farthest ahead. With unit sizes this
//! maximises hits (Belady 1966; Mattson et al. 1970), so no online policy can beat it, including ones
//! that may refuse admission as W-TinyLFU does. O(n log n): a max-heap of next-use positions with lazy
//! deletion.

use std::collections::{BinaryHeap, HashMap};

/// For each access, the position of the next access to the same key (`usize::MAX` for never).
pub fn next_uses(keys: &[u64]) -> Vec<usize> {
    let mut next = vec![usize::MAX; keys.len()];
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(keys.len() / 4);
    for (i, &k) in keys.iter().enumerate().rev() {
        if let Some(j) = seen.insert(k, i) {
            next[i] = j;
        }
    }
    next
}

/// Hits of the optimal cache of `capacity` entries on `keys`, given `next_uses(keys)`.
pub fn hits(keys: &[u64], next: &[usize], capacity: u64, mut progress: impl FnMut(u64)) -> u64 {
    let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
    // key -> position of its next use, for resident keys.
    let mut resident: HashMap<u64, usize> = HashMap::with_capacity(capacity.min(keys.len()));
    // (next use, key); an entry is stale when `resident` says otherwise.
    let mut heap: BinaryHeap<(usize, u64)> = BinaryHeap::with_capacity(capacity.min(keys.len()));
    let mut hits = 0;
    for (i, (&k, &nu)) in keys.iter().zip(next).enumerate() {
        if i % 65_536 == 65_535 {
            progress(65_536);
        }
        if let Some(slot) = resident.get_mut(&k) {
            hits += 1;
            *slot = nu;
            heap.push((nu, k));
            continue;
        }
        if resident.len() < capacity {
            if nu != usize::MAX {
                resident.insert(k, nu);
                heap.push((nu, k));
            }
            continue;
        }
        // Drop stale heap entries until the top is a resident key at its current next use.
        while let Some(&(top_nu, top_k)) = heap.peek() {
            if resident.get(&top_k) == Some(&top_nu) {
                break;
            }
            heap.pop();
        }
        if let Some(&(far, victim)) = heap.peek()
            && far > nu
        {
            heap.pop();
            resident.remove(&victim);
            resident.insert(k, nu);
            heap.push((nu, k));
        }
        // Otherwise the new key is used farthest ahead (or never): it is not admitted.
        if heap.len() > 4 * capacity.max(16) {
            heap.retain(|(nu, k)| resident.get(k) == Some(nu));
        }
    }
    progress(keys.len() as u64 % 65_536);
    hits
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// The best achievable hits by exhaustive search over every eviction (and bypass) choice.
    fn brute_force(keys: &[u64], capacity: usize) -> u64 {
        fn go(
            keys: &[u64],
            i: usize,
            cache: &BTreeSet<u64>,
            capacity: usize,
            memo: &mut HashMap<(usize, Vec<u64>), u64>,
        ) -> u64 {
            if i == keys.len() {
                return 0;
            }
            let state = (i, cache.iter().copied().collect::<Vec<_>>());
            if let Some(&v) = memo.get(&state) {
                return v;
            }
            let k = keys[i];
            let best = if cache.contains(&k) {
                1 + go(keys, i + 1, cache, capacity, memo)
            } else {
                // Bypass is always allowed.
                let mut best = go(keys, i + 1, cache, capacity, memo);
                if cache.len() < capacity {
                    let mut c = cache.clone();
                    c.insert(k);
                    best = best.max(go(keys, i + 1, &c, capacity, memo));
                } else {
                    for &victim in cache {
                        let mut c = cache.clone();
                        c.remove(&victim);
                        c.insert(k);
                        best = best.max(go(keys, i + 1, &c, capacity, memo));
                    }
                }
                best
            };
            memo.insert(state, best);
            best
        }
        go(keys, 0, &BTreeSet::new(), capacity, &mut HashMap::new())
    }

    #[test]
    fn next_uses_point_forward() {
        assert_eq!(next_uses(&[1, 2, 1, 1, 3]), vec![2, usize::MAX, 3, usize::MAX, usize::MAX]);
    }

    #[test]
    fn classic_example() {
        // Capacity 2: MIN keeps 1 and 2 for their reuse, and refuses 3.
        let keys = [1, 2, 3, 1, 2, 3];
        assert_eq!(hits(&keys, &next_uses(&keys), 2, |_| {}), 2);
    }

    proptest! {
        #[test]
        fn matches_brute_force(keys in prop::collection::vec(0u64..6, 1..14), capacity in 1usize..4) {
            let next = next_uses(&keys);
            prop_assert_eq!(hits(&keys, &next, capacity as u64, |_| {}), brute_force(&keys, capacity));
        }
    }
}
