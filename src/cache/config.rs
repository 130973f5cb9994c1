//! The settings a cache may change while it runs: capacity, time-to-live, time-to-idle.
//!
//! They live behind an [`ArcSwap`]: readers (every write, and reads of entries that may expire) load
//! the current settings without a lock and without contending with each other; a change stores a new
//! `Config` whole, so nobody ever sees half of one. Changes are serialised by a mutex of their own
//! (held while the shards are brought in line, never by readers or writers of entries), so two
//! concurrent changes apply to every shard in the same order.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::sync::{Mutex, MutexGuard};

/// One version of the changeable settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// Maximum weighted size.
    pub(crate) capacity: u64,
    /// Time-to-live of entries inserted from now on.
    pub(crate) ttl: Option<Duration>,
    /// Time-to-idle in clock nanoseconds.
    pub(crate) tti: Option<u64>,
}

impl Config {
    /// True when a TTL or time-to-idle is set: every write must consult the clock.
    pub(crate) fn expiring(&self) -> bool {
        self.ttl.is_some() || self.tti.is_some()
    }
}

/// The current settings, and the lock that orders changes to them.
#[derive(Debug)]
pub(crate) struct LiveConfig {
    current: ArcSwap<Config>,
    /// Whether the current settings have a TTL or a time-to-idle: the one thing every write asks, so it
    /// costs a plain load. Relaxed: a write racing a change may go by either setting, as if it came
    /// before or after it. (A `std` atomic even under loom: configuration is not what the models check.)
    expiring: AtomicBool,
    changes: Mutex<()>,
}

impl LiveConfig {
    pub(crate) fn new(config: Config) -> Self {
        let expiring = AtomicBool::new(config.expiring());
        LiveConfig { current: ArcSwap::from_pointee(config), expiring, changes: Mutex::new(()) }
    }

    /// The settings now. Lock-free.
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<Config>> {
        self.current.load()
    }

    /// Whether entries may expire (a TTL or time-to-idle is set), without loading the settings.
    #[inline]
    pub(crate) fn expiring(&self) -> bool {
        self.expiring.load(Ordering::Relaxed)
    }

    /// Starts a change: holds the change lock until the returned guard drops.
    pub(crate) fn change(&self) -> MutexGuard<'_, ()> {
        self.changes.lock()
    }

    /// Publishes `f` applied to the current settings (the caller holds the change lock).
    pub(crate) fn publish(&self, _changing: &MutexGuard<'_, ()>, f: impl FnOnce(&mut Config)) -> Arc<Config> {
        let mut next = Config::clone(&self.current.load());
        f(&mut next);
        let next = Arc::new(next);
        self.current.store(Arc::clone(&next));
        self.expiring.store(next.expiring(), Ordering::Relaxed);
        next
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn changes_publish_whole_settings() {
        let live = LiveConfig::new(Config { capacity: 10, ttl: None, tti: None });
        assert!(!live.load().expiring() && !live.expiring());
        let lock = live.change();
        let next = live.publish(&lock, |c| c.ttl = Some(Duration::from_secs(1)));
        assert_eq!(next.capacity, 10);
        assert!(live.load().expiring() && live.expiring());
        live.publish(&lock, |c| c.capacity = 3);
        assert_eq!(**live.load(), Config { capacity: 3, ttl: Some(Duration::from_secs(1)), tti: None });
    }
}
