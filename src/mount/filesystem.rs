//! The FUSE operations: each resolves inodes to paths, then asks the `CacheFs` (file contents and their
//! metadata), the working copies (files being written) or the backing directory (directories, modes,
//! times), and answers with the errno a local file system would give.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use parking_lot::{Mutex, RwLock};

use super::backing::Backing;
use super::dir_cache::DirCache;
use super::errno;
use super::inodes::{self, Inodes, Node, ROOT, split};
use super::open_files::{OpenFiles, Working};
use crate::fs::{CacheFs, Error, WriteMode};

const FILE_PERM: u16 = 0o644;

/// Everything the operations share; the mount handle keeps a second reference for its stats and the
/// final flush.
pub(crate) struct Shared {
    pub(crate) cache: CacheFs,
    pub(crate) backing: Backing,
    pub(crate) inodes: Inodes,
    pub(crate) open: OpenFiles,
    /// Directory listings and times, for the metadata TTL.
    dirs: DirCache,
    /// Listings taken at `opendir`, by directory handle, paged out by `readdir`.
    listings: Mutex<HashMap<u64, Listing>>,
    next_dir: Mutex<u64>,
    /// How long the kernel may keep an entry or attributes without asking again.
    ttl: Duration,
    write_back: bool,
    /// Set once the mount is shutting down: changes are refused from then on (EIO). Every change holds
    /// it for reading while it runs, so setting it (for writing) waits for changes in flight.
    closed: RwLock<bool>,
    uid: u32,
    gid: u32,
}

/// A directory's entries: inode number (informational), kind, name.
type Listing = Vec<(u64, FileType, String)>;

/// The `fuser::Filesystem` over [`Shared`].
pub(crate) struct MountedFs(pub(crate) Arc<Shared>);

type Result<T> = std::result::Result<T, Errno>;

fn fs_err(e: Error) -> Errno {
    errno::of(&e)
}

fn io_err(e: std::io::Error) -> Errno {
    errno::of_io(&e)
}

fn unlinked(path: &str) -> bool {
    path.starts_with('\0')
}

impl Shared {
    pub(crate) fn new(cache: CacheFs, backing: Backing, ttl: Duration, mode: WriteMode, budget: u64) -> Self {
        let root_perm = backing.entry("").ok().flatten().map_or(0o755, |e| e.perm);
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Shared {
            cache,
            backing,
            inodes: Inodes::new(root_perm),
            open: OpenFiles::new(budget),
            dirs: DirCache::new(ttl),
            listings: Mutex::default(),
            next_dir: Mutex::new(1),
            ttl,
            write_back: matches!(mode, WriteMode::WriteBack { .. }),
            closed: RwLock::new(false),
            uid,
            gid,
        }
    }

    fn attr(&self, ino: u64, dir: bool, perm: u16, len: u64, modified: SystemTime) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: len,
            blocks: len.div_ceil(512),
            atime: modified,
            mtime: modified,
            ctime: modified,
            crtime: modified,
            kind: if dir { FileType::Directory } else { FileType::RegularFile },
            perm,
            nlink: if dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The attributes of a known inode: a file's length and time from its working copy when it is being
    /// written, else from the `CacheFs` (its metadata cache); a directory's from the backing directory.
    fn attr_of(&self, ino: u64, node: &Node) -> Result<FileAttr> {
        if node.dir && unlinked(&node.path) {
            // Removed while still open (or cached by the kernel): fstat answers, as on a local disk.
            return Ok(self.attr(ino, true, node.perm, 4096, SystemTime::now()));
        }
        if node.dir {
            let modified = self.dirs.modified(&node.path, || {
                Ok::<_, Errno>(self.backing.entry(&node.path).map_err(io_err)?.ok_or(Errno::ENOENT)?.modified)
            })?;
            return Ok(self.attr(ino, true, node.perm, 4096, modified));
        }
        if let Some(w) = self.open.get(ino) {
            let w = w.lock();
            if let Some(d) = &w.data {
                return Ok(self.attr(ino, false, node.perm, d.len() as u64, w.modified));
            }
        }
        if unlinked(&node.path) {
            return Err(Errno::ENOENT);
        }
        let m = self.cache.stat(&node.path).map_err(fs_err)?;
        Ok(self.attr(ino, false, node.perm, m.len, m.modified))
    }

