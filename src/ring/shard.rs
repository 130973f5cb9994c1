//! The ring's files: creating them preallocated, checking them against their headers, the writer's lock.
//!
//! Creation preallocates every file with `fallocate`, so a full device fails the open with
//! [`Error::StorageFull`] instead of a `SIGBUS` in a later mapped write; it writes each header page last
//! (shard 0's after all others) and syncs the files and the directory before the ring is used. A header
//! page that is still blank therefore means a creation that never finished, and the ring is created
//! again; anything else that does not check out is an error, and nothing is changed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Error;
use super::geometry::{HEADER_BYTES, Layout};
use super::header::{HeaderProblem, ShardHeader};

/// One open shard file.
#[derive(Debug)]
pub(crate) struct ShardFile {
    path: PathBuf,
    file: File,
}

/// All shard files of a ring, in order, with the layout they were checked against.
#[derive(Debug)]
pub(crate) struct Shards {
    layout: Layout,
    files: Vec<ShardFile>,
    nonce: u64,
    /// The writer's lock (writers only), held for its `Drop`: released when the shards go.
    _lock: Option<WriterLock>,
}

impl ShardFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn datasync(&self) -> Result<(), Error> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Opens `path` for reading, and for writing if `write` (creating it if `create`).
fn open_file(path: &Path, write: bool, create: bool) -> Result<File, Error> {
    OpenOptions::new().read(true).write(write).create(create).open(path).map_err(|e| Error::io(path, e))
}

fn len_of(file: &File, path: &Path) -> Result<u64, Error> {
    file.metadata().map(|m| m.len()).map_err(|e| Error::io(path, e))
}

