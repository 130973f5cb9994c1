//! `cachefs::tier`: large immutable blobs addressed by digest, read through three tiers — local disk,
//! a remote tier the fleet shares (Redis, single node or Cluster), and the origin (a directory, an OCI
//! registry). Cargo feature `tier` (plus `redis`, `oci` for those tiers); users of the engine alone
//! compile none of it.
//!
//! ```
//! use cachefs::tier::{Digest, DirOrigin, TieredStore};
//!
//! let origin = tempfile::tempdir()?;
//! let layer = b"a container layer".to_vec();
//! let digest = Digest::of(&layer);
//! std::fs::write(origin.path().join(digest.file_name()), &layer)?;
//!
//! let disk = tempfile::tempdir()?;
//! let store = TieredStore::builder()
//!     .disk_dir(disk.path())
//!     .disk_max_bytes(1 << 30)
//!     .origin(DirOrigin::new(origin.path()))
//!     .build()?;
//! let mut buf = [0u8; 9];
//! assert_eq!(store.read_at(&digest, 2, &mut buf)?, 9);   // filled from the origin, then read
//! assert_eq!(&buf, b"container");
//! assert!(store.contains(&digest));
//! assert_eq!(store.stats().origin_fetches, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a digest names
//!
//! The bytes the store serves: the file on disk, the chunks in Redis. With `origin_gzip(true)` the
//! origin serves gzip and the digest names the *decompressed* content (an image's `diff_id`), so every
//! tier can be verified on its own and a disk blob can be re-verified after a restart. (An OCI registry
//! addresses the compressed blob by another digest; [`OciOrigin::layer`] maps one to the other.)
//!
//! # Reading
//!
//! Disk, then remote, then origin. A fill streams into a temporary file in the disk directory, hashing as
//! it goes (through a gzip decoder first, if the origin serves gzip), and the file gets its name only
//! once the digest matches and it is fsynced (`fill.rs`, `temp.rs`). Then, for an origin fill, an upload
//! to the remote tier is queued for a background thread; a full queue drops it (counted), so readers
//! never wait for the remote tier's write path. Memory stays flat whatever the blob's size: fixed
//! buffers throughout, one Redis chunk at a time.
//!
//! # Concurrent calls on the same digest
//!
//! One fill per digest however many threads ask at once (`flight.rs`): the others wait for it, then
//! read the file. If it fails they all receive its error. Between processes, one store per disk
//! directory: [`TieredStoreBuilder::build`] takes a lock file and fails with [`Error::Locked`].
//!
//! # Guarantees
//!
//! - A blob is served only if its bytes hashed to its digest when written, and its file has not changed
//!   since (the file's fingerprint is compared on every open; a changed one is hashed again first).
//!   A corrupt blob is deleted and filled again, never served.
//! - A crash (SIGKILL, power loss) leaves no partial blob under a blob's name; the next store deletes
//!   stray temporary files and re-verifies blobs whose verification was not recorded (`disk.rs`).
//! - The remote tier is never trusted: a copy that is incomplete or does not hash to its digest is
//!   treated as absent. Any remote error falls back to the origin, and after repeated failures a circuit
//!   breaker skips the remote tier for a cool-down (`breaker.rs`).
//! - The disk holds at most `disk_max_bytes` of blobs nobody has open, plus blobs open and fills in
//!   progress; LRU eviction makes room after each fill, when a handle closes and when a store opens a
//!   directory. A blob larger than `disk_max_bytes` is refused ([`Error::TooLarge`], the fill stops as
//!   soon as it passes the bound) rather than served and evicted at once: a bound is a bound, and a
//!   blob that would be evicted on close would be fetched again on every open.

mod breaker;
mod builder;
mod digest;
mod disk;
mod error;
mod fill;
mod flight;
#[cfg(feature = "oci")]
mod oci;
mod origin;
mod reader;
#[cfg(feature = "redis")]
mod redis;
mod remote;
mod shared;
mod sink;
mod stats;
mod temp;
mod upload;

use std::path::Path;
use std::time::Duration;

pub use breaker::BreakerState;
pub use builder::TieredStoreBuilder;
pub use digest::Digest;
pub use error::Error;
#[cfg(feature = "oci")]
pub use oci::{OciOrigin, OciOriginBuilder};
pub use origin::{DirOrigin, Origin};
pub use reader::Blob;
#[cfg(all(feature = "redis", fuzzing))]
#[doc(hidden)]
pub use redis::fuzz_manifest;
#[cfg(feature = "redis")]
pub use redis::{RedisTier, RedisTierBuilder};
pub use remote::{RemoteGet, RemoteTier};
pub use sink::{BlobSink, Progress, Source};
pub use stats::TierStats;

use shared::Shared;
use stats::Count;

use crate::sync::{Arc, JoinHandle};

/// Blobs by digest through disk, remote and origin tiers. See the [module docs](self).
///
/// `TieredStore` is `Send + Sync`: share it (`Arc`, or scoped threads) between readers.
#[derive(Debug)]
pub struct TieredStore {
    shared: Arc<Shared>,
    uploaders: Vec<JoinHandle<()>>,
}

impl TieredStore {
    /// Starts configuring a store.
    pub fn builder() -> TieredStoreBuilder {
        TieredStoreBuilder::default()
    }

