//! The errors of the file layer: one enum, every variant naming the path it concerns.

use std::io;

/// What went wrong in a [`CacheFs`](super::CacheFs) or [`Backend`](super::Backend) call.
///
/// Backend failures keep their kind (`NotFound`, `PermissionDenied`, `StorageFull`) so callers can act on
/// them; anything else arrives as `Io` with the original [`io::Error`] as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path is not a safe relative path (absolute, `..` above the root, NUL byte, over-long component,
    /// not UTF-8, or reaching outside the root through a symlink).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given (lossily converted if it was not UTF-8).
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// No file at this path.
    #[error("{path}: not found")]
    NotFound {
        /// The path.
        path: String,
    },
    /// The path names a directory (or something else that is not a regular file).
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// A directory above the path is a file (on the backend, or as a pending write-back write), so the
    /// path cannot be a file.
    #[error("{path}: a parent directory is a file")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// The backing store refused access.
    #[error("{path}: permission denied")]
    PermissionDenied {
        /// The path.
        path: String,
    },
    /// The backing store is out of space (ENOSPC or quota).
    #[error("{path}: no space left on the backing store")]
    StorageFull {
        /// The path.
        path: String,
    },
    /// Any other I/O failure of the backing store.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Some dirty files could not be written to the backend; they stay dirty and are retried.
    #[error("{} file(s) failed to flush; first: {}", failures.len(), first_failure(failures))]
    Flush {
        /// Each file that failed, with its error.
        failures: Vec<FlushFailure>,
    },
    /// Write-back is at its dirty-byte limit and the backend keeps failing, so the write was refused
    /// (nothing was stored) rather than growing memory or waiting forever.
    #[error("{path}: write-back stalled at {dirty_bytes} dirty bytes; last flush error: {last_error}")]
    WriteBackStalled {
        /// The path whose write was refused.
        path: String,
        /// Dirty bytes held when the write gave up.
        dirty_bytes: u64,
        /// The most recent flush failure.
        last_error: String,
    },
    /// The file changed (was written or removed) while a reader was streaming it in chunks.
    #[error("{path}: changed while being read")]
    Modified {
        /// The path.
        path: String,
    },
    /// A [`FileWriter`](super::FileWriter) was closed after one of its writes failed; nothing was stored
    /// and the old content stays.
    #[error("{path}: nothing stored: an earlier write through this writer failed ({reason})")]
    WriterFailed {
        /// The path.
        path: String,
        /// The failure.
        reason: String,
    },
    /// A glob pattern could not be parsed.
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A hot list (see [`CacheFs::save_hot_list`](super::CacheFs::save_hot_list)) is damaged, truncated, or
    /// of a format version this build does not read.
    #[error("hot list {path}: {reason}")]
    InvalidHotList {
        /// The list's local path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A warm stopped at its first failure (`skip_errors` was off), or was cancelled.
    #[error("warm stopped: {reason}")]
    WarmStopped {
        /// Why.
        reason: String,
    },
}

/// One file that failed to flush.
#[derive(Debug)]
pub struct FlushFailure {
    /// The file.
    pub path: String,
    /// Why its write failed.
    pub error: Box<Error>,
}

fn first_failure(failures: &[FlushFailure]) -> String {
    failures.first().map_or_else(String::new, |f| f.error.to_string())
}

/// ENOSPC and EDQUOT on Linux; `io::ErrorKind::StorageFull` covers most platforms already.
const NO_SPACE: [i32; 2] = [28, 122];

impl Error {
    /// Maps an I/O error on `path` to the matching variant. Backends call this so that callers can tell a
    /// missing file from a full disk without looking at raw errno values.
    pub fn io(path: impl Into<String>, source: io::Error) -> Self {
        let path = path.into();
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { path },
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Error::StorageFull { path },
            io::ErrorKind::IsADirectory => Error::NotAFile { path },
            io::ErrorKind::NotADirectory => Error::NotADirectory { path },
            io::ErrorKind::InvalidFilename => {
                Error::InvalidPath { path, reason: "too long for the backing file system" }
            }
            _ if source.raw_os_error().is_some_and(|e| NO_SPACE.contains(&e)) => Error::StorageFull { path },
            _ => Error::Io { path, source },
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

impl From<Error> for io::Error {
    /// For the `Read`/`Write` handles: the kind survives, the message and path are kept as the source.
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::StorageFull { .. } => io::ErrorKind::StorageFull,
            Error::InvalidPath { .. } | Error::InvalidPattern { .. } => io::ErrorKind::InvalidInput,
            Error::NotAFile { .. } => io::ErrorKind::IsADirectory,
            Error::NotADirectory { .. } => io::ErrorKind::NotADirectory,
            Error::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_their_kind_and_path() {
        let e = Error::io("a/b", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "a/b: not found");
        assert!(matches!(Error::io("x", io::Error::from_raw_os_error(28)), Error::StorageFull { .. }));
        assert!(matches!(
            Error::io("x", io::Error::from(io::ErrorKind::PermissionDenied)),
            Error::PermissionDenied { .. }
        ));
        let other = Error::io("x", io::Error::other("boom"));
        assert!(matches!(&other, Error::Io { path, .. } if path == "x"));
    }

    #[test]
    fn flush_error_names_the_first_failure() {
        let e = Error::Flush {
            failures: vec![FlushFailure { path: "a".into(), error: Box::new(Error::StorageFull { path: "a".into() }) }],
        };
        assert_eq!(e.to_string(), "1 file(s) failed to flush; first: a: no space left on the backing store");
    }
}
