//! A blob being filled: a temporary file in the disk directory that hashes what is written to it.
//!
//! Bytes go to the file as they arrive (no whole-blob buffer) and into a sha256 hasher. `finish`
//! compares the hash with the digest, fsyncs and renames the file to its blob name; the caller then
//! fsyncs the directory. A `TempBlob` dropped before `finish` (an error, a panic) deletes its file. A
//! process killed mid-fill leaves a file whose name starts with [`TEMP_PREFIX`]; the next store on the
//! directory deletes it.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::{Digest, Error};

/// Temporary files start with this; nothing else in a disk directory does.
pub(crate) const TEMP_PREFIX: &str = ".tmp.";

#[derive(Debug)]
pub(crate) struct TempBlob {
    digest: Digest,
    file: NamedTempFile,
    hasher: Sha256,
    len: u64,
    max: u64,
    /// The first write failure, typed (the `Write` impl can only return an `io::Error`).
    failure: Option<Error>,
}

impl TempBlob {
    /// A new empty temporary file for `digest` in `dir`, refusing to grow past `max` bytes.
    pub(crate) fn create(dir: &Path, digest: &Digest, max: u64) -> Result<TempBlob, Error> {
        let file = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{}.", digest.file_name()))
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(TempBlob { digest: *digest, file, hasher: Sha256::new(), len: 0, max, failure: None })
    }

    /// Why a write failed, if one did: the error a fill reports instead of the tier's.
    pub(crate) fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.len
    }

    /// Verifies the digest, fsyncs and renames the file to `target`. On a mismatch the file is deleted
    /// and [`Error::DigestMismatch`] returned. The directory still needs an fsync for the rename to be
    /// durable.
    pub(crate) fn finish(self, target: &Path) -> Result<(File, u64), Error> {
        let actual = Digest::from_hasher(self.hasher);
        if actual != self.digest {
            return Err(Error::DigestMismatch { digest: self.digest.to_string(), actual: actual.to_string() });
        }
        let path: PathBuf = self.file.path().to_path_buf();
        self.file.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
        let file = self.file.persist(target).map_err(|e| Error::io(target, e.error))?;
        Ok((file, self.len))
    }
}

impl Write for TempBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("an earlier write to this blob failed"));
        }
        if self.len + buf.len() as u64 > self.max {
            self.failure = Some(Error::TooLarge { digest: self.digest.to_string(), max: self.max });
            return Err(io::Error::other("the blob exceeds the disk tier's bound"));
        }
        if let Err(e) = self.file.as_file_mut().write_all(buf) {
            let message = e.to_string();
            self.failure = Some(Error::io(self.file.path(), e));
            return Err(io::Error::other(message));
        }
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_renames_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let d = Digest::of(b"blob");
        let mut t = TempBlob::create(dir.path(), &d, 100).unwrap();
        t.write_all(b"bl").unwrap();
        t.write_all(b"ob").unwrap();
        assert_eq!(t.len(), 4);
        let target = dir.path().join(d.file_name());
        let (_, len) = t.finish(&target).unwrap();
        assert_eq!((len, std::fs::read(&target).unwrap()), (4, b"blob".to_vec()));

        let mut t = TempBlob::create(dir.path(), &d, 100).unwrap();
        t.write_all(b"blob!").unwrap();
        assert!(matches!(t.finish(&dir.path().join("x")), Err(Error::DigestMismatch { .. })));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "only the finished blob remains: {names:?}");
    }

    #[test]
    fn refuses_to_grow_past_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TempBlob::create(dir.path(), &Digest::of(b"x"), 3).unwrap();
        t.write_all(b"abc").unwrap();
        assert!(t.write_all(b"d").is_err());
        assert!(t.write(b"").is_err(), "a failed blob stays failed");
        assert!(matches!(t.take_failure(), Some(Error::TooLarge { max: 3, .. })));
    }
}
