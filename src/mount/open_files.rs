//! Files open through the mount. The file layer stores whole files, while programs write pieces at
//! offsets (a database writes pages into the middle of its file): a file written through the mount gets
//! a working copy in memory, shared by all its handles so each sees the others' writes, and stored
//! whole into the `CacheFs` on `flush` (every `close`), `fsync` and the last `release`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

/// The content of a file being written through the mount.
#[derive(Debug)]
pub(crate) struct Working {
    /// The whole file, once a write, truncate or unlink has needed it; until then reads go to the
    /// `CacheFs` and there is nothing to store.
    pub(crate) data: Option<Vec<u8>>,
    /// Changed since it was last stored.
    pub(crate) dirty: bool,
    /// When it last changed.
    pub(crate) modified: SystemTime,
    /// Handles open on the file.
    handles: usize,
}

/// The open handles and the working copies, by inode.
#[derive(Debug)]
pub(crate) struct OpenFiles {
    /// Handle → inode. Locked alone, or before `files`, never while a working copy is locked.
    handles: Mutex<HashMap<u64, u64>>,
    /// Inode → its working copy. The map's lock is released before a working copy is locked.
    files: Mutex<HashMap<u64, Arc<Mutex<Working>>>>,
    next: AtomicU64,
    /// Bytes held in working copies, against `limit`. Relaxed: a budget, not an ordering.
    held: AtomicU64,
    limit: u64,
}

/// A file that would grow the working copies past their budget.
#[derive(Debug)]
pub(crate) struct OverBudget;

impl OpenFiles {
    pub(crate) fn new(limit: u64) -> Self {
        OpenFiles {
            handles: Mutex::default(),
            files: Mutex::default(),
            next: AtomicU64::new(1),
            held: AtomicU64::new(0),
            limit,
        }
    }

    /// Opens a handle on `ino`.
    pub(crate) fn open(&self, ino: u64) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, ino);
        let mut files = self.files.lock();
        let w = files.entry(ino).or_insert_with(|| {
            Arc::new(Mutex::new(Working { data: None, dirty: false, modified: SystemTime::now(), handles: 0 }))
        });
        w.lock().handles += 1;
        fh
    }

    /// Closes handle `fh`; returns its inode and, if it was the file's last handle, the working copy
    /// (now out of the table: store it if dirty, then drop it).
    pub(crate) fn release(&self, fh: u64) -> Option<(u64, Option<Arc<Mutex<Working>>>)> {
        let ino = self.handles.lock().remove(&fh)?;
        let mut files = self.files.lock();
        let w = files.get(&ino)?.clone();
        let mut g = w.lock();
        g.handles -= 1;
        if g.handles > 0 {
            return Some((ino, None));
        }
        files.remove(&ino);
        drop(files);
        drop(g);
        Some((ino, Some(w)))
    }

    /// The working copy of `ino`, if it is open.
    pub(crate) fn get(&self, ino: u64) -> Option<Arc<Mutex<Working>>> {
        self.files.lock().get(&ino).cloned()
    }

    /// Every open file with its working copy.
    pub(crate) fn all(&self) -> Vec<(u64, Arc<Mutex<Working>>)> {
        self.files.lock().iter().map(|(&i, w)| (i, Arc::clone(w))).collect()
    }

    /// Bytes held in working copies.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// How many files are open.
    pub(crate) fn count(&self) -> usize {
        self.files.lock().len()
    }

    /// Accounts a working copy changing from `old` to `new` bytes; refuses growth past the budget.
    pub(crate) fn resize(&self, old: usize, new: usize) -> Result<(), OverBudget> {
        let (old, new) = (old as u64, new as u64);
        if new <= old {
            self.held.fetch_sub(old - new, Ordering::Relaxed);
            return Ok(());
        }
        let grow = new - old;
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| (h + grow <= self.limit).then_some(h + grow))
            .map(|_| ())
            .map_err(|_| OverBudget)
    }
}

impl Working {
    /// Writes `bytes` at `offset`, growing the file (zero-filled) as needed. `budget` is asked first.
    pub(crate) fn write_at(&mut self, offset: u64, bytes: &[u8], budget: &OpenFiles) -> Result<(), OverBudget> {
        let data = self.data.get_or_insert_with(Vec::new);
        let end = usize::try_from(offset).ok().and_then(|o| o.checked_add(bytes.len())).ok_or(OverBudget)?;
        if end > data.len() {
            budget.resize(data.len(), end)?;
            data.resize(end, 0);
        }
        data[end - bytes.len()..end].copy_from_slice(bytes);
        self.dirty = true;
        self.modified = SystemTime::now();
        Ok(())
    }

    /// Truncates or extends (zero-filled) to `len`.
    pub(crate) fn set_len(&mut self, len: u64, budget: &OpenFiles) -> Result<(), OverBudget> {
        let data = self.data.get_or_insert_with(Vec::new);
        let len = usize::try_from(len).map_err(|_| OverBudget)?;
        budget.resize(data.len(), len)?;
        data.resize(len, 0);
        self.dirty = true;
        self.modified = SystemTime::now();
        Ok(())
    }

    /// Takes `content` as the file's current content (loaded from the `CacheFs`).
    pub(crate) fn load(&mut self, content: &[u8], budget: &OpenFiles) -> Result<(), OverBudget> {
        budget.resize(0, content.len())?;
        self.data = Some(content.to_vec());
        Ok(())
    }

    /// Gives its bytes back to the budget (the copy is being dropped).
    pub(crate) fn discard(&mut self, budget: &OpenFiles) {
        if let Some(d) = self.data.take() {
            let _ = budget.resize(d.len(), 0);
        }
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_one_copy_and_the_last_release_hands_it_back() {
        let files = OpenFiles::new(100);
        let (a, b) = (files.open(7), files.open(7));
        files.get(7).unwrap().lock().write_at(2, b"xy", &files).unwrap();
        assert_eq!(files.get(7).unwrap().lock().data.as_deref(), Some(&b"\0\0xy"[..]));
        assert!(matches!(files.release(a), Some((7, None))));
        let (ino, last) = files.release(b).unwrap();
        assert_eq!(ino, 7);
        let last = last.unwrap();
        assert!(last.lock().dirty);
        last.lock().discard(&files);
        assert_eq!(files.held(), 0);
        assert!(files.get(7).is_none() && files.release(b).is_none());
    }

    #[test]
    fn growth_past_the_budget_is_refused_and_changes_nothing() {
        let files = OpenFiles::new(10);
        files.open(1);
        let w = files.get(1).unwrap();
        w.lock().write_at(0, &[1; 8], &files).unwrap();
        assert!(w.lock().write_at(8, &[2; 3], &files).is_err());
        assert_eq!(w.lock().data.as_ref().unwrap().len(), 8);
        assert!(w.lock().write_at(u64::MAX, &[2], &files).is_err(), "an offset past memory is refused, not a panic");
        w.lock().set_len(2, &files).unwrap();
        assert_eq!(files.held(), 2);
    }
}
