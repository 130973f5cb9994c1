//! The namespace of pending write-back writes: which paths will be written as files, and so which
//! directories those writes will create.
//!
//! Write-back acknowledges a write before the backend sees it, so it must refuse, at once, a write that
//! no flush could ever complete. The backend's own check sees only what the backend holds; this sees what
//! is pending: a file `a` waiting to be written makes `a/b` unwritable (its parent will be a file), and a
//! file `a/b` waiting makes `a` unwritable (it will be a directory). Whichever is claimed first wins; the
//! other is refused until the first is written or discarded.
//!
//! A path is claimed once per pending write (a reservation, then the dirty data it becomes) and by
//! operations that create it on the backend directly (a rename's target, a streamed file's commit) for
//! their duration. Plain data: the write-back mutex guards it.

use std::sync::Arc;

use super::error::Error;
use super::path;

type Map<K> = hashbrown::HashMap<K, u32, ahash::RandomState>;

#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Claims per file path.
    files: Map<Arc<str>>,
    /// Per directory, how many claimed files lie below it.
    dirs: Map<Box<str>>,
}

impl Claims {
    /// Why `path` cannot be claimed as a file now, if it cannot.
    pub(crate) fn conflict(&self, path: &str) -> Option<Error> {
        if self.dirs.contains_key(path) {
            return Some(Error::NotAFile { path: path.to_string() });
        }
        path::parents(path)
            .any(|dir| self.files.contains_key(dir))
            .then(|| Error::NotADirectory { path: path.to_string() })
    }

    /// Claims `path` once more (the caller checked [`conflict`](Self::conflict)).
    pub(crate) fn add(&mut self, path: &str) {
        if let Some(n) = self.files.get_mut(path) {
            *n += 1;
            return;
        }
        self.files.insert(Arc::from(path), 1);
        for dir in path::parents(path) {
            match self.dirs.get_mut(dir) {
                Some(d) => *d += 1,
                None => {
                    self.dirs.insert(dir.into(), 1);
                }
            }
        }
    }

    /// Releases one claim on `path`.
    pub(crate) fn remove(&mut self, path: &str) {
        let Some(n) = self.files.get_mut(path) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.files.remove(path);
        for dir in path::parents(path) {
            if let Some(d) = self.dirs.get_mut(dir) {
                *d -= 1;
                if *d == 0 {
                    self.dirs.remove(dir);
                }
            }
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_file_and_a_pending_directory_exclude_each_other() {
        let mut c = Claims::default();
        assert!(c.conflict("a/b").is_none());
        c.add("a/b");
        c.add("a/b");
        assert!(matches!(c.conflict("a"), Some(Error::NotAFile { .. })), "a will be a directory");
        assert!(matches!(c.conflict("a/b/c"), Some(Error::NotADirectory { .. })), "a/b will be a file");
        assert!(c.conflict("a/b").is_none() && c.conflict("a/c").is_none() && c.conflict("ab").is_none());
        c.remove("a/b");
        assert!(c.conflict("a").is_some(), "one claim is left");
        c.remove("a/b");
        assert!(c.conflict("a").is_none() && c.conflict("a/b/c").is_none());
        c.remove("never");
        assert!(c.is_empty());
    }
}
