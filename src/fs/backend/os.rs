//! A backend rooted at a directory on the local file system.
//!
//! Writes are atomic and durable: the data goes to a temporary file in the target's directory, is
//! fsynced, renamed over the real name, and the directory is fsynced, so a crash leaves either the old
//! file or the new one under the real name, never a prefix. Temporary files carry [`TEMP_MARKER`] in
//! their name and are skipped by `list`; [`OsBackend::remove_temp_files`] clears ones a crash left.
//!
//! Every path is checked again here (callers may use the backend directly), and each existing component
//! is inspected: a symlink is followed only if it resolves inside the root. The check and the open are
//! separate system calls, so a process that can swap directories under the root while we work could
//! race it; the root is meant to be owned by the service.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use std::collections::HashSet;

use super::{Backend, Metadata};
use crate::fs::error::Error;
use crate::fs::path::canonical;
use crate::sync::RwLock;

/// Part of the name of every temporary file a write creates.
pub const TEMP_MARKER: &str = ".cachefs-tmp.";

/// Files under one directory. See the module docs for durability and path safety.
#[derive(Debug)]
pub struct OsBackend {
    /// Canonical (symlink-free, absolute) root.
    root: PathBuf,
    /// Makes temporary names unique within the process (the pid separates processes).
    temp_seq: AtomicU64,
    /// Paths `check` has passed, so that write-back does not walk the same path's components on every
    /// write. Only `check` trusts it: every actual operation resolves the path again, so a symlink swapped
    /// in later is still refused there. Cleared when it reaches [`CHECKED_PATHS`] entries.
    checked: RwLock<HashSet<Box<str>>>,
}

/// Most paths `OsBackend::check` remembers.
const CHECKED_PATHS: usize = 100_000;

impl OsBackend {
    /// A backend over `root`, creating the directory if it does not exist.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref();
        let name = || root.display().to_string();
        fs::create_dir_all(root).map_err(|e| Error::io(name(), e))?;
        let root = root.canonicalize().map_err(|e| Error::io(name(), e))?;
        Ok(OsBackend { root, temp_seq: AtomicU64::new(0), checked: RwLock::default() })
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

    /// The on-disk location of `path`, after checking it and every existing component on the way.
    fn resolve(&self, path: &str, allow_root: bool) -> Result<PathBuf, Error> {
        let rel = canonical(path, allow_root)?;
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
        Ok(self.root.join(&*rel))
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

    /// A new temporary file beside `target` (whose directory is created if missing).
    fn temp_for(&self, target: &Path) -> io::Result<(File, PathBuf)> {
        let dir = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir)?;
        let name = target.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let temp =
            dir.join(format!(".{name}{TEMP_MARKER}{}.{}", std::process::id(), self.temp_seq.fetch_add(1, Relaxed)));
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&temp)?;
        Ok((file, temp))
    }

    fn write_atomically(&self, target: &Path, data: &[u8]) -> io::Result<()> {
        let (mut file, temp) = self.temp_for(target)?;
        let result = file.write_all(data).and_then(|()| commit(file, &temp, target));
        if result.is_err() {
            // The real name was not touched unless the rename succeeded, in which case only the
            // directory sync failed.
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

/// Fsyncs `file`, renames `temp` over `target`, fsyncs the directory.
fn commit(file: File, temp: &Path, target: &Path) -> io::Result<()> {
    file.sync_all()?;
    drop(file);
    fs::rename(temp, target)?;
    sync_dir(target.parent().unwrap_or(Path::new(".")))
}

/// A file streamed to a temporary beside its target (from [`OsBackend`]'s `create`).
#[derive(Debug)]
struct OsFile {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    path: String,
}

impl Write for OsFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file.as_mut().map_or(Ok(0), |f| f.write(data))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Seek for OsFile {
    fn seek(&mut self, from: io::SeekFrom) -> io::Result<u64> {
        self.file.as_mut().map_or(Ok(0), |f| f.seek(from))
    }
}

impl super::BackendFile for OsFile {
    fn commit(mut self: Box<Self>) -> Result<(), Error> {
        let Some(file) = self.file.take() else { return Ok(()) };
        let result = commit(file, &self.temp, &self.target);
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result.map_err(|e| Error::io(self.path.clone(), e))
    }
}

impl Drop for OsFile {
    /// Uncommitted: the temporary goes, the target keeps its old content.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
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
        let target = self.resolve(path, false)?;
        if target.is_dir() {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        self.write_atomically(&target, data).map_err(|e| Error::io(path, e))
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
        let files = self.list(dir)?.len() as u64;
        let at = self.resolve(dir, true)?;
        if at == self.root {
            for (path, kind) in read_dir(&at, dir)? {
                let r = if kind.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                r.map_err(|e| Error::io(path.display().to_string(), e))?;
            }
        } else {
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&at).map_err(|e| Error::io(dir, e))?,
                Ok(_) => return Err(Error::NotAFile { path: dir.to_string() }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io(dir, e)),
            }
        }
        Ok(files)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (src, dst) = (self.resolve(from, false)?, self.resolve(to, false)?);
        if !src.is_file() {
            return Err(Error::io(from, io::Error::from(io::ErrorKind::NotFound)));
        }
        let dir = dst.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(|e| Error::io(to, e))?;
        fs::rename(&src, &dst).map_err(|e| Error::io(from, e))?;
        sync_dir(dir).map_err(|e| Error::io(to, e))
    }

    fn create(&self, path: &str) -> Result<Box<dyn super::BackendFile + '_>, Error> {
        let target = self.resolve(path, false)?;
        if target.is_dir() {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        let (file, temp) = self.temp_for(&target).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(OsFile { file: Some(file), temp, target, path: path.to_string() }))
    }

    fn check(&self, path: &str) -> Result<(), Error> {
        if self.checked.read().contains(path) {
            return Ok(());
        }
        self.resolve(path, false)?;
        let mut checked = self.checked.write();
        if checked.len() >= CHECKED_PATHS {
            checked.clear();
        }
        checked.insert(path.into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_and_listed_without_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let b = OsBackend::new(dir.path()).unwrap();
        b.write("a/b/c.bin", b"abc").unwrap();
        b.write("a/b/c.bin", b"abcd").unwrap();
        fs::write(dir.path().join("a/b/.c.bin.cachefs-tmp.1.1"), b"ab").unwrap();
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
        assert_eq!(b.remove_all("missing").unwrap(), 0);
        assert_eq!(b.remove_all("").unwrap(), 1);
        assert!(dir.path().exists());
    }

    #[test]
    fn check_remembers_passed_paths_but_every_write_resolves_again() {
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
