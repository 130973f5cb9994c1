//! The errors of the tiered store: one enum, each variant naming the digest or path it concerns.
//!
//! `Error` is `Clone` (I/O errors are shared behind an `Arc`) because one fill answers every thread
//! that asked for the same digest: the waiters receive the leader's error, not a description of it.

use std::io;
use std::path::Path;
use std::sync::Arc;

/// What went wrong in a [`TieredStore`](super::TieredStore) call, or in a tier it called.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a digest this store accepts (`sha256:` and 64 lowercase hex digits).
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The input as given (cut to 100 characters).
        input: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The bytes a tier delivered do not hash to the digest they were asked for. They were not stored.
    #[error("{digest}: the bytes received hash to {actual}, not to their digest; not stored")]
    DigestMismatch {
        /// The digest asked for.
        digest: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// No tier has the blob (the origin answered that it does not exist, or there is no origin).
    #[error("{digest}: not found in any tier")]
    NotFound {
        /// The digest.
        digest: String,
    },
    /// The blob is larger than `disk_max_bytes`, so the disk tier cannot hold it; the fill stopped there.
    #[error("{digest}: larger than the disk tier's bound of {max} bytes")]
    TooLarge {
        /// The digest.
        digest: String,
        /// `disk_max_bytes`.
        max: u64,
    },
    /// The remote tier failed (connection, time budget, protocol). Reads fall back to the origin; this
    /// is returned only by direct calls on a remote tier.
    #[error("remote tier: {reason}")]
    Remote {
        /// What failed.
        reason: String,
    },
    /// The origin failed for this blob (HTTP status, dropped connection past the resumption limit, ...).
    #[error("origin: {digest}: {reason}")]
    Origin {
        /// The digest.
        digest: String,
        /// What failed.
        reason: String,
    },
    /// The disk tier's file system is full.
    #[error("{path}: no space left on the disk tier")]
    DiskFull {
        /// The file being written.
        path: String,
    },
    /// Another process holds this disk directory: two stores on one directory would delete each
    /// other's temporary files, so a directory has one store at a time.
    #[error("{path}: in use by another process (its lock file is held)")]
    Locked {
        /// The lock file.
        path: String,
    },
    /// Any other I/O failure on the disk tier.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The store's configuration cannot work (for example a zero disk bound, or a malformed URL).
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The thread filling this blob panicked; nothing was stored. Asking again starts a new fill.
    #[error("{digest}: the fill was abandoned (its thread panicked)")]
    FillAbandoned {
        /// The digest.
        digest: String,
    },
    /// The blob was evicted again each time before it could be read: the disk bound is too small for the
    /// blobs being read at once.
    #[error("{digest}: evicted before it could be read, repeatedly (disk_max_bytes is too small)")]
    Evicted {
        /// The digest.
        digest: String,
    },
}

/// ENOSPC and EDQUOT on Linux; `io::ErrorKind::StorageFull` covers most platforms already.
const NO_SPACE: [i32; 2] = [28, 122];

impl Error {
    /// An I/O error on `path`: a full disk becomes [`Error::DiskFull`], anything else [`Error::Io`].
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        let path = path.display().to_string();
        let full = matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
            || source.raw_os_error().is_some_and(|e| NO_SPACE.contains(&e));
        if full { Error::DiskFull { path } } else { Error::Io { path, source: Arc::new(source) } }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn remote(reason: impl Into<String>) -> Self {
        Error::Remote { reason: reason.into() }
    }

    pub(crate) fn origin(digest: &super::Digest, reason: impl Into<String>) -> Self {
        Error::Origin { digest: digest.to_string(), reason: reason.into() }
    }

    pub(crate) fn not_found(digest: &super::Digest) -> Self {
        Error::NotFound { digest: digest.to_string() }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

impl From<Error> for io::Error {
    /// For the `Read` handle: the kind survives where there is one, the error is kept as the source.
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::InvalidDigest { .. } | Error::Config { .. } => io::ErrorKind::InvalidInput,
            Error::DigestMismatch { .. } => io::ErrorKind::InvalidData,
            Error::DiskFull { .. } => io::ErrorKind::StorageFull,
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
    fn io_errors_name_the_path_and_a_full_disk_is_its_own_variant() {
        let p = Path::new("/d/sha256_ab");
        assert!(matches!(Error::io(p, io::Error::from_raw_os_error(28)), Error::DiskFull { .. }));
        let e = Error::io(p, io::Error::other("boom"));
        assert_eq!(e.to_string(), "/d/sha256_ab: boom");
        let back: io::Error = Error::NotFound { digest: "sha256:00".into() }.into();
        assert_eq!(back.kind(), io::ErrorKind::NotFound);
        let back: io::Error = e.clone().into();
        assert_eq!(back.kind(), io::ErrorKind::Other);
        assert_eq!(io::Error::from(Error::DiskFull { path: "x".into() }).kind(), io::ErrorKind::StorageFull);
    }
}
