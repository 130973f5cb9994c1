//! What can go wrong saving or loading a snapshot.

use std::io;

/// A snapshot could not be written or read. Loading is all or nothing: on any of these, nothing was
/// inserted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The writer or reader failed.
    #[error("snapshot I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The stream does not start with a snapshot's magic bytes.
    #[error("not a cachefs snapshot (the magic bytes do not match)")]
    NotASnapshot,
    /// The snapshot was written in a format version this build does not read.
    #[error("snapshot format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version in the stream.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The stream ends before the snapshot does.
    #[error("snapshot truncated: the stream ends at byte {offset}, before the snapshot does")]
    Truncated {
        /// Bytes read before the end.
        offset: u64,
    },
    /// A frame's checksum does not match, or the frames do not add up to what the header announced.
    #[error("snapshot corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Where the damaged frame starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The snapshot was saved from a cache of other key or value types (by their names, as
    /// `std::any::type_name` gives them: a build whose compiler names a type differently refuses it too).
    #[error("snapshot holds {saved} entries, this cache holds {expected}")]
    WrongTypes {
        /// The saved key and value type names.
        saved: String,
        /// This cache's key and value type names.
        expected: String,
    },
    /// A frame is intact but an entry in it does not decode as this cache's key and value types (a
    /// snapshot of another cache?).
    #[error(
        "snapshot entry in the frame at byte {offset} does not decode as this cache's key and value types: {message}"
    )]
    Decode {
        /// Where the frame holding the entry starts.
        offset: u64,
        /// The decoder's message.
        message: String,
    },
    /// An entry's key or value failed to serialise (its `Serialize` returned an error).
    #[error("could not encode a snapshot entry: {0}")]
    Encode(String),
}