    pub(crate) fn from_parts(shared: Arc<Shared>, uploaders: Vec<JoinHandle<()>>) -> Self {
        TieredStore { shared, uploaders }
    }

    /// Reads up to `buf.len()` bytes of `digest` at `offset` (`pread` on the disk file, filling it first
    /// if needed); returns how many, 0 at or past the end.
    pub fn read_at(&self, digest: &Digest, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let pinned = self.shared.acquire(digest, None)?;
        let result = reader::read_full_at(&pinned.file, pinned.size, offset, buf);
        self.shared.release(digest, pinned.generation);
        let n = result.map_err(|e| Error::io(&self.shared.disk.blob_path(digest), e))?;
        self.shared.counters.add(Count::BytesRead, n as u64);
        Ok(n)
    }

    /// Opens `digest` for reading (`Read + Seek`), filling it first if needed. The blob stays on disk
    /// (LRU eviction skips it) while the handle lives.
    pub fn open(&self, digest: &Digest) -> Result<Blob, Error> {
        let pinned = self.shared.acquire(digest, None)?;
        Ok(Blob::new(Arc::clone(&self.shared), *digest, pinned))
    }

    /// Makes sure `digest` is on disk, and says where it came from.
    pub fn fill(&self, digest: &Digest) -> Result<Source, Error> {
        self.fill_with_progress(digest, &|_| {})
    }

    /// As [`fill`](Self::fill), reporting progress as bytes arrive (from this call's fill; a call that
    /// waits for another thread's fill of the same digest reports nothing).
    pub fn fill_with_progress(&self, digest: &Digest, progress: &dyn Fn(Progress)) -> Result<Source, Error> {
        let pinned = self.shared.acquire(digest, Some(progress))?;
        self.shared.release(digest, pinned.generation);
        Ok(pinned.source)
    }

    /// Whether `digest` is on the disk tier now (without filling; verified or waiting to be re-verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.shared.disk.contains(digest)
    }

    /// Deletes `digest` from the disk tier; false if it was not there. Handles open on it keep reading
    /// the deleted file (see [`Blob`]); the next read fills it again.
    pub fn evict(&self, digest: &Digest) -> bool {
        loop {
            if let flight::Role::Leader(leader) = self.shared.flights.join(digest) {
                let removed = self.shared.disk.remove(digest, true);
                if let Some(size) = removed {
                    self.shared.counters.add(Count::Eviction, 1);
                    self.shared.counters.add(Count::EvictedBytes, size);
                }
                leader.finish(Ok(()));
                return removed.is_some();
            }
        }
    }

    /// Hashes the disk copy of `digest` again. A corrupt copy is deleted (and counted) and
    /// [`Error::DigestMismatch`] returned; the next read fills it again. [`Error::NotFound`] if it is not
    /// on disk.
    pub fn verify(&self, digest: &Digest) -> Result<(), Error> {
        loop {
            if let flight::Role::Leader(leader) = self.shared.flights.join(digest) {
                let result = match self.shared.disk.verify(digest) {
                    Ok(disk::Verdict::Good) => {
                        self.shared.counters.add(Count::Verified, 1);
                        Ok(())
                    }
                    Ok(disk::Verdict::Corrupt(actual)) => {
                        self.shared.counters.add(Count::Corrupt, 1);
                        self.shared.disk.remove(digest, true);
                        Err(Error::DigestMismatch { digest: digest.to_string(), actual: actual.to_string() })
                    }
                    Ok(disk::Verdict::Missing) => {
                        self.shared.disk.remove(digest, true);
                        Err(Error::not_found(digest))
                    }
                    Err(e) => Err(e),
                };
                leader.finish(Ok(()));
                return result;
            }
        }
    }

    /// Waits until the upload queue is empty and no upload is running, at most `timeout`; true if so.
    pub fn wait_for_uploads(&self, timeout: Duration) -> bool {
        self.shared.uploads.wait_idle(timeout)
    }

    /// Counters, gauges and fill latency now.
    pub fn stats(&self) -> TierStats {
        self.shared.stats()
    }

    /// The disk tier's directory.
    pub fn disk_dir(&self) -> &Path {
        self.shared.disk.dir()
    }

    #[cfg(feature = "otel")]
    pub(crate) fn stats_source(&self) -> StatsSource {
        StatsSource(Arc::downgrade(&self.shared))
    }
}

/// Reads a store's stats for an exporter without keeping the store alive.
#[cfg(feature = "otel")]
#[derive(Debug, Clone)]
pub(crate) struct StatsSource(std::sync::Weak<Shared>);

#[cfg(feature = "otel")]
impl StatsSource {
    pub(crate) fn stats(&self) -> Option<TierStats> {
        self.0.upgrade().map(|s| s.stats())
    }
}

impl Drop for TieredStore {
    /// Stops the uploaders after their current upload; queued uploads are dropped (call
    /// [`wait_for_uploads`](TieredStore::wait_for_uploads) first to finish them).
    fn drop(&mut self) {
        let dropped = self.shared.uploads.close();
        self.shared.counters.add(Count::UploadDropped, dropped as u64);
        for t in self.uploaders.drain(..) {
            let _ = t.join();
        }
    }
}
