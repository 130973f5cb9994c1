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

    #[cfg(any(test, fuzzing))]
    pub(crate) fn validate<K, V>(&self, slab: &Slab<K, V>) -> usize {
        self.queue.iter(slab, Lane::Policy).count()
    }
}