    /// Looks `path` up, counting a kernel reference on success.
    fn lookup_path(&self, path: &str) -> Result<FileAttr> {
        if let Some((ino, node)) = self.inodes.find(path) {
            let mut attr = self.attr_of(ino, &node)?;
            // Forgotten meanwhile, the path gets a new number: the reply must carry the counted one.
            attr.ino = INodeNo(self.inodes.remember(path, node.dir, node.perm));
            return Ok(attr);
        }
        match self.backing.entry(path).map_err(io_err)? {
            Some(e) if e.dir => {
                let ino = self.inodes.remember(path, true, e.perm);
                Ok(self.attr(ino, true, e.perm, 4096, e.modified))
            }
            found => {
                // A file the backing directory has, or one only write-back holds so far.
                let m = self.cache.stat(path).map_err(fs_err)?;
                let perm = found.map_or(FILE_PERM, |e| e.perm);
                let ino = self.inodes.remember(path, false, perm);
                Ok(self.attr(ino, false, perm, m.len, m.modified))
            }
        }
    }

    /// The path of `ino` while it has one: `ENOENT` once it was removed (its handles may live on).
    fn live_path(&self, ino: u64) -> Result<String> {
        let path = self.inodes.path(ino)?;
        if unlinked(&path) { Err(Errno::ENOENT) } else { Ok(path) }
    }