/// The first `HEADER_BYTES` of `file`, or fewer if it is shorter.
fn read_header_page(file: &File, path: &Path) -> Result<Vec<u8>, Error> {
    let mut page = vec![0u8; HEADER_BYTES as usize];
    let mut n = 0;
    while n < page.len() {
        match file.read_at(&mut page[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    page.truncate(n);
    Ok(page)
}

/// The writer's exclusive advisory lock on shard 0 (`flock`), held on a descriptor of its own and
/// released when this is dropped (or by a crash: the kernel drops it with the process).
///
/// Released explicitly (`LOCK_UN`), not left to the files' close: a child process that another thread is
/// spawning holds a copy of every descriptor until it execs (they are close-on-exec), the lock lives as
/// long as any copy of its open file description does, and a writer reopened right after a close found
/// the ring `Locked`.
#[derive(Debug)]
struct WriterLock(File);

impl WriterLock {
    /// Takes the lock on `file`'s open file description. Fails with `Locked` if another description holds
    /// it, in this process or another.
    fn take(file: &File, path: &Path) -> Result<WriterLock, Error> {
        let file = file.try_clone().map_err(|e| Error::io(path, e))?;
        loop {
            // SAFETY: `flock` on a valid, open descriptor owned by `file`; it touches no memory.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r == 0 {
                return Ok(WriterLock(file));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Err(Error::Locked { path: path.to_path_buf() }),
                _ => return Err(Error::io(path, e)),
            }
        }
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // SAFETY: `flock` on the valid descriptor this owns; it touches no memory. Unlocking a description
        // releases the lock for every copy of it. Nothing to do on failure: the close that follows
        // releases it too, once no copy is left.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Reserves `len` bytes of disk for `file` (which is empty): `fallocate`, or `posix_fallocate` where the
/// filesystem does not support it.
fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), Error> {
    let len = libc::off_t::try_from(len).map_err(|_| Error::invalid(format!("{} bytes is too large a file", len)))?;
    loop {
        // SAFETY: `fallocate` on a valid, open descriptor; mode 0 only allocates and extends the size.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) => break,
            _ => return Err(Error::io(path, e)),
        }
    }
    // SAFETY: as above; `posix_fallocate` returns the error number instead of setting errno.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        errno => Err(Error::io(path, io::Error::from_raw_os_error(errno))),
    }
}

fn sync_dir(path: &Path) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// A fresh random nonce for a new ring (from the standard library's randomly keyed hasher).
fn new_nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// The shard count in the header of a ring still being created (no complete ring has none).
const CREATING: u32 = 0;

impl Shards {
    /// Opens the ring at `base` for writing, creating it with `layout` if it does not exist (or its
    /// creation never finished), and takes the writer's lock.
    pub(crate) fn open_writer(base: &Path, layout: Layout) -> Result<Shards, Error> {
        let existed = base.exists();
        let file = open_file(base, true, true)?;
        let lock = WriterLock::take(&file, base)?;
        let len = len_of(&file, base)?;
        let page = read_header_page(&file, base)?;
        let created = |result: Result<Shards, Error>| {
            // A creation that failed (a full device) leaves nothing behind: not even shard 0, if this
            // open made it.
            if result.is_err() && !existed {
                let _ = std::fs::remove_file(base);
            }
            result
        };
        let shards = match ShardHeader::decode(&page) {
            // An unfinished creation (`create` marks shard 0 first): start it again.
            Ok(h) if h.shards == CREATING => created(Shards::create(base, file, layout)),
            Ok(h) => {
                if h.geometry != layout.geometry() {
                    return Err(Error::GeometryMismatch {
                        path: base.to_path_buf(),
                        requested: layout.geometry(),
                        found: h.geometry,
                    });
                }
                Shards::check(base, file, h, layout, true)
            }
            // Only an empty file is new. A zero header page on a file with content is a damaged ring or
            // somebody else's file: refused, never overwritten.
            Err(_) if len == 0 => created(Shards::create(base, file, layout)),
            Err(problem) => Err(problem.into_error(base)),
        };
        shards.map(|shards| Shards { _lock: Some(lock), ..shards })
    }

    /// Opens the existing ring at `base` read-only; its geometry comes from its header.
    pub(crate) fn open_reader(base: &Path) -> Result<Shards, Error> {
        let file = open_file(base, false, false)?;
        let page = read_header_page(&file, base)?;
        let h = ShardHeader::decode(&page).map_err(|p| p.into_error(base))?;
        let layout = Layout::new(h.geometry)
            .map_err(|_| Error::BadHeader { path: base.to_path_buf(), reason: "the header's geometry is invalid" })?;
        Shards::check(base, file, h, layout, false)
    }

    /// Checks an existing ring's files against shard 0's header `h`.
    fn check(base: &Path, file0: File, h: ShardHeader, layout: Layout, write: bool) -> Result<Shards, Error> {
        let bad = |path: &Path, reason| Error::BadHeader { path: path.to_path_buf(), reason };
        if h.index != 0 {
            return Err(bad(base, "shard 0's header names another shard index"));
        }
        if h.shards != layout.shards() {
            return Err(bad(base, "the header's shard count does not match its geometry"));
        }
        let mut files = Vec::with_capacity(layout.shards() as usize);
        for i in 0..layout.shards() {
            let path = Layout::shard_path(base, i);
            let expected = layout.shard_len(i).expect("checked by Layout::new");
            let file = if i == 0 {
                file0.try_clone().map_err(|e| Error::io(&path, e))?
            } else {
                match open_file(&path, write, false) {
                    Ok(f) => f,
                    Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                        return Err(Error::FileTooShort { path, expected, found: 0 });
                    }
                    Err(e) => return Err(e),
                }
            };
            let found = len_of(&file, &path)?;
            if found < expected {
                return Err(Error::FileTooShort { path, expected, found });
            }
            if i > 0 {
                let page = read_header_page(&file, &path)?;
                let s = ShardHeader::decode(&page).map_err(|p| p.into_error(&path))?;
                if s.index != i || s.shards != h.shards || s.geometry != h.geometry || s.nonce != h.nonce {
                    return Err(bad(&path, "this shard belongs to another ring or another position"));
                }
            }
            files.push(ShardFile { path, file });
        }
        drop(file0);
        Ok(Shards { layout, files, nonce: h.nonce, _lock: None })
    }

    /// Creates every shard file of a new ring. Shard 0 (`file0`, locked, empty or marked as being
    /// created) is first marked as being created (a valid header with no shards, made durable), and gets
    /// its real header last: a crash anywhere leaves a file the next open recognises as unfinished and
    /// creates again, while a file with a zero header page is never taken for one. A shard path already
    /// holding a file that is not a ring shard (or a blank leftover of an unfinished creation) is refused,
    /// never overwritten. On failure, removes the files it created and empties shard 0.
    fn create(base: &Path, file0: File, layout: Layout) -> Result<Shards, Error> {
        let nonce = new_nonce();
        let mut files: Vec<ShardFile> = Vec::with_capacity(layout.shards() as usize);
        let mut created: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let marker = ShardHeader { geometry: layout.geometry(), index: 0, shards: CREATING, nonce };
            file0.set_len(0).map_err(|e| Error::io(base, e))?;
            file0.write_all_at(&marker.encode(), 0).map_err(|e| Error::io(base, e))?;
            file0.sync_all().map_err(|e| Error::io(base, e))?;
            for i in 1..layout.shards() {
                let path = Layout::shard_path(base, i);
                if path.exists() {
                    let other = open_file(&path, false, false)?;
                    let page = read_header_page(&other, &path)?;
                    if !page.is_empty() && matches!(ShardHeader::decode(&page), Err(p) if p != HeaderProblem::Blank) {
                        return Err(Error::BadHeader {
                            path: path.clone(),
                            reason: "a file that is not a shard of a ring is in the way of a new ring's shard",
                        });
                    }
                } else {
                    created.push(path.clone());
                }
                let file = open_file(&path, true, true)?;
                file.set_len(0).map_err(|e| Error::io(&path, e))?;
                files.push(ShardFile { path, file });
            }
            files.insert(
                0,
                ShardFile { path: base.to_path_buf(), file: file0.try_clone().map_err(|e| Error::io(base, e))? },
            );
            for (i, shard) in files.iter().enumerate() {
                // Shard 0 holds its marker page: preallocated from its length on.
                preallocate(&shard.file, &shard.path, layout.shard_len(i as u32).expect("checked"))?;
            }
            // Headers last, shard 0's very last: a blank shard 0 header means an unfinished creation.
            for (i, shard) in files.iter().enumerate().rev() {
                let header =
                    ShardHeader { geometry: layout.geometry(), index: i as u32, shards: layout.shards(), nonce };
                if i == 0 {
                    for s in &files[1..] {
                        s.file.sync_all().map_err(|e| Error::io(&s.path, e))?;
                    }
                }
                shard.file.write_all_at(&header.encode(), 0).map_err(|e| Error::io(&shard.path, e))?;
            }
            files[0].file.sync_all().map_err(|e| Error::io(base, e))?;
            sync_dir(base)
        })();
        match result {
            Ok(()) => Ok(Shards { layout, files, nonce, _lock: None }),
            Err(e) => {
                for path in &created {
                    let _ = std::fs::remove_file(path);
                }
                let _ = file0.set_len(0);
                Err(e)
            }
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    pub(crate) fn nonce(&self) -> u64 {
        self.nonce
    }

    pub(crate) fn get(&self, i: u32) -> &ShardFile {
        &self.files[i as usize]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ShardFile> {
        self.files.iter()
    }

    /// The paths of the files, shard 0 first.
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Geometry;

    fn layout(records: u64) -> Layout {
        Layout::new(Geometry { records, record_size: 64, shard_bytes: 4096 + 640 }).unwrap()
    }

    #[test]
    fn creates_preallocated_shards_and_reopens_them() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("ring.dat");
        let s = Shards::open_writer(&base, layout(25)).unwrap();
        assert_eq!(s.paths().len(), 3);
        for (i, f) in s.iter().enumerate() {
            assert_eq!(std::fs::metadata(f.path()).unwrap().len(), 4096 + [640, 640, 320][i]);
        }
        let nonce = s.nonce();
        assert!(matches!(Shards::open_writer(&base, layout(25)), Err(Error::Locked { .. })));
        drop(s);
        let again = Shards::open_writer(&base, layout(25)).unwrap();
        assert_eq!(again.nonce(), nonce, "reopened, not recreated");
        let reader = Shards::open_reader(&base).unwrap();
        assert_eq!(reader.layout(), layout(25));
    }

    #[test]
    fn wrong_files_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("ring.dat");
        drop(Shards::open_writer(&base, layout(25)).unwrap());
        let e = Shards::open_writer(&base, layout(26)).unwrap_err();
        assert!(matches!(e, Error::GeometryMismatch { .. }), "{e}");
        // Another ring's shard in position 1.
        let other = dir.path().join("other.dat");
        drop(Shards::open_writer(&other, layout(25)).unwrap());
        let one = Layout::shard_path(&base, 1);
        let saved = std::fs::read(&one).unwrap();
        std::fs::copy(Layout::shard_path(&other, 1), &one).unwrap();
        assert!(matches!(Shards::open_reader(&base), Err(Error::BadHeader { .. })));
        std::fs::write(&one, &saved).unwrap();
        // A missing and a truncated shard.
        std::fs::remove_file(Layout::shard_path(&base, 2)).unwrap();
        assert!(matches!(Shards::open_reader(&base), Err(Error::FileTooShort { found: 0, .. })));
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a ring").unwrap();
        assert!(matches!(Shards::open_writer(&text, layout(25)), Err(Error::BadHeader { .. })));
        assert_eq!(std::fs::read_to_string(&text).unwrap(), "not a ring", "left untouched");
    }

    #[test]
    fn an_unfinished_creation_is_created_again_and_a_blank_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("ring.dat");
        // What a crash mid-creation leaves: shard 0 marked as being created, maybe partly preallocated.
        let marker = ShardHeader { geometry: layout(25).geometry(), index: 0, shards: CREATING, nonce: 7 };
        let mut page = marker.encode();
        page.resize(4096 + 100, 0);
        std::fs::write(&base, &page).unwrap();
        let s = Shards::open_writer(&base, layout(25)).unwrap();
        assert_eq!(std::fs::metadata(&base).unwrap().len(), 4096 + 640);
        drop(s);
        assert!(Shards::open_reader(&base).is_ok());
        // A file whose first page is zero is a damaged ring or somebody else's: refused, unchanged.
        let blank = dir.path().join("blank.dat");
        let mut content = vec![0u8; 4096];
        content.extend_from_slice(b"precious data");
        std::fs::write(&blank, &content).unwrap();
        assert!(matches!(Shards::open_writer(&blank, layout(25)), Err(Error::BadHeader { .. })));
        assert_eq!(std::fs::read(&blank).unwrap(), content, "left untouched");
    }

    #[test]
    fn a_file_in_the_way_of_a_new_shard_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("app.log");
        let rotated = Layout::shard_path(&base, 1);
        std::fs::write(&rotated, b"yesterday's log").unwrap();
        assert!(matches!(Shards::open_writer(&base, layout(25)), Err(Error::BadHeader { .. })));
        assert_eq!(std::fs::read(&rotated).unwrap(), b"yesterday's log");
        assert!(!base.exists(), "the failed creation removed the shard 0 it made");
    }
}
