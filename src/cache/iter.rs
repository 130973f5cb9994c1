//! Weakly consistent iteration over a cache.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use super::Cache;

/// Iterator over clones of a cache's live entries; see [`Cache::iter`].
pub struct Iter<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    next_shard: usize,
    current: std::vec::IntoIter<(K, V)>,
}

impl<K, V, S> fmt::Debug for Iter<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("next_shard", &self.next_shard).finish_non_exhaustive()
    }
}

impl<'a, K, V, S> Iter<'a, K, V, S> {
    pub(crate) fn new(cache: &'a Cache<K, V, S>) -> Self {
        Iter { cache, next_shard: 0, current: Vec::new().into_iter() }
    }
}

impl<K, V, S> Iterator for Iter<'_, K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            let snapshot = self.cache.shard_snapshot(self.next_shard)?;
            self.next_shard += 1;
            self.current = snapshot.into_iter();
        }
    }
}
