//! A backend held in memory: for tests, and for caches in front of computed data.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::sync::RwLock;
use bytes::Bytes;

use super::{Backend, Metadata};
use crate::fs::error::Error;
use crate::fs::path::{canonical, is_within, parents};

/// Files in a sorted map behind one lock. Writes are atomic (one map insert under the write lock).
#[derive(Debug, Default)]
pub struct MemBackend {
    /// Path → content and modification time. Readers share the lock; writers hold it for one map update.
    files: RwLock<BTreeMap<String, (Bytes, SystemTime)>>,
}

impl MemBackend {
    /// An empty store.
    pub fn new() -> Self {
        MemBackend::default()
    }

    fn file_path(path: &str) -> Result<String, Error> {
        canonical(path, false).map(|p| p.into_owned())
    }

    fn dir(dir: &str) -> Result<String, Error> {
        canonical(dir, true).map(|p| p.into_owned())
    }

    fn with_file<T>(&self, path: &str, f: impl FnOnce(&Bytes, SystemTime) -> T) -> Result<T, Error> {
        let path = Self::file_path(path)?;
        let files = self.files.read();
        match files.get(&path) {
            Some((data, modified)) => Ok(f(data, *modified)),
            None if Self::is_dir(&files, &path) => Err(Error::NotAFile { path }),
            None => Err(Error::NotFound { path }),
        }
    }

    fn is_dir(files: &BTreeMap<String, (Bytes, SystemTime)>, path: &str) -> bool {
        files.range(format!("{path}/")..).next().is_some_and(|(k, _)| is_within(k, path))
    }

    /// Whether a file may be written at `path` (canonical): it is not a directory, and no directory
    /// above it is a file, as on a file system.
    fn writable(files: &BTreeMap<String, (Bytes, SystemTime)>, path: &str) -> Result<(), Error> {
        if Self::is_dir(files, path) {
            return Err(Error::NotAFile { path: path.to_string() });
        }
        if parents(path).any(|dir| files.contains_key(dir)) {
            return Err(Error::NotADirectory { path: path.to_string() });
        }
        Ok(())
    }
}

impl Backend for MemBackend {
    fn read(&self, path: &str, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.with_file(path, |data, _| buf.extend_from_slice(data))
    }

    fn read_range(&self, path: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.with_file(path, |data, _| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            n
        })
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        self.write_modified(path, data, SystemTime::now())
    }

    fn write_modified(&self, path: &str, data: &[u8], modified: SystemTime) -> Result<(), Error> {
        let path = Self::file_path(path)?;
        let mut files = self.files.write();
        Self::writable(&files, &path)?;
        files.insert(path, (Bytes::copy_from_slice(data), modified));
        Ok(())
    }

    fn stat(&self, path: &str) -> Result<Metadata, Error> {
        self.with_file(path, |data, modified| Metadata { len: data.len() as u64, modified })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, Error> {
        let dir = Self::dir(dir)?;
        let files = self.files.read();
        Ok(files
            .range(dir.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&dir))
            .filter(|k| is_within(k, &dir) && **k != dir)
            .cloned()
            .collect())
    }

    fn remove(&self, path: &str) -> Result<(), Error> {
        let path = Self::file_path(path)?;
        match self.files.write().remove(&path) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound { path }),
        }
    }

    fn remove_all(&self, dir: &str) -> Result<u64, Error> {
        let dir = Self::dir(dir)?;
        let mut files = self.files.write();
        let before = files.len();
        // `dir` itself goes too when it names a file, as `rm -r` would.
        files.retain(|k, _| !is_within(k, &dir));
        Ok((before - files.len()) as u64)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let (from, to) = (Self::file_path(from)?, Self::file_path(to)?);
        let mut files = self.files.write();
        if !files.contains_key(&from) {
            return Err(Error::NotFound { path: from });
        }
        Self::writable(&files, &to)?;
        let (data, _) = files.remove(&from).ok_or(Error::NotFound { path: from })?;
        files.insert(to, (data, SystemTime::now()));
        Ok(())
    }

    fn check(&self, path: &str) -> Result<(), Error> {
        Self::writable(&self.files.read(), &Self::file_path(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_list_by_directory() {
        let m = MemBackend::new();
        m.write("a/x", b"1").unwrap();
        m.write("a/y/z", b"22").unwrap();
        m.write("ab", b"333").unwrap();
        assert_eq!(m.list("a").unwrap(), ["a/x", "a/y/z"]);
        assert_eq!(m.list("").unwrap().len(), 3);
        let mut buf = Vec::new();
        m.read("a/y/z", &mut buf).unwrap();
        assert_eq!(buf, b"22");
        let mut two = [0u8; 2];
        assert_eq!(m.read_range("ab", 1, &mut two).unwrap(), 2);
        assert_eq!(m.read_range("ab", 9, &mut two).unwrap(), 0);
        assert!(matches!(m.stat("a"), Err(Error::NotAFile { .. })));
        assert!(matches!(m.write("a", b""), Err(Error::NotAFile { .. })));
        assert_eq!(m.remove_all("a").unwrap(), 2);
        assert!(m.stat("ab").is_ok());
        m.rename("ab", "c/d").unwrap();
        assert!(m.remove("ab").unwrap_err().is_not_found());
        assert_eq!(m.list("").unwrap(), ["c/d"]);
        assert!(matches!(m.read("../x", &mut buf), Err(Error::InvalidPath { .. })));
    }
}
