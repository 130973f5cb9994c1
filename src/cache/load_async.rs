//! Loading for async callers: [`Cache::get_with_async`] and [`Cache::try_get_with_async`] share the
//! single flight of [`Cache::get_with`] (see `loader.rs`), but wait as tasks: a waiting task parks with
//! its waker and no thread blocks, on any executor. The leader's guard lives in its future, so a load
//! whose future is dropped (a timeout, a client gone) settles as failed and a waiter takes it over.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hash};

use super::Cache;
use super::loader::{Flight, Joined};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    /// The value for `key`, loading it with the future `init` on a miss and storing it; for async callers.
    ///
    /// One load per key however many tasks and threads miss at once, shared with [`get_with`]
    /// (Self::get_with): the others wait as tasks (their executor thread is free meanwhile) and get
    /// its value. `init` is only polled if this call leads the load. Cancellation-safe: if the leading
    /// future is dropped before `init` finishes, nothing is stored, and a waiting caller starts its own
    /// `init` (never while the first still runs: the first is dropped by then). If `init` panics, the panic
    /// reaches this caller and a waiting caller takes over. Needs no particular executor.
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let cache: Cache<u32, String> = Cache::new(100);
    /// # futures::executor::block_on(async {
    /// let v = cache.get_with_async(1, async { "loaded".to_string() }).await;
    /// assert_eq!(v, "loaded");
    /// assert_eq!(cache.get_with_async(1, async { unreachable!() }).await, "loaded");
    /// # });
    /// ```
    pub async fn get_with_async(&self, key: K, init: impl Future<Output = V>) -> V {
        match self.try_get_with_async(key, async { Ok::<V, Infallible>(init.await) }).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`get_with_async`](Self::get_with_async) for a loader that can fail: an error goes to this
    /// caller only and stores nothing; callers waiting on this load then run their own loaders.
    pub async fn try_get_with_async<E>(&self, key: K, init: impl Future<Output = Result<V, E>>) -> Result<V, E> {
        let hash = self.hash(&key);
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let locked = self.shard(hash);
        let mut init = Some(init);
        loop {
            let joined = {
                // Pinned before the flight table's lock (no deferred drop under it), and unpinned before
                // any await: an epoch guard stays on its thread.
                let guard = crossbeam_epoch::pin();
                locked.flights.join(hash, &key, &self.inner.counters, || self.peek(hash, &key, &guard).0)
            };
            match joined {
                Joined::Found(v) => return Ok(v),
                Joined::Follower(flight) => {
                    if let Some(v) = Flight::wait_async(flight).await {
                        return Ok(v);
                    }
                    // The leader failed, was cancelled or panicked: start over, perhaps as the leader.
                }
                Joined::Leader(leader) => {
                    // A caller leads once: it returns from this arm whatever happens.
                    let init = init.take().expect("a caller leads at most one load");
                    let started = self.inner.latency.as_ref().map(|_| std::time::Instant::now());
                    // Dropping this future here drops `leader` unsettled, which settles the flight as
                    // failed and wakes the waiters.
                    let loaded = init.await;
                    if let Some(started) = started {
                        self.record_latency(super::observe::LOAD, started);
                    }
                    return self.finish_load(locked, hash, key, loaded, leader);
                }
            }
        }
    }
}