    /// Whether `path` exists, without counting a kernel reference: a directory or a file.
    fn lookup_entry(&self, path: &str) -> Result<bool> {
        match self.backing.entry(path).map_err(io_err)? {
            Some(e) => Ok(e.dir),
            None => self.cache.stat(path).map(|_| false).map_err(fs_err),
        }
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String> {
        let parent = self.inodes.path(parent.0)?;
        if unlinked(&parent) {
            return Err(Errno::ENOENT);
        }
        inodes::join(&parent, name)
    }

    /// Stores a dirty working copy into the `CacheFs` (under the file's current name).
    fn store(&self, ino: u64, w: &mut Working) -> Result<()> {
        if !w.dirty {
            return Ok(());
        }
        let path = self.inodes.path(ino).unwrap_or_default();
        if path.is_empty() || unlinked(&path) {
            w.dirty = false;
            return Ok(());
        }
        let data = Bytes::copy_from_slice(w.data.as_deref().unwrap_or_default());
        self.cache.write(&path, data).map_err(fs_err)?;
        w.dirty = false;
        Ok(())
    }

    /// Stores `ino`'s working copy if it is open and dirty.
    fn store_open(&self, ino: u64) -> Result<()> {
        match self.open.get(ino) {
            Some(w) => self.store(ino, &mut w.lock()),
            None => Ok(()),
        }
    }

    /// Loads the file's content into its working copy, unless it holds it already.
    fn load(&self, ino: u64, w: &mut Working) -> Result<()> {
        if w.data.is_some() {
            return Ok(());
        }
        let path = self.live_path(ino)?;
        let content = match self.cache.read(&path) {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => Bytes::new(),
            Err(e) => return Err(fs_err(e)),
        };
        w.load(&content, &self.open).map_err(|_| Errno::ENOSPC)
    }

    /// Runs a change unless the mount is shutting down (then `EIO`); the shutdown waits for it.
    fn changing<T>(&self, change: impl FnOnce() -> Result<T>) -> Result<T> {
        let closed = self.closed.read_recursive();
        if *closed {
            return Err(Errno::EIO);
        }
        change()
    }

    /// Refuses every change from now on (after those in flight) and stores every working copy.
    pub(crate) fn close(&self) -> std::result::Result<(), Errno> {
        *self.closed.write() = true;
        self.store_all()
    }

    /// Stores every working copy still dirty (the end of the mount: handles the kernel never released).
    pub(crate) fn store_all(&self) -> std::result::Result<(), Errno> {
        let mut first = Ok(());
        for (ino, w) in self.open.all() {
            if let Err(e) = self.store(ino, &mut w.lock()) {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Makes `path`'s latest content the backing directory's (before changing its attributes there).
    fn settle(&self, ino: u64, path: &str) -> Result<()> {
        if unlinked(path) {
            return Err(Errno::ENOENT);
        }
        self.store_open(ino)?;
        if self.write_back {
            self.cache.batch_flush([path]).map_err(fs_err)?;
        }
        Ok(())
    }

    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        let w = self.open.get(ino);
        let (w, opened) = match w {
            Some(w) => (w, None),
            None => {
                let fh = self.open.open(ino);
                (self.open.get(ino).ok_or(Errno::EIO)?, Some(fh))
            }
        };
        let result = (|| {
            let mut g = w.lock();
            if len > 0 {
                self.load(ino, &mut g)?;
            }
            g.set_len(len, &self.open).map_err(|_| Errno::ENOSPC)?;
            if opened.is_some() { self.store(ino, &mut g) } else { Ok(()) }
        })();
        if let Some(fh) = opened {
            self.release_handle(fh);
        }
        result
    }

    /// Closes a handle; the last one stores the working copy (a failure here has no caller left to
    /// hear it: `flush`, which `close` waits for, has already reported the same store).
    fn release_handle(&self, fh: u64) {
        if let Some((ino, Some(w))) = self.open.release(fh) {
            let mut g = w.lock();
            // After the shutdown began, nothing is stored: the shutdown stored every copy, and changes
            // made since were refused.
            if let Err(e) = self.changing(|| self.store(ino, &mut g)) {
                eprintln!("cachefs mount: storing inode {ino} at its last close failed: {e:?}");
            }
            g.discard(&self.open);
        }
    }

    fn set_times(&self, ino: u64, node: &Node, atime: Option<TimeOrNow>, mtime: Option<TimeOrNow>) -> Result<()> {
        let at = |t: Option<TimeOrNow>| {
            t.map(|t| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => SystemTime::now(),
            })
        };
        if !node.dir {
            self.settle(ino, &node.path)?;
        }
        self.backing.set_times(&node.path, at(atime), at(mtime)).map_err(io_err)?;
        self.dirs.touched(&node.path);
        if !node.dir {
            // The cached metadata still has the old time.
            self.cache.invalidate(&node.path).map_err(fs_err)?;
        }
        Ok(())
    }

    fn listing(&self, path: &str) -> Result<Listing> {
        let listed = self.dirs.names(path, || self.backing.list(path).map_err(io_err))?;
        let mut names: BTreeMap<String, bool> = listed.into_iter().collect();
        if self.write_back {
            // Files only write-back holds so far, and the directories they imply.
            for f in self.cache.dirty_files(path).map_err(fs_err)? {
                let rest = if path.is_empty() { &f[..] } else { &f[path.len() + 1..] };
                match rest.split_once('/') {
                    Some((d, _)) => {
                        names.insert(d.to_string(), true);
                    }
                    None => {
                        names.entry(rest.to_string()).or_insert(false);
                    }
                }
            }
        }
        let mut out = vec![(ROOT, FileType::Directory, ".".to_string()), (ROOT, FileType::Directory, "..".to_string())];
        for (name, dir) in names {
            let child = inodes::join(path, OsStr::new(&name)).unwrap_or_default();
            // The number readdir shows is informational; a known inode gives its own.
            let ino = self.inodes.find(&child).map_or(u64::MAX, |(i, _)| i);
            out.push((ino, if dir { FileType::Directory } else { FileType::RegularFile }, name));
        }
        Ok(out)
    }

    fn rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let (from, to) = (self.child(parent, name)?, self.child(new_parent, new_name)?);
        if from == to {
            // POSIX: renaming a file to itself does nothing (once it is known to exist).
            return self.lookup_entry(&from).map(|_| ());
        }
        let source = self.backing.entry(&from).map_err(io_err)?;
        let target = self.backing.entry(&to).map_err(io_err)?;
        let target_file =
            target.is_some_and(|t| !t.dir) || (target.is_none() && self.cache.exists(&to).map_err(fs_err)?);
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && (target.is_some() || target_file) {
            return Err(Errno::EEXIST);
        }
        if source.is_some_and(|s| s.dir) {
            if target_file {
                return Err(Errno::ENOTDIR);
            }
            if within(&to, &from) {
                return Err(Errno::EINVAL);
            }
            // Everything below both goes to the backing directory first (a target holding files only
            // write-back has is not empty); the directory then moves there.
            let mut dirty = self.cache.dirty_files(&from).map_err(fs_err)?;
            dirty.extend(self.cache.dirty_files(&to).map_err(fs_err)?);
            self.cache.batch_flush(dirty).map_err(fs_err)?;
            let moved = self.backing.rename_dir(&from, &to).map_err(io_err);
            self.cache.invalidate_prefix(&from).map_err(fs_err)?;
            self.cache.invalidate_prefix(&to).map_err(fs_err)?;
            self.dirs.changed_below(&from);
            self.dirs.changed_below(&to);
            moved?;
        } else {
            if target.is_some_and(|t| t.dir) {
                return Err(Errno::EISDIR);
            }
            if let Some((ino, _)) = self.inodes.find(&from) {
                self.store_open(ino)?;
            }
            self.orphan(&to)?;
            self.cache.rename(&from, &to).map_err(fs_err)?;
        }
        self.inodes.renamed(&from, &to);
        let ((from_dir, from_name), (to_dir, to_name)) = (split(&from), split(&to));
        self.dirs.removed(from_dir, from_name);
        self.dirs.added(to_dir, to_name, source.is_some_and(|s| s.dir));
        Ok(())
    }

    fn unlink(&self, parent: INodeNo, name: &OsStr) -> Result<()> {
        let path = self.child(parent, name)?;
        if self.backing.entry(&path).map_err(io_err)?.is_some_and(|e| e.dir) {
            return Err(Errno::EISDIR);
        }
        self.orphan(&path)?;
        let removed = self.cache.remove(&path).map_err(fs_err);
        // Whatever happened, the listing may have changed.
        let (dir, name) = split(&path);
        self.dirs.removed(dir, name);
        removed?;
        self.inodes.unlinked(&path);
        Ok(())
    }

    /// `path` is about to be removed or replaced: if it is open, its handles keep reading and writing the
    /// old file (in memory, never stored again), as on a local disk.
    fn orphan(&self, path: &str) -> Result<()> {
        if let Some((ino, _)) = self.inodes.find(path)
            && let Some(w) = self.open.get(ino)
        {
            let mut g = w.lock();
            self.load(ino, &mut g)?;
            g.dirty = false;
        }
        Ok(())
    }

    fn rmdir(&self, parent: INodeNo, name: &OsStr) -> Result<()> {
        let path = self.child(parent, name)?;
        if self.write_back && !self.cache.dirty_files(&path).map_err(fs_err)?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.backing.rmdir(&path).map_err(io_err)?;
        let (dir, name) = split(&path);
        self.dirs.removed(dir, name);
        self.dirs.changed_below(&path);
        self.inodes.unlinked(&path);
        Ok(())
    }

    fn create(&self, parent: INodeNo, name: &OsStr, perm: u16, flags: i32) -> Result<(FileAttr, u64)> {
        let path = self.child(parent, name)?;
        if let Some(e) = self.backing.entry(&path).map_err(io_err)? {
            if e.dir {
                return Err(Errno::EISDIR);
            }
            if flags & libc::O_EXCL != 0 {
                return Err(Errno::EEXIST);
            }
        } else if flags & libc::O_EXCL != 0 && self.cache.exists(&path).map_err(fs_err)? {
            return Err(Errno::EEXIST);
        }
        self.cache.write(&path, Bytes::new()).map_err(fs_err)?;
        let (dir, name) = split(&path);
        self.dirs.added(dir, name, false);
        if perm != FILE_PERM {
            // The mode lives on the backing file (whose later replacements keep it): in write-back the
            // empty file is written out now, so that it never lands with a wider mode.
            if self.write_back {
                self.cache.batch_flush([&path]).map_err(fs_err)?;
            }
            self.backing.set_perm(&path, u32::from(perm)).map_err(io_err)?;
        }
        let ino = self.inodes.remember(&path, false, perm);
        let fh = self.open.open(ino);
        self.open.get(ino).ok_or(Errno::EIO)?.lock().load(&[], &self.open).map_err(|_| Errno::ENOSPC)?;
        Ok((self.attr(ino, false, perm, 0, SystemTime::now()), fh))
    }

    fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Bytes> {
        if let Some(w) = self.open.get(ino) {
            let w = w.lock();
            if let Some(d) = &w.data {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(d.len());
                let end = start.saturating_add(size as usize).min(d.len());
                return Ok(Bytes::copy_from_slice(&d[start..end]));
            }
        }
        let path = self.live_path(ino)?;
        self.cache.read_range(&path, offset, u64::from(size)).map_err(fs_err)
    }

    fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        let w = self.open.get(ino).ok_or(Errno::EBADF)?;
        let mut g = w.lock();
        self.load(ino, &mut g)?;
        g.write_at(offset, data, &self.open).map_err(|_| Errno::ENOSPC)
    }
}

