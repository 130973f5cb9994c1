//! The errors of the ring buffer: one enum, each variant saying what is wrong and where.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Geometry;

/// What went wrong in a [`RingBuffer`](super::RingBuffer) call.
///
/// Errors about a record (`NotFound`, `Corrupt`, `TooFarAhead`, …) name its id; errors about files name
/// the file. Nothing here means stored data was changed: a call that fails writes nothing (except
/// [`write_many`](super::RingBuffer::write_many), which keeps the records before the failing one).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options cannot describe a ring (zero records, a record too small for its frame, …).
    #[error("invalid ring options: {reason}")]
    InvalidOptions {
        /// Which rule they break.
        reason: String,
    },
    /// The ring on disk was created with another geometry; it is never reinterpreted.
    #[error("{}: the ring on disk has {found}, not the requested {requested}", path.display())]
    GeometryMismatch {
        /// The first shard file.
        path: PathBuf,
        /// What the options asked for.
        requested: Geometry,
        /// What the header records.
        found: Geometry,
    },
    /// The file is a ring of a format version this build does not read.
    #[error("{}: ring format version {found}, this build reads version {supported}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The file is not a ring file (no ring header), or its header is damaged.
    #[error("{}: not a ring file or a damaged header: {reason}", path.display())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with the header.
        reason: &'static str,
    },
    /// A shard file is shorter than its header says (truncated), or missing.
    #[error("{}: {found} bytes, but the ring's header requires {expected}", path.display())]
    FileTooShort {
        /// The file.
        path: PathBuf,
        /// The length the geometry requires.
        expected: u64,
        /// The length found (0 for a missing file).
        found: u64,
    },
    /// Another process (or another handle in this one) has the ring open for writing.
    #[error("{}: locked by another writer (open it with `open_read_only` to read)", path.display())]
    Locked {
        /// The first shard file, which holds the lock.
        path: PathBuf,
    },
    /// A write, flush or other change on a ring opened with `open_read_only`.
    #[error("{}: the ring is open read-only", path.display())]
    ReadOnly {
        /// The first shard file.
        path: PathBuf,
    },
    /// The device is full (or a quota is reached): preallocating the ring's files failed.
    #[error("{}: no space left on the device for the ring's files", path.display())]
    StorageFull {
        /// The file being preallocated or written.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No record with this id is in the ring: never written, not yet written, or its slot was overwritten
    /// by a later lap.
    #[error("record {id}: not in the ring (never written, not yet written, or overwritten by a later lap)")]
    NotFound {
        /// The id asked for.
        id: u64,
    },
    /// The record's frame fails its checks (CRC, magic, lengths): torn or damaged. It is counted, never
    /// served.
    #[error("record {id}: corrupt (its frame fails the CRC or is malformed)")]
    Corrupt {
        /// The id asked for.
        id: u64,
    },
    /// The id is more than one lap (`records`) ahead of the latest record: no write could make it
    /// readable without first overwriting the whole ring, so it is almost certainly a wrong id.
    #[error("record {id} is more than one lap of {records} records ahead of the latest id {latest}")]
    TooFarAhead {
        /// The id given.
        id: u64,
        /// The latest id written.
        latest: u64,
        /// The ring's record count.
        records: u64,
    },
    /// A write whose id is not greater than the latest id written: ids must increase.
    #[error("record {id} is not after the latest id {latest}: ids must increase")]
    NotIncreasing {
        /// The id given.
        id: u64,
        /// The latest id written.
        latest: u64,
    },
    /// `u64::MAX` is reserved (the header stores `latest + 1`).
    #[error("record id {id} is reserved")]
    ReservedId {
        /// The id given.
        id: u64,
    },
    /// The payload does not fit a record (even compressed, when compression is on).
    #[error("payload of {len} bytes does not fit a record: at most {max} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload a record holds (`record_size` minus the frame header).
        max: usize,
    },
    /// A write had to overwrite a slot that a reader's [`Record`](super::Record) guard still borrowed,
    /// and the guard was not dropped in time. Nothing was written.
    #[error("record {id}: its slot is borrowed by a reader's guard; waited {waited:?}")]
    SlotPinned {
        /// The id being written.
        id: u64,
        /// How long the write waited for the guard.
        waited: Duration,
    },
}

/// ENOSPC and EDQUOT on Linux.
const NO_SPACE: [i32; 2] = [libc::ENOSPC, libc::EDQUOT];

impl Error {
    /// An I/O failure on `path`, as `StorageFull` when the device or a quota is full.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        let full = matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
            || source.raw_os_error().is_some_and(|e| NO_SPACE.contains(&e));
        if full {
            Error::StorageFull { path: path.to_path_buf() }
        } else {
            Error::Io { path: path.to_path_buf(), source }
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidOptions { reason: reason.into() }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_devices_are_storage_full_and_others_keep_their_source() {
        let p = Path::new("/x/ring.dat");
        assert!(matches!(Error::io(p, io::Error::from_raw_os_error(libc::ENOSPC)), Error::StorageFull { .. }));
        assert!(matches!(Error::io(p, io::Error::from_raw_os_error(libc::EDQUOT)), Error::StorageFull { .. }));
        let e = Error::io(p, io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied));
        assert!(e.to_string().starts_with("/x/ring.dat: "), "{e}");
        assert!(Error::NotFound { id: 3 }.is_not_found());
        assert!(!Error::Corrupt { id: 3 }.is_not_found());
    }
}
