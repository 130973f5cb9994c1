//! A backend wrapper that fails on demand and counts calls, for proving what survives failures.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cachefs::fs::{Backend, BackendFile, Error, Metadata};
use parking_lot::Mutex;

/// Which calls a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Stat,
    /// A write to a file being streamed (`Backend::create`); its commit counts as a `Write`.
    Stream,
    Any,
}

/// Linux errno values the tests inject.
pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;
pub const EACCES: i32 = 13;

#[derive(Debug)]
struct Fault {
    op: Op,
    /// Fails the calls numbered `from..from + times` (1-based, counted per op kind).
    from: u64,
    times: u64,
    errno: i32,
    /// The call takes effect first, then reports the failure (a backend whose last step, such as a
    /// directory fsync, failed after the change was made).
    after_effect: bool,
}

/// Wraps a backend; see the methods for the faults it can inject.
pub struct Faulty {
    inner: Box<dyn Backend>,
    reads: AtomicU64,
    writes: AtomicU64,
    stats: AtomicU64,
    streams: AtomicU64,
    faults: Mutex<Vec<Fault>>,
    write_delay: Mutex<Duration>,
}

impl Faulty {
    pub fn new(inner: impl Backend) -> Self {
        Faulty {
            inner: Box::new(inner),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            stats: AtomicU64::new(0),
            streams: AtomicU64::new(0),
            faults: Mutex::new(Vec::new()),
            write_delay: Mutex::new(Duration::ZERO),
        }
    }

    /// From the `nth` call of `op` counted from now, fail `times` calls with `errno`.
    pub fn fail(&self, op: Op, nth: u64, times: u64, errno: i32) {
        let from = self.count(op) + nth;
        self.faults.lock().push(Fault { op, from, times, errno, after_effect: false });
    }

    /// Like [`fail`](Self::fail), but each failing call takes effect before it reports the failure.
    pub fn fail_after_effect(&self, op: Op, nth: u64, times: u64, errno: i32) {
        let from = self.count(op) + nth;
        self.faults.lock().push(Fault { op, from, times, errno, after_effect: true });
    }

    /// Fails every later call of `op` until `heal`.
    pub fn fail_always(&self, op: Op, errno: i32) {
        self.fail(op, 1, u64::MAX / 2, errno);
    }

    pub fn heal(&self) {
        self.faults.lock().clear();
    }

    /// Makes each write sleep first (a slow backend).
    pub fn slow_writes(&self, by: Duration) {
        *self.write_delay.lock() = by;
    }

    pub fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(SeqCst)
    }

    pub fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn count(&self, op: Op) -> u64 {
        match op {
            Op::Read => self.reads(),
            Op::Write => self.writes(),
            Op::Stat => self.stats.load(SeqCst),
            Op::Stream => self.streams.load(SeqCst),
            Op::Any => self.reads() + self.writes() + self.stats.load(SeqCst),
        }
    }

    /// Counts the call; the fault covering it, if any, as (error, whether it takes effect first).
    fn call(&self, op: Op, path: &str) -> Option<(Error, bool)> {
        let n = match op {
            Op::Read => self.reads.fetch_add(1, SeqCst) + 1,
            Op::Write => self.writes.fetch_add(1, SeqCst) + 1,
            Op::Stream => self.streams.fetch_add(1, SeqCst) + 1,
            _ => self.stats.fetch_add(1, SeqCst) + 1,
        };
        let any = self.count(Op::Any);
        for f in self.faults.lock().iter() {
            let at = if f.op == Op::Any { any } else { n };
            if (f.op == op || f.op == Op::Any) && at >= f.from && at < f.from.saturating_add(f.times) {
                return Some((Error::io(path, io::Error::from_raw_os_error(f.errno)), f.after_effect));
            }
        }
        None
    }

    /// Runs `effect` as the fault covering this call allows: not at all, or first and then failing.
    fn run<T>(&self, op: Op, path: &str, effect: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        match self.call(op, path) {
            None => effect(),
            Some((e, false)) => Err(e),
            Some((e, true)) => effect().and(Err(e)),
        }
    }
}

/// A streamed file whose writes and commit go through the faults.
struct FaultyFile<'a> {
    faulty: &'a Faulty,
    path: String,
    inner: Box<dyn BackendFile + 'a>,
}

impl std::io::Write for FaultyFile<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let inner = &mut self.inner;
        self.faulty
            .run(Op::Stream, &self.path, || inner.write(data).map_err(|e| Error::io("stream", e)))
            .map_err(io::Error::from)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl std::io::Seek for FaultyFile<'_> {
    fn seek(&mut self, from: std::io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(from)
    }
}

impl BackendFile for FaultyFile<'_> {
    fn commit(self: Box<Self>) -> Result<(), Error> {
        let FaultyFile { faulty, path, inner } = *self;
        faulty.run(Op::Write, &path, || inner.commit())
    }
}

impl Backend for Faulty {
    fn read(&self, path: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.run(Op::Read, path, || self.inner.read(path, buf))
    }
    fn read_range(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.run(Op::Read, path, || self.inner.read_range(path, offset, buf))
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let delay = *self.write_delay.lock();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        self.run(Op::Write, path, || self.inner.write(path, data))
    }
    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        self.run(Op::Stat, path, || self.inner.stat(path))
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, Error> {
        self.inner.list(dir)
    }
    fn remove(&self, path: &str) -> Result<(), Error> {
        self.run(Op::Write, path, || self.inner.remove(path))
    }
    fn remove_all(&self, dir: &str) -> Result<u64, Error> {
        self.run(Op::Write, dir, || self.inner.remove_all(dir))
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        self.run(Op::Write, from, || self.inner.rename(from, to))
    }
    fn create(&self, path: &str) -> Result<Box<dyn BackendFile + '_>, Error> {
        let inner = self.inner.create(path)?;
        Ok(Box::new(FaultyFile { faulty: self, path: path.to_string(), inner }))
    }
    fn check(&self, path: &str) -> Result<(), Error> {
        self.inner.check(path)
    }
}
