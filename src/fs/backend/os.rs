//! A backend rooted at a directory on the local file system.
//!
//! Writes are atomic and durable: the data goes to a temporary file in the target's directory, is
//! fsynced, renamed over the real name, and then every directory whose entries changed is fsynced: the
//! target's, and the parent of each directory the write created. A crash leaves either the old file or
//! the new one under the real name, never a prefix. Temporary files have unpredictable names (a retry
//! picks another on a collision) that carry [`TEMP_MARKER`]; `list` skips them, paths containing the
//! marker are refused, and [`OsBackend::remove_temp_files`] clears ones a crash left.
//!
//! [`check`](Backend::check) refuses every path `write` would refuse for its shape: over the kernel's
//! path-length limit (for the temporary file too), a reserved name, a symlink leading outside the root,
//! a file where a directory is needed, or a directory where the file should go. So a write it accepts
//! can fail later only through I/O faults (or someone else changing the tree).
//!
//! Every path is checked again here (callers may use the backend directly), and each existing component
//! is inspected: a symlink is followed only if it resolves inside the root. The check and the open are
//! separate system calls, so a process that can swap directories under the root while we work could
//! race it; the root is meant to be owned by the service.

use std::collections::HashSet;
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tempfile::NamedTempFile;

use super::{Backend, Metadata};
use crate::fs::error::Error;
use crate::fs::path::canonical;
use crate::sync::RwLock;

/// Part of the name of every temporary file a write creates.
pub const TEMP_MARKER: &str = ".cachefs-tmp.";

/// Longest path the kernel accepts, counting the terminating NUL.
const PATH_MAX: usize = libc::PATH_MAX as usize;
/// How much of the target's name a temporary's name repeats (for whoever looks at the directory).
const TEMP_NAME_HINT: usize = 32;
/// Random characters in a temporary's name.
const TEMP_RANDOM: usize = 12;
/// Longest name of a temporary: `.`, the hint, the marker, the random part.
const TEMP_NAME_MAX: usize = 1 + TEMP_NAME_HINT + TEMP_MARKER.len() + TEMP_RANDOM;

/// Files under one directory. See the module docs for durability and path safety.
#[derive(Debug)]
pub struct OsBackend {
    /// Canonical (symlink-free, absolute) root.
    root: PathBuf,
    /// Directories whose components `check` has walked, so that write-back does not walk the same
    /// directories on every write (the target itself is always inspected). Only `check` trusts it:
    /// every actual operation resolves the path again, so a symlink swapped in later is still refused
    /// there. Cleared when it reaches [`CHECKED_DIRS`] entries.
    checked_dirs: RwLock<HashSet<Box<str>>>,
}

/// Most directories `OsBackend::check` remembers.
const CHECKED_DIRS: usize = 10_000;

