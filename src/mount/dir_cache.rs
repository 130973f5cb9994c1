//! Directory listings and directory times from the backing directory, kept for the metadata TTL. Changes
//! made through the mount update a cached listing in place (so a file written back later never drops out
//! of it) and drop the directory's cached time. The mount assumes, as the file layer does, that it is the
//! backing directory's only writer; changes made by others show after the TTL.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::inodes::within;

#[derive(Debug, Default)]
struct Entry {
    modified: Option<(Instant, SystemTime)>,
    names: Option<(Instant, Vec<(String, bool)>)>,
}

/// The cache, by directory path. One mutex: a lookup is a map probe; loads run outside it.
#[derive(Debug)]
pub(crate) struct DirCache {
    ttl: Duration,
    dirs: Mutex<HashMap<String, Entry>>,
}

impl DirCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        DirCache { ttl, dirs: Mutex::default() }
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// The directory's modification time, from the cache or from `load`.
    pub(crate) fn modified<E>(&self, dir: &str, load: impl FnOnce() -> Result<SystemTime, E>) -> Result<SystemTime, E> {
        if let Some(&(at, m)) = self.dirs.lock().get(dir).and_then(|e| e.modified.as_ref())
            && self.fresh(at)
        {
            return Ok(m);
        }
        let asked = Instant::now();
        let m = load()?;
        self.dirs.lock().entry(dir.to_string()).or_default().modified = Some((asked, m));
        Ok(m)
    }

    /// The directory's entries (name, is a directory), from the cache or from `load`.
    pub(crate) fn names<E>(
        &self,
        dir: &str,
        load: impl FnOnce() -> Result<Vec<(String, bool)>, E>,
    ) -> Result<Vec<(String, bool)>, E> {
        if let Some((at, names)) = self.dirs.lock().get(dir).and_then(|e| e.names.as_ref())
            && self.fresh(*at)
        {
            return Ok(names.clone());
        }
        // Taken before the load: a change during the load drops what this stores.
        let asked = Instant::now();
        let names = load()?;
        let mut dirs = self.dirs.lock();
        let entry = dirs.entry(dir.to_string()).or_default();
        if entry.names.as_ref().is_none_or(|(at, _)| *at <= asked) {
            entry.names = Some((asked, names.clone()));
        }
        Ok(names)
    }

    /// `name` (a directory if `dir_entry`) now exists in `parent`.
    pub(crate) fn added(&self, parent: &str, name: &str, dir_entry: bool) {
        let mut dirs = self.dirs.lock();
        let Some(e) = dirs.get_mut(parent) else { return };
        e.modified = None;
        if let Some((_, names)) = &mut e.names {
            names.retain(|(n, _)| n != name);
            names.push((name.to_string(), dir_entry));
        }
    }

    /// `name` no longer exists in `parent`.
    pub(crate) fn removed(&self, parent: &str, name: &str) {
        let mut dirs = self.dirs.lock();
        let Some(e) = dirs.get_mut(parent) else { return };
        e.modified = None;
        if let Some((_, names)) = &mut e.names {
            names.retain(|(n, _)| n != name);
        }
    }

    /// The directory's own attributes changed.
    pub(crate) fn touched(&self, dir: &str) {
        if let Some(e) = self.dirs.lock().get_mut(dir) {
            e.modified = None;
        }
    }

    /// `dir` and everything below it moved or went.
    pub(crate) fn changed_below(&self, dir: &str) {
        self.dirs.lock().retain(|p, _| !within(p, dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_within_the_ttl_and_forgets_on_change() {
        let cache = DirCache::new(Duration::from_secs(60));
        let mut loads = 0;
        for _ in 0..3 {
            let names = cache.names::<()>("a", || {
                loads += 1;
                Ok(vec![("x".into(), false)])
            });
            assert_eq!(names.unwrap(), [("x".to_string(), false)]);
        }
        assert_eq!(loads, 1);
        cache.added("a", "y", true);
        cache.added("a", "x", false);
        cache.removed("a", "nothing");
        assert_eq!(
            cache.names::<()>("a", || unreachable!()).unwrap(),
            [("y".to_string(), true), ("x".to_string(), false)]
        );
        cache.removed("a", "x");
        assert_eq!(cache.names::<()>("a", || unreachable!()).unwrap(), [("y".to_string(), true)]);
        cache.modified::<()>("a", || Ok(SystemTime::UNIX_EPOCH)).unwrap();
        cache.touched("a");
        assert_eq!(cache.modified::<()>("a", || Err(())), Err(()), "the time is asked again");
        cache.modified::<()>("a/b", || Ok(SystemTime::UNIX_EPOCH)).unwrap();
        cache.changed_below("a");
        assert_eq!(cache.modified::<()>("a/b", || Err(())), Err(()), "dropped with its parent");
        assert!(cache.names::<&str>("a", || Err("failed")).is_err(), "a failed load is not cached");
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = DirCache::new(Duration::ZERO);
        cache.names::<()>("", || Ok(vec![])).unwrap();
        assert_eq!(cache.names::<()>("", || Err(())), Err(()));
    }
}
