//! The backing directory as the mount sees it: file contents through a [`Backend`] handed to the
//! `CacheFs`, and the namespace (directories, kinds, modes, times) directly. Both count what they ask of
//! the directory, and both can be slowed by a fixed delay per operation, to stand in for a network disk.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::fs::{Backend, BackendFile, Error, Metadata, OsBackend, TEMP_MARKER};

/// What the mount asked of its backing directory since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BackingCounts {
    /// File contents read (whole files or ranges).
    pub reads: u64,
    /// Files written, removed or renamed.
    pub writes: u64,
    /// Lookups, listings and attribute reads or changes on the namespace.
    pub metadata: u64,
}

/// Counters shared by the content backend and the namespace. Relaxed: they are statistics, read
/// alone, ordering nothing.
#[derive(Debug, Default)]
struct Counts {
    reads: AtomicU64,
    writes: AtomicU64,
    metadata: AtomicU64,
}

/// The backing directory: its root, the delay per operation, and the counts.
#[derive(Debug, Clone)]
pub(crate) struct Backing {
    root: PathBuf,
    delay: Duration,
    counts: Arc<Counts>,
}

/// Kind, permission bits and modification time of one entry of the backing directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) dir: bool,
    pub(crate) perm: u16,
    pub(crate) modified: SystemTime,
}

enum Op {
    Read,
    Write,
    Metadata,
}

impl Backing {
    pub(crate) fn new(root: &Path, delay: Duration) -> io::Result<Self> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{}: not a directory", root.display())));
        }
        Ok(Backing { root, delay, counts: Arc::default() })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn counts(&self) -> BackingCounts {
        let c = &self.counts;
        BackingCounts {
            reads: c.reads.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            metadata: c.metadata.load(Ordering::Relaxed),
        }
    }

    /// The content backend the `CacheFs` reads and writes through.
    pub(crate) fn content(&self) -> Result<Content, Error> {
        Ok(Content { os: OsBackend::new(&self.root)?, backing: self.clone() })
    }

    fn op(&self, op: Op) {
        let counter = match op {
            Op::Read => &self.counts.reads,
            Op::Write => &self.counts.writes,
            Op::Metadata => &self.counts.metadata,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
    }

    /// `path` (relative, already checked by the caller: no `..`, no leading `/`) under the root. A path
    /// with a NUL byte is the name of something removed while the kernel still held it: not found.
    fn full(&self, path: &str) -> io::Result<PathBuf> {
        if path.contains('\0') {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        Ok(if path.is_empty() { self.root.clone() } else { self.root.join(path) })
    }

    /// The entry at `path`, not following a final symlink; `None` if there is nothing there, or something
    /// the mount does not show (a symlink, a device, a write in progress: a name with the backend's
    /// temporary-file marker).
    pub(crate) fn entry(&self, path: &str) -> io::Result<Option<Entry>> {
        self.op(Op::Metadata);
        if path.rsplit('/').next().is_some_and(|name| name.contains(TEMP_MARKER)) {
            return Ok(None);
        }
        match self.full(path).and_then(fs::symlink_metadata) {
            Ok(m) if m.is_dir() || m.is_file() => {
                Ok(Some(Entry { dir: m.is_dir(), perm: (m.mode() & 0o7777) as u16, modified: m.modified()? }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The names in directory `dir` that the mount shows (files and directories), with whether each is a
    /// directory; unsorted.
    pub(crate) fn list(&self, dir: &str) -> io::Result<Vec<(String, bool)>> {
        self.op(Op::Metadata);
        let mut names = Vec::new();
        for entry in fs::read_dir(self.full(dir)?)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.contains(TEMP_MARKER) || !(kind.is_dir() || kind.is_file()) {
                continue;
            }
            names.push((name, kind.is_dir()));
        }
        Ok(names)
    }

    pub(crate) fn mkdir(&self, path: &str, perm: u32) -> io::Result<()> {
        self.op(Op::Write);
        let full = self.full(path)?;
        fs::create_dir(&full)?;
        fs::set_permissions(full, fs::Permissions::from_mode(perm))
    }

    pub(crate) fn rmdir(&self, path: &str) -> io::Result<()> {
        self.op(Op::Write);
        fs::remove_dir(self.full(path)?)
    }

    /// Renames a directory (files go through the `CacheFs`).
    pub(crate) fn rename_dir(&self, from: &str, to: &str) -> io::Result<()> {
        self.op(Op::Write);
        fs::rename(self.full(from)?, self.full(to)?)
    }

    pub(crate) fn set_perm(&self, path: &str, perm: u32) -> io::Result<()> {
        self.op(Op::Metadata);
        fs::set_permissions(self.full(path)?, fs::Permissions::from_mode(perm))
    }

    pub(crate) fn set_times(
        &self,
        path: &str,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> io::Result<()> {
        self.op(Op::Metadata);
        let file = fs::File::options().write(false).read(true).open(self.full(path)?)?;
        let mut times = fs::FileTimes::new();
        if let Some(a) = accessed {
            times = times.set_accessed(a);
        }
        if let Some(m) = modified {
            times = times.set_modified(m);
        }
        file.set_times(times)
    }

    /// Blocks and inodes of the file system holding the root: (blocks, free, available, files, free
    /// files, block size, longest name).
    pub(crate) fn statfs(&self) -> io::Result<libc::statvfs> {
        self.op(Op::Metadata);
        let c = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut out = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `c` is a NUL-terminated path that outlives the call and `out` is writable memory of the
        // type statvfs(3) fills; it is read only after the call reports success.
        let rc = unsafe { libc::statvfs(c.as_ptr(), out.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it initialised `out`.
        Ok(unsafe { out.assume_init() })
    }
}

/// The `CacheFs`'s backend: the [`OsBackend`] over the root, counted and delayed per call.
pub(crate) struct Content {
    os: OsBackend,
    backing: Backing,
}

impl Content {
    /// Removes temporary files an interrupted write left in the backing directory; how many went.
    pub(crate) fn remove_temp_files(&self) -> Result<u64, Error> {
        self.os.remove_temp_files()
    }
}

impl Backend for Content {
    fn read(&self, path: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.backing.op(Op::Read);
        self.os.read(path, buf)
    }
    fn read_range(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.backing.op(Op::Read);
        self.os.read_range(path, offset, buf)
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        self.backing.op(Op::Write);
        self.os.write(path, data)
    }
    fn write_modified(&self, path: &str, data: &[u8], modified: SystemTime) -> Result<(), Error> {
        self.backing.op(Op::Write);
        self.os.write_modified(path, data, modified)
    }
    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        self.backing.op(Op::Metadata);
        self.os.stat(path)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, Error> {
        self.backing.op(Op::Metadata);
        self.os.list(dir)
    }
    fn remove(&self, path: &str) -> Result<(), Error> {
        self.backing.op(Op::Write);
        self.os.remove(path)
    }
    fn remove_all(&self, dir: &str) -> Result<u64, Error> {
        self.backing.op(Op::Write);
        self.os.remove_all(dir)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        self.backing.op(Op::Write);
        self.os.rename(from, to)
    }
    fn create(&self, path: &str) -> Result<Box<dyn BackendFile + '_>, Error> {
        self.backing.op(Op::Write);
        self.os.create(path)
    }
    fn check(&self, path: &str) -> Result<(), Error> {
        self.os.check(path)
    }
}