fn within(path: &str, dir: &str) -> bool {
    inodes::within(path, dir)
}

impl Filesystem for MountedFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let s = &self.0;
        match s.child(parent, name).and_then(|p| s.lookup_path(&p)) {
            Ok(attr) => reply.entry(&s.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = &self.0;
        match s.inodes.get(ino.0).and_then(|n| s.attr_of(ino.0, &n)) {
            Ok(attr) => reply.attr(&s.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let s = &self.0;
        let result = s.changing(|| {
            let node = s.inodes.get(ino.0)?;
            if uid.is_some_and(|u| u != s.uid) || gid.is_some_and(|g| g != s.gid) {
                return Err(Errno::EPERM);
            }
            if let Some(len) = size {
                if node.dir {
                    return Err(Errno::EISDIR);
                }
                s.set_len(ino.0, len)?;
            }
            // A removed file still open: its mode lives on in memory, its times are its writes'.
            let removed = unlinked(&node.path);
            if let Some(mode) = mode {
                let perm = (mode & 0o7777) as u16;
                if !removed {
                    if !node.dir {
                        s.settle(ino.0, &node.path)?;
                    }
                    s.backing.set_perm(&node.path, u32::from(perm)).map_err(io_err)?;
                }
                s.inodes.set_perm(ino.0, perm);
            }
            if (atime.is_some() || mtime.is_some()) && !removed {
                s.set_times(ino.0, &node, atime, mtime)?;
            }
            s.attr_of(ino.0, &s.inodes.get(ino.0)?)
        });
        match result {
            Ok(attr) => reply.attr(&s.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let s = &self.0;
        let result = s.changing(|| {
            let path = s.child(parent, name)?;
            s.backing.mkdir(&path, mode & !umask & 0o7777).map_err(io_err)?;
            let (dir, name) = split(&path);
            s.dirs.added(dir, name, true);
            s.lookup_path(&path)
        });
        match result {
            Ok(attr) => reply.entry(&s.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.changing(|| self.0.unlink(parent, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.changing(|| self.0.rmdir(parent, name)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.0.changing(|| self.0.rename(parent, name, newparent, newname, flags)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.0;
        let result = (|| {
            let node = s.inodes.get(ino.0)?;
            if node.dir {
                return Err(Errno::EISDIR);
            }
            s.attr_of(ino.0, &node)?;
            let fh = s.open.open(ino.0);
            if flags.0 & libc::O_TRUNC != 0 && flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
                let truncated = s.changing(|| {
                    let w = s.open.get(ino.0).ok_or(Errno::EIO)?;
                    w.lock().set_len(0, &s.open).map_err(|_| Errno::ENOSPC)
                });
                if let Err(e) = truncated {
                    s.release_handle(fh);
                    return Err(e);
                }
            }
            Ok(fh)
        })();
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(ino.0, offset, size) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.0.changing(|| self.0.write(ino.0, offset, data)) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match self.0.changing(|| self.0.store_open(ino.0)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0.release_handle(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let s = &self.0;
        let result = s.changing(|| {
            let path = s.inodes.path(ino.0)?;
            if unlinked(&path) { s.store_open(ino.0) } else { s.settle(ino.0, &path) }
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let s = &self.0;
        let result = s.inodes.get(ino.0).and_then(|n| if n.dir { s.listing(&n.path) } else { Err(Errno::ENOTDIR) });
        match result {
            Ok(list) => {
                let fh = {
                    let mut next = s.next_dir.lock();
                    *next += 1;
                    *next
                };
                s.listings.lock().insert(fh, list);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let listings = self.0.listings.lock();
        let Some(list) = listings.get(&fh.0) else { return reply.error(Errno::EBADF) };
        for (i, (ino, kind, name)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.0.listings.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directory changes (create, remove, rename, mkdir) reach the backing directory before they are
        // acknowledged; file contents are made durable by the files' own fsync.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.0.backing.statfs() {
            Ok(v) => reply.statfs(
                v.f_blocks,
                v.f_bfree,
                v.f_bavail,
                v.f_files,
                v.f_ffree,
                v.f_bsize as u32,
                v.f_namemax as u32,
                v.f_frsize as u32,
            ),
            Err(e) => reply.error(io_err(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (`default_permissions`).
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let s = &self.0;
        match s.changing(|| s.create(parent, name, (mode & !umask & 0o7777) as u16, flags)) {
            Ok((attr, fh)) => reply.created(&s.ttl, &attr, Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}
