//! Warming: loading files into the cache ahead of use, in parallel, with priorities and progress.
//!
//! Workers take paths from a shared index. A high-priority warm pins each file it loads in its path's
//! slot (see `locks.rs`) until the whole warm completes, so files warmed early are not pushed out by
//! files warmed later (or by other traffic) before the warm is done; the pins go when it returns (or
//! when the file is changed meanwhile: a pin holds the content it was taken on). A
//! low-priority warm loads a file only if the cache has room for it without evicting anything. Large
//! files are warmed chunk by chunk at normal priority whatever the warm's priority.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::Mutex;

use super::path::{Glob, checked, checked_dir};
use super::read::Opened;
use super::stats::Count;
use super::workers::run_on_threads;
use super::{CacheFs, Error, Inner};

/// How a warm competes with what is already cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WarmPriority {
    /// Loaded files are protected from eviction until the warm completes.
    High,
    /// Loaded like any read.
    #[default]
    Normal,
    /// Only fills free space: a file that would evict something is skipped.
    Low,
}

/// Counts so far, passed to the progress callback after each file and returned by
/// [`WarmHandle::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WarmProgress {
    /// Files to warm in all.
    pub total: u64,
    /// Files loaded (or found cached).
    pub files: u64,
    /// Bytes loaded.
    pub bytes: u64,
    /// Files a low-priority warm skipped.
    pub skipped: u64,
    /// Files that failed.
    pub errors: u64,
}

/// A progress callback, shared by a warm's workers.
pub type ProgressFn = Arc<dyn Fn(&WarmProgress) + Send + Sync>;

/// How to warm.
#[derive(Clone)]
pub struct WarmOptions {
    /// Threads loading files in parallel (at least 1). Default 4.
    pub workers: usize,
    /// Default [`WarmPriority::Normal`].
    pub priority: WarmPriority,
    /// Keep going after a failure (reporting it) rather than stopping with an error. Default true.
    pub skip_errors: bool,
    /// Called after each file, from the worker that loaded it.
    pub progress: Option<ProgressFn>,
}

impl Default for WarmOptions {
    fn default() -> Self {
        WarmOptions { workers: 4, priority: WarmPriority::Normal, skip_errors: true, progress: None }
    }
}

impl fmt::Debug for WarmOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmOptions")
            .field("workers", &self.workers)
            .field("priority", &self.priority)
            .field("skip_errors", &self.skip_errors)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a finished warm did.
#[derive(Debug, Default)]
pub struct WarmReport {
    /// Files loaded (or found cached).
    pub files: u64,
    /// Bytes loaded.
    pub bytes: u64,
    /// Files skipped for lack of free space (low priority).
    pub skipped: u64,
    /// Each failed file with its error.
    pub errors: Vec<(String, Error)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Progress counters shared between a warm's workers and its handle. Report-only: relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    total: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
    skipped: AtomicU64,
    errors: AtomicU64,
    cancelled: AtomicBool,
}

impl Tracker {
    fn snapshot(&self) -> WarmProgress {
        WarmProgress {
            total: self.total.load(Relaxed),
            files: self.files.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// A warm running in the background, from [`CacheFs::warm_async`].
#[derive(Debug)]
pub struct WarmHandle {
    tracker: Arc<Tracker>,
    thread: JoinHandle<Result<WarmReport, Error>>,
}

impl WarmHandle {
    /// Counts so far.
    pub fn progress(&self) -> WarmProgress {
        self.tracker.snapshot()
    }

    /// Asks the workers to stop after their current file; `join` then returns [`Error::WarmStopped`].
    pub fn cancel(&self) {
        self.tracker.cancelled.store(true, Relaxed);
    }

    /// True once the warm has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the warm and returns its report.
    pub fn join(self) -> Result<WarmReport, Error> {
        self.thread.join().unwrap_or_else(|_| Err(Error::WarmStopped { reason: "a warm worker panicked".into() }))
    }
}

fn lossy<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Vec<String> {
    paths.into_iter().map(|p| p.as_ref().to_string_lossy().into_owned()).collect()
}

impl CacheFs {
    /// Loads the given files into the cache (see [`WarmOptions`] and [`WarmPriority`]).
    /// With `skip_errors` off, stops at the first failure with [`Error::WarmStopped`].
    ///
    /// ```
    /// use cachefs::fs::{CacheFs, MemBackend, WarmOptions, WarmPriority};
    ///
    /// let fs = CacheFs::builder(MemBackend::new()).build();
    /// for i in 0..10 {
    ///     fs.backend().write(&format!("shards/{i}.bin"), &[i as u8; 100])?;
    /// }
    /// let options = WarmOptions { workers: 2, priority: WarmPriority::High, ..WarmOptions::default() };
    /// let report = fs.warm_glob("shards/*.bin", options)?;
    /// assert_eq!((report.files, report.bytes), (10, 1000));
    /// assert_eq!(fs.stats().read_misses, 10);
    /// fs.read("shards/3.bin")?; // a hit
    /// assert_eq!(fs.stats().read_hits, 1);
    /// # Ok::<(), cachefs::fs::Error>(())
    /// ```
    pub fn warm<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
        options: WarmOptions,
    ) -> Result<WarmReport, Error> {
        self.inner.warm(lossy(paths), &options, &Tracker::default())
    }

    /// Warms every backend file matching the glob `pattern`.
    pub fn warm_glob(&self, pattern: &str, options: WarmOptions) -> Result<WarmReport, Error> {
        self.warm(self.inner.glob(pattern)?, options)
    }

    /// Warms every backend file below directory `dir` (`""`: all).
    pub fn warm_dir(&self, dir: impl AsRef<Path>, options: WarmOptions) -> Result<WarmReport, Error> {
        let dir = checked_dir(dir.as_ref())?;
        self.warm(self.inner.backend.list(&dir)?, options)
    }

    /// Warms the paths listed in a local text file, one per line (blank lines and lines starting with
    /// `#` are ignored).
    pub fn warm_from_list(&self, list: impl AsRef<Path>, options: WarmOptions) -> Result<WarmReport, Error> {
        let list = list.as_ref();
        let text = std::fs::read_to_string(list).map_err(|e| Error::io(list.display().to_string(), e))?;
        let paths = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        self.warm(paths, options)
    }

    /// Starts a warm in the background and returns at once.
    pub fn warm_async<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>, options: WarmOptions) -> WarmHandle {
        let (inner, paths) = (Arc::clone(&self.inner), lossy(paths));
        let tracker = Arc::new(Tracker::default());
        tracker.total.store(paths.len() as u64, Relaxed);
        let shared = Arc::clone(&tracker);
        let thread = std::thread::spawn(move || inner.warm(paths, &options, &shared));
        WarmHandle { tracker, thread }
    }
}

impl Inner {
    fn glob(&self, pattern: &str) -> Result<Vec<String>, Error> {
        let glob = Glob::new(pattern)?;
        Ok(self.backend.list(glob.base())?.into_iter().filter(|p| glob.matches(p)).collect())
    }

