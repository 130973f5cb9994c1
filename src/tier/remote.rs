//! The remote tier: a store shared by the fleet (Redis), between each worker's disk and the origin.
//!
//! The contract that keeps it safe to share: a blob is visible to `get` only once `put` has written
//! all of it (an implementation writes its parts first and the record that makes it present last), and
//! `get` treats anything incomplete or inconsistent as absent ([`RemoteGet::Invalid`]). The store adds
//! the rest: it verifies the digest of what `get` delivered before keeping it, wraps every call in a
//! circuit breaker, and falls back to the origin on any error.

use std::fmt;
use std::io::Read;

use super::{BlobSink, Digest, Error};

/// What a [`RemoteTier::get`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteGet {
    /// The whole blob was written to the sink.
    Hit,
    /// The remote tier does not have the blob.
    Miss,
    /// The remote tier has an incomplete or inconsistent copy (a manifest without all its chunks, a chunk
    /// of the wrong length, a value of the wrong type). Treated as a miss; some bytes may have been
    /// written to the sink, and the store discards them.
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

/// A remote tier shared by many stores. Calls must be bounded in time (a per-request budget): a tier that
/// hangs holds up the reader waiting for it.
pub trait RemoteTier: Send + Sync + fmt::Debug {
    /// Streams blob `digest` into `sink` if the tier has all of it. `Err` for a failure of the tier
    /// itself (connection, time budget, protocol), which counts towards the breaker.
    fn get(&self, digest: &Digest, sink: &mut BlobSink<'_>) -> Result<RemoteGet, Error>;

    /// Stores the blob `digest` of `size` bytes, read from `blob` (the verified file on disk), so that
    /// it becomes visible to `get` only once complete.
    fn put(&self, digest: &Digest, size: u64, blob: &mut dyn Read) -> Result<(), Error>;
}
