//! Which errno a failure of the file layer reaches the program on the other side of the mount as.

use std::io;

use fuser::Errno;

use crate::fs::Error;

/// The errno for a `CacheFs` error: the kinds it keeps map to their errno, an I/O error keeps its own,
/// and what has no closer meaning is `EIO`.
pub(crate) fn of(error: &Error) -> Errno {
    match error {
        Error::NotFound { .. } => Errno::ENOENT,
        Error::NotAFile { .. } => Errno::EISDIR,
        Error::NotADirectory { .. } => Errno::ENOTDIR,
        Error::PermissionDenied { .. } => Errno::EACCES,
        Error::StorageFull { .. } | Error::WriteBackStalled { .. } => Errno::ENOSPC,
        Error::InvalidPath { reason, .. } if reason.contains("long") => Errno::ENAMETOOLONG,
        Error::InvalidPath { .. } => Errno::EINVAL,
        Error::Io { source, .. } => of_io(source),
        Error::Flush { failures } => failures.first().map_or(Errno::EIO, |f| of(&f.error)),
        _ => Errno::EIO,
    }
}

/// The errno of an I/O error: its own where it has one, else by kind.
pub(crate) fn of_io(error: &io::Error) -> Errno {
    match error.raw_os_error() {
        Some(code) => Errno::from_i32(code),
        None => match error.kind() {
            io::ErrorKind::NotFound => Errno::ENOENT,
            io::ErrorKind::PermissionDenied => Errno::EACCES,
            io::ErrorKind::AlreadyExists => Errno::EEXIST,
            io::ErrorKind::DirectoryNotEmpty => Errno::ENOTEMPTY,
            io::ErrorKind::IsADirectory => Errno::EISDIR,
            io::ErrorKind::NotADirectory => Errno::ENOTDIR,
            io::ErrorKind::StorageFull => Errno::ENOSPC,
            io::ErrorKind::InvalidInput => Errno::EINVAL,
            _ => Errno::EIO,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_their_errno() {
        let p = || "p".to_string();
        assert_eq!(of(&Error::NotFound { path: p() }), Errno::ENOENT);
        assert_eq!(of(&Error::NotAFile { path: p() }), Errno::EISDIR);
        assert_eq!(of(&Error::NotADirectory { path: p() }), Errno::ENOTDIR);
        assert_eq!(of(&Error::PermissionDenied { path: p() }), Errno::EACCES);
        assert_eq!(of(&Error::StorageFull { path: p() }), Errno::ENOSPC);
        assert_eq!(of(&Error::io("p", io::Error::from_raw_os_error(libc::ENOTEMPTY))), Errno::ENOTEMPTY);
        assert_eq!(of(&Error::io("p", io::Error::other("odd"))), Errno::EIO);
        assert_eq!(of(&Error::Modified { path: p() }), Errno::EIO);
        assert_eq!(of_io(&io::Error::from(io::ErrorKind::AlreadyExists)), Errno::EEXIST);
    }
}