impl OsBackend {
    /// A backend over `root`, creating the directory if it does not exist.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref();
        let name = || root.display().to_string();
        fs::create_dir_all(root).map_err(|e| Error::io(name(), e))?;
        let root = root.canonicalize().map_err(|e| Error::io(name(), e))?;
        Ok(OsBackend { root, checked_dirs: RwLock::default() })
    }

    /// The root directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes temporary files that interrupted writes left below the root; returns how many.
    /// Only safe while no other process writes through a backend on the same root.
    pub fn remove_temp_files(&self) -> Result<u64, Error> {
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in read_dir(&dir, "")? {
                let (path, kind) = entry;
                if kind.is_dir() {
                    stack.push(path);
                } else if is_temp(&path) {
                    fs::remove_file(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The on-disk location of `path`, after checking it and every existing component on the way: a
    /// symlink must resolve inside the root.
    fn resolve(&self, path: &str, allow_root: bool) -> Result<PathBuf, Error> {
        let rel = canonical(path, allow_root)?;
        self.walk(path, &rel)?;
        Ok(self.root.join(&*rel))
    }

    /// Inspects each existing component of `rel` (canonical) in turn.
    fn walk(&self, path: &str, rel: &str) -> Result<(), Error> {
        let mut at = self.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = at.canonicalize().map_err(|e| Error::io(path, e))?;
                    if !target.starts_with(&self.root) {
                        return Err(Error::InvalidPath {
                            path: path.to_string(),
                            reason: "a symlink leads outside the root",
                        });
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(())
    }

    /// Where a file `path` would be written, after checking everything the write will meet (see the
    /// module docs). With `remember`, directories walked before are trusted (for `check`).
    fn file_target(&self, path: &str, remember: bool) -> Result<PathBuf, Error> {
        let rel = canonical(path, false)?;
        let invalid = |reason| Error::InvalidPath { path: path.to_string(), reason };
        if rel.contains(TEMP_MARKER) {
            return Err(invalid("names containing `.cachefs-tmp.` are reserved for temporary files"));
        }
        let target = self.root.join(&*rel);
        let dir = target.parent().unwrap_or(&self.root);
        if target.as_os_str().len() >= PATH_MAX || dir.as_os_str().len() + 1 + TEMP_NAME_MAX >= PATH_MAX {
            return Err(invalid("longer than the file system's path limit"));
        }
        let rel_dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        if !(remember && self.checked_dirs.read().contains(rel_dir)) {
            self.walk(path, rel_dir)?;
            if remember {
                let mut dirs = self.checked_dirs.write();
                if dirs.len() >= CHECKED_DIRS {
                    dirs.clear();
                }
                dirs.insert(rel_dir.into());
            }
        }
        // One `lstat` answers for anything but a symlink; a symlink is walked (it must stay inside
        // the root) and then followed.
        let meta = match fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                self.walk(path, &rel)?;
                fs::metadata(&target)
            }
            other => other,
        };
        match meta {
            Ok(m) if m.is_dir() => Err(Error::NotAFile { path: path.to_string() }),
            Ok(_) => Ok(target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(target),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn open(&self, path: &str) -> Result<(File, u64), Error> {
        let at = self.resolve(path, false)?;
        let file = File::open(&at).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        Ok((file, meta.len()))
    }

    /// A new temporary file beside `target`, whose directory (and any missing above it) is created;
    /// returns it with the directories whose entries changed by that creation.
    fn temp_for(&self, target: &Path) -> io::Result<(NamedTempFile, Vec<PathBuf>)> {
        let dir = target.parent().unwrap_or(&self.root);
        let changed = create_dirs(dir)?;
        let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let hint = name.char_indices().map(|(i, c)| i + c.len_utf8()).take_while(|&end| end <= TEMP_NAME_HINT).last();
        let prefix = format!(".{}{TEMP_MARKER}", &name[..hint.unwrap_or(0)]);
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(TEMP_RANDOM)
            // As `File::create` would: the umask decides.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)?;
        Ok((temp, changed))
    }

    fn write_atomically(&self, target: &Path, data: &[u8], modified: Option<SystemTime>) -> io::Result<()> {
        let (mut temp, created) = self.temp_for(target)?;
        temp.write_all(data)?;
        if let Some(m) = modified {
            temp.as_file().set_times(fs::FileTimes::new().set_modified(m))?;
        }
        // On any failure the temporary is removed when `temp` drops; the real name was not touched
        // unless the rename succeeded, in which case only a directory sync failed.
        commit(temp, target, &created)
    }
}

/// Creates `dir` and any missing directory above it; returns the directories whose entries changed
/// (the parent of each directory created), which must be fsynced for the new ones to be durable.
fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = dir;
    while fs::symlink_metadata(at).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        missing.push(at);
        let Some(parent) = at.parent() else { break };
        at = parent;
    }
    let mut changed = Vec::new();
    for created in missing.into_iter().rev() {
        match fs::create_dir(created) {
            Ok(()) => changed.extend(created.parent().map(Path::to_path_buf)),
            // Created meanwhile by another write: its writer syncs it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && created.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(changed)
}

/// Fsyncs `temp`, renames it over `target`, then fsyncs the target's directory and `created` (the
/// directories whose entries the write changed on the way).
fn commit(temp: NamedTempFile, target: &Path, created: &[PathBuf]) -> io::Result<()> {
    // A replaced file keeps its permission bits (a private file stays private).
    if let Ok(old) = fs::symlink_metadata(target)
        && old.is_file()
    {
        temp.as_file().set_permissions(old.permissions())?;
    }
    temp.as_file().sync_all()?;
    temp.persist(target).map_err(|e| e.error)?;
    sync_dir(target.parent().unwrap_or(Path::new(".")))?;
    created.iter().try_for_each(|d| sync_dir(d))
}

/// A file streamed to a temporary beside its target (from [`OsBackend`]'s `create`). Dropped
/// uncommitted, the temporary goes and the target keeps its old content.
#[derive(Debug)]
struct OsFile {
    temp: NamedTempFile,
    created: Vec<PathBuf>,
    target: PathBuf,
    path: String,
}

impl Write for OsFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.temp.write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

impl Seek for OsFile {
    fn seek(&mut self, from: io::SeekFrom) -> io::Result<u64> {
        self.temp.seek(from)
    }
}

impl super::BackendFile for OsFile {
    fn commit(self: Box<Self>) -> Result<(), Error> {
        let OsFile { temp, created, target, path } = *self;
        commit(temp, &target, &created).map_err(|e| Error::io(path, e))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    tests::SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    File::open(dir)?.sync_all()
}

fn is_temp(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().contains(TEMP_MARKER))
}

/// Entries of `dir` with their (unfollowed) types; `rel` names `dir` in errors.
fn read_dir(dir: &Path, rel: &str) -> Result<Vec<(PathBuf, fs::FileType)>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(rel, e))? {
        let entry = entry.map_err(|e| Error::io(rel, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(rel, e))?;
        out.push((entry.path(), kind));
    }
    Ok(out)
}

impl Backend for OsBackend {
    fn read(&self, path: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
        let (mut file, len) = self.open(path)?;
        buf.reserve(usize::try_from(len).unwrap_or(0));
        file.read_to_end(buf).map_err(|e| Error::io(path, e))?;
        Ok(())
    }

    fn read_range(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let (file, _) = self.open(path)?;
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(filled)
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        let target = self.file_target(path, false)?;
        self.write_atomically(&target, data, None).map_err(|e| Error::io(path, e))
    }

    fn write_modified(&self, path: &str, data: &[u8], modified: SystemTime) -> Result<(), Error> {
        let target = self.file_target(path, false)?;
        self.write_atomically(&target, data, Some(modified)).map_err(|e| Error::io(path, e))
    }

    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        let at = self.resolve(path, false)?;
        let meta = fs::metadata(&at).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        let modified = meta.modified().map_err(|e| Error::io(path, e))?;
        Ok(Metadata { len: meta.len(), modified })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, Error> {
        let start = self.resolve(dir, true)?;
        let rel = canonical(dir, true)?.into_owned();
        let mut out = Vec::new();
        let mut stack = vec![(start, rel)];
        while let Some((at, rel)) = stack.pop() {
            let entries = match read_dir(&at, &rel) {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            for (path, kind) in entries {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
                let child = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
                // Symlinks are not followed while listing: they could loop or lead outside the root.
                if kind.is_dir() {
                    stack.push((path, child));
                } else if kind.is_file() && !is_temp(&path) {
                    out.push(child);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove(&self, path: &str) -> Result<(), Error> {
        let at = self.resolve(path, false)?;
        if at.is_dir() {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        fs::remove_file(&at).map_err(|e| Error::io(path, e))
    }

    fn remove_all(&self, dir: &str) -> Result<u64, Error> {
        let at = self.resolve(dir, true)?;
        // A file is removed as `rm -r` would (one file); a symlink is removed, not followed.
        if let Ok(m) = fs::symlink_metadata(&at)
            && !m.is_dir()
            && at != self.root
        {
            fs::remove_file(&at).map_err(|e| Error::io(dir, e))?;
            return Ok(u64::from(m.is_file()));
        }
        let files = self.list(dir)?.len() as u64;
        if at == self.root {
            for (path, kind) in read_dir(&at, dir)? {
                let r = if kind.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                r.map_err(|e| Error::io(path.display().to_string(), e))?;
            }
        } else {
            match fs::symlink_metadata(&at) {
                Ok(_) => fs::remove_dir_all(&at).map_err(|e| Error::io(dir, e))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io(dir, e)),
            }
        }
        Ok(files)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (src, dst) = (self.resolve(from, false)?, self.file_target(to, false)?);
        if !src.is_file() {
            return Err(Error::io(from, io::Error::from(io::ErrorKind::NotFound)));
        }
        let (src_dir, dst_dir) = (src.parent().unwrap_or(&self.root), dst.parent().unwrap_or(&self.root));
        let created = create_dirs(dst_dir).map_err(|e| Error::io(to, e))?;
        fs::rename(&src, &dst).map_err(|e| Error::io(from, e))?;
        // Both directories' entries changed, and any directory the move created.
        let sync = |d: &Path| sync_dir(d).map_err(|e| Error::io(to, e));
        sync(dst_dir)?;
        if src_dir != dst_dir {
            sync(src_dir)?;
        }
        created.iter().try_for_each(|d| sync(d))
    }

    fn create(&self, path: &str) -> Result<Box<dyn super::BackendFile + '_>, Error> {
        let target = self.file_target(path, false)?;
        let (temp, created) = self.temp_for(&target).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(OsFile { temp, created, target, path: path.to_string() }))
    }

    fn check(&self, path: &str) -> Result<(), Error> {
        self.file_target(path, true).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// Directories this thread fsynced, in order.
        pub(super) static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    fn synced() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }

    /// Defect 9 (issue 11): only the file's own directory was fsynced, so a directory the write created
    /// could vanish in a crash together with the file in it.
    #[test]
    fn writes_fsync_every_directory_whose_entries_they_changed() {
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        let root = b.root().to_path_buf();
        synced();
        b.write("a/b/c/f", b"x").unwrap();
        let mut got = synced();
        got.sort();
        assert_eq!(got, [root.clone(), root.join("a"), root.join("a/b"), root.join("a/b/c")]);
        b.write("a/b/c/g", b"y").unwrap();
        assert_eq!(synced(), [root.join("a/b/c")], "nothing else was created");
        let mut w = b.create("d/e/f").unwrap();
        w.write_all(b"z").unwrap();
        w.commit().unwrap();
        let mut got = synced();
        got.sort();
        assert_eq!(got, [root.clone(), root.join("d"), root.join("d/e")]);
        b.rename("a/b/c/f", "x/y").unwrap();
        let mut got = synced();
        got.sort();
        assert_eq!(
            got,
            [root.clone(), root.join("a/b/c"), root.join("x")],
            "source, target and the new directory's parent"
        );
    }

    #[test]
    fn check_refuses_what_write_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        b.write("file", b"x").unwrap();
        b.write("dir/inner", b"x").unwrap();
        let long = format!("{}/f", vec!["d".repeat(200); 22].join("/"));
        let reserved = format!("a/x{TEMP_MARKER}y");
        for p in ["file/child", "dir", long.as_str(), reserved.as_str(), "../x"] {
            let checked = b.check(p);
            let written = b.write(p, b"y");
            assert!(checked.is_err() && written.is_err(), "{p}: {checked:?} / {written:?}");
            assert_eq!(std::mem::discriminant(&checked.unwrap_err()), std::mem::discriminant(&written.unwrap_err()));
        }
        assert!(matches!(b.check("file/child"), Err(Error::NotADirectory { .. })));
        assert!(matches!(b.check("dir"), Err(Error::NotAFile { .. })));
        // The deepest path the limit allows still works, its temporary included.
        let room = PATH_MAX - 1 - b.root().as_os_str().len() - 1;
        let mut deep = String::new();
        while deep.len() + 201 + 2 + TEMP_NAME_MAX < room {
            deep.push_str(&"d".repeat(200));
            deep.push('/');
        }
        deep.push('f');
        b.check(&deep).unwrap();
        b.write(&deep, b"deep").unwrap();
        let name = "n".repeat(255);
        b.check(&name).unwrap();
        b.write(&name, b"long name").unwrap();
        // A directory remembered by `check` that became a file is still caught.
        b.check("gone/f").unwrap();
        b.write("gone", b"now a file").unwrap();
        assert!(matches!(b.check("gone/f"), Err(Error::NotADirectory { .. })));
        assert_eq!(b.remove_temp_files().unwrap(), 0);
    }

    #[test]
    fn writes_are_atomic_and_listed_without_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        b.write("a/b/c.bin", b"abc").unwrap();
        b.write("a/b/c.bin", b"abcd").unwrap();
        fs::write(dir.path().join("a/b/.c.bin.cachefs-tmp.1.1"), b"ab").unwrap();
        assert!(matches!(b.write("a/b/.c.bin.cachefs-tmp.x", b"x"), Err(Error::InvalidPath { .. })));
        assert_eq!(b.list("").unwrap(), ["a/b/c.bin"]);
        assert_eq!(b.stat("a/b/c.bin").unwrap().len, 4);
        let mut buf = vec![0; 8];
        assert_eq!(b.read_range("a/b/c.bin", 2, &mut buf).unwrap(), 2);
        assert_eq!(b.remove_temp_files().unwrap(), 1);
        assert!(matches!(b.stat("a"), Err(Error::NotAFile { .. })));
        assert!(matches!(b.write("a", b"x"), Err(Error::NotAFile { .. })));
        assert!(matches!(b.remove("a"), Err(Error::NotAFile { .. })));
        b.rename("a/b/c.bin", "d").unwrap();
        assert!(b.stat("a/b/c.bin").unwrap_err().is_not_found());
        assert!(b.rename("nope", "e").unwrap_err().is_not_found());
        assert_eq!(b.remove_all("a").unwrap(), 0);
        b.write("lone", b"x").unwrap();
        assert_eq!(b.remove_all("lone").unwrap(), 1, "a file is removed, as rm -r does");
        assert!(b.stat("lone").unwrap_err().is_not_found());
        assert_eq!(b.remove_all("missing").unwrap(), 0);
        assert_eq!(b.remove_all("").unwrap(), 1);
        assert!(dir.path().exists());
    }

    #[test]
    fn check_remembers_walked_directories_but_every_write_resolves_again() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        b.check("d/f").unwrap();
        assert!(b.check("../f").is_err());
        // Swap the directory for a symlink leading out: `check` trusts its memory, the write does not.
        fs::remove_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
        b.check("d/f").unwrap();
        assert!(matches!(b.write("d/f", b"x"), Err(Error::InvalidPath { .. })));
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn streamed_files_appear_only_when_committed() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        b.write("s", b"old").unwrap();
        let mut f = b.create("s").unwrap();
        f.write_all(b"hello world").unwrap();
        f.seek(SeekFrom::Start(6)).unwrap();
        f.write_all(b"WORLD").unwrap();
        let mut buf = Vec::new();
        b.read("s", &mut buf).unwrap();
        assert_eq!(buf, b"old", "nothing visible before commit");
        f.commit().unwrap();
        buf.clear();
        b.read("s", &mut buf).unwrap();
        assert_eq!(buf, b"hello WORLD");
        let mut dropped = b.create("s").unwrap();
        dropped.write_all(b"never").unwrap();
        drop(dropped);
        buf.clear();
        b.read("s", &mut buf).unwrap();
        assert_eq!(buf, b"hello WORLD", "an uncommitted file changes nothing");
        assert_eq!(b.remove_temp_files().unwrap(), 0, "and leaves no temporary");
        assert!(matches!(b.create("../x"), Err(Error::InvalidPath { .. })));
        b.write("d/x", b"1").unwrap();
        assert!(matches!(b.create("d"), Err(Error::NotAFile { .. })));
    }

    #[test]
    fn symlinks_inside_the_root_work_and_outside_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        b.write("real/f", b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("inner")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        assert_eq!(b.stat("inner/f").unwrap().len, 1);
        for r in [b.stat("escape/secret").map(|_| ()), b.write("escape/new", b"x"), b.remove("escape/secret")] {
            assert!(matches!(r, Err(Error::InvalidPath { reason, .. }) if reason.contains("symlink")));
        }
        assert!(!outside.path().join("new").exists());
    }
}
