//! Least recently used: one queue, most recent at the back, victims from the front.

use crate::cache::list::List;
use crate::cache::slab::{Lane, Slab};

#[derive(Debug, Default)]
pub(crate) struct Lru {
    queue: List,
}

impl Lru {
    pub(crate) fn admit<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.queue.push_back(slab, Lane::Policy, idx);
    }

    pub(crate) fn touch<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.queue.move_to_back(slab, Lane::Policy, idx);
    }

    pub(crate) fn unlink<K, V>(&mut self, slab: &mut Slab<K, V>, idx: u32) {
        self.queue.unlink(slab, Lane::Policy, idx);
    }

    pub(crate) fn victim(&self) -> Option<u32> {
        self.queue.head()
    }

    /// Most recently used first.
    pub(crate) fn by_value<K, V>(&self, slab: &Slab<K, V>) -> Vec<u32> {
        self.queue.iter_back(slab, Lane::Policy).collect()
    }

    #[cfg(any(test, fuzzing, loom))]
    pub(crate) fn validate<K, V>(&self, slab: &Slab<K, V>) -> usize {
        self.queue.iter(slab, Lane::Policy).count()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn victim_is_least_recently_touched() {
        let mut slab = Slab::new();
        let mut lru = Lru::default();
        assert_eq!(lru.victim(), None);
        let ids: Vec<u32> = (0..3u32).map(|k| slab.put(k, (), 0, 1)).collect();
        ids.iter().for_each(|&i| lru.admit(&mut slab, i));
        assert_eq!(lru.victim(), Some(ids[0]));
        lru.touch(&mut slab, ids[0]);
        assert_eq!(lru.victim(), Some(ids[1]));
        lru.unlink(&mut slab, ids[1]);
        assert_eq!(lru.victim(), Some(ids[2]));
        assert_eq!(lru.validate(&slab), 2);
    }
}