    pub(crate) fn warm(
        &self,
        paths: Vec<String>,
        options: &WarmOptions,
        tracker: &Tracker,
    ) -> Result<WarmReport, Error> {
        let started = Instant::now();
        tracker.total.store(paths.len() as u64, Relaxed);
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let errors = Mutex::new(Vec::new());
        let pinned = Mutex::new(Vec::new());
        let workers = options.workers.max(1).min(paths.len().max(1));
        run_on_threads(workers, &|| {
            while !stop.load(Relaxed) && !tracker.cancelled.load(Relaxed) {
                let Some(p) = paths.get(next.fetch_add(1, Relaxed)) else { break };
                match self.warm_one(p, options.priority, &pinned) {
                    Ok(Some(bytes)) => {
                        tracker.files.fetch_add(1, Relaxed);
                        tracker.bytes.fetch_add(bytes, Relaxed);
                        self.counters.add(Count::Warmed, 1);
                    }
                    Ok(None) => {
                        tracker.skipped.fetch_add(1, Relaxed);
                        self.counters.add(Count::WarmSkipped, 1);
                    }
                    Err(e) => {
                        tracker.errors.fetch_add(1, Relaxed);
                        if !options.skip_errors {
                            stop.store(true, Relaxed);
                        }
                        errors.lock().push((p.clone(), e));
                    }
                }
                if let Some(progress) = &options.progress {
                    progress(&tracker.snapshot());
                }
            }
        });
        for key in pinned.into_inner() {
            self.unpin(&key);
        }
        let p = tracker.snapshot();
        let mut errors = errors.into_inner();
        if tracker.cancelled.load(Relaxed) {
            return Err(Error::WarmStopped { reason: format!("cancelled after {} of {} files", p.files, p.total) });
        }
        if !options.skip_errors && !errors.is_empty() {
            let (path, e) = errors.swap_remove(0);
            return Err(Error::WarmStopped { reason: format!("{path}: {e}") });
        }
        Ok(WarmReport { files: p.files, bytes: p.bytes, skipped: p.skipped, errors, elapsed: started.elapsed() })
    }

    /// Loads one file; `Ok(None)` if a low-priority warm skipped it.
    fn warm_one(&self, raw: &str, priority: WarmPriority, pinned: &Mutex<Vec<String>>) -> Result<Option<u64>, Error> {
        let key = checked(Path::new(raw))?;
        // `contains`, not a read: checking for room must not count as a hit.
        if priority == WarmPriority::Low && !self.content.contains(&key) {
            let len = self.metadata(&self.locks.lock(&key).slot())?.len;
            if !self.content.has_room(&key, len) {
                return Ok(None);
            }
        }
        let opened = if priority == WarmPriority::High { self.open_pinned(&key)? } else { self.open(&key)? };
        match opened {
            Opened::Whole(data) => {
                if priority == WarmPriority::High {
                    pinned.lock().push(key.into_owned());
                }
                Ok(Some(data.len() as u64))
            }
            Opened::Chunked(chunks) => {
                let mut buf = String::new();
                for idx in 0..chunks.len.div_ceil(self.content.chunk_size()) {
                    self.chunk(&key, chunks, idx, &mut buf)?;
                }
                Ok(Some(chunks.len))
            }
        }
    }

    fn unpin(&self, key: &str) {
        self.locks.lock(key).slot().unpin();
    }
}
