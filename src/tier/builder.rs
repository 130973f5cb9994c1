//! [`TieredStoreBuilder`]: the disk directory and bound, the remote tier, the origin, and the knobs.

use std::path::PathBuf;
use std::time::Duration;

use super::disk::DiskTier;
use super::shared::Shared;
use super::{Error, Origin, RemoteTier, TieredStore};
use crate::sync::{Arc, spawn_named};

/// Configures a [`TieredStore`]; see [`TieredStore::builder`].
#[derive(Debug)]
pub struct TieredStoreBuilder {
    name: String,
    disk_dir: Option<PathBuf>,
    disk_max_bytes: u64,
    remote: Option<Box<dyn RemoteTier>>,
    origin: Option<Box<dyn Origin>>,
    origin_gzip: bool,
    upload_queue: usize,
    upload_threads: usize,
    breaker_failures: u32,
    breaker_cool_down: Duration,
}

impl Default for TieredStoreBuilder {
    fn default() -> Self {
        TieredStoreBuilder {
            name: "tier".into(),
            disk_dir: None,
            disk_max_bytes: 10 << 30,
            remote: None,
            origin: None,
            origin_gzip: false,
            upload_queue: 64,
            upload_threads: 1,
            breaker_failures: 5,
            breaker_cool_down: Duration::from_secs(5),
        }
    }
}

impl TieredStoreBuilder {
    /// The store's name in its stats (the `cache` label). Default `tier`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The disk tier's directory (required; created if missing). One store per directory at a time.
    pub fn disk_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.disk_dir = Some(dir.into());
        self
    }

    /// The disk bound: blobs nobody has open are evicted, least recently used first, beyond it. A blob
    /// larger than the bound cannot be stored ([`Error::TooLarge`]). Default 10 GiB.
    pub fn disk_max_bytes(mut self, bytes: u64) -> Self {
        self.disk_max_bytes = bytes;
        self
    }

    /// The remote tier shared by the fleet (e.g. a [`RedisTier`](super::RedisTier)). Optional.
    pub fn remote(mut self, remote: impl RemoteTier + 'static) -> Self {
        self.remote = Some(Box::new(remote));
        self
    }

    /// The origin, asked when neither disk nor remote tier has a blob. Optional: without one, a blob in
    /// no tier is [`Error::NotFound`].
    pub fn origin(mut self, origin: impl Origin + 'static) -> Self {
        self.origin = Some(Box::new(origin));
        self
    }

    /// The origin serves gzip-compressed blobs and digests name the *decompressed* content (layers
    /// stored decompressed): fills decode on the way to disk and verify the decoded bytes. Default off.
    pub fn origin_gzip(mut self, gzip: bool) -> Self {
        self.origin_gzip = gzip;
        self
    }

    /// How many uploads to the remote tier may wait; beyond it an upload is dropped (and counted), never
    /// waited for. Default 64.
    pub fn upload_queue(mut self, capacity: usize) -> Self {
        self.upload_queue = capacity;
        self
    }

    /// Uploader threads (when there is a remote tier). Default 1; at least 1.
    pub fn upload_threads(mut self, threads: usize) -> Self {
        self.upload_threads = threads.max(1);
        self
    }

    /// The remote tier's breaker opens after `failures` consecutive failures and lets a probe through
    /// after `cool_down`. Default 5 failures, 5 s.
    pub fn breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker_failures = failures.max(1);
        self.breaker_cool_down = cool_down;
        self
    }

    /// Opens the disk directory (taking its lock, deleting stray temporary files, adopting the blobs
    /// there) and starts the uploader threads.
    pub fn build(self) -> Result<TieredStore, Error> {
        let dir = self.disk_dir.ok_or_else(|| Error::Config { reason: "disk_dir is required".into() })?;
        if self.disk_max_bytes == 0 {
            return Err(Error::Config { reason: "disk_max_bytes must be at least 1".into() });
        }
        let (disk, _adopted) = DiskTier::open(&dir, self.disk_max_bytes)?;
        let has_remote = self.remote.is_some();
        let remote = self.remote.map(|r| (r, self.breaker_failures, self.breaker_cool_down));
        let shared = Arc::new(Shared::new(self.name, disk, remote, self.origin, self.origin_gzip, self.upload_queue));
        let uploaders = if has_remote {
            (0..self.upload_threads)
                .map(|i| {
                    let shared = Arc::clone(&shared);
                    spawn_named(&format!("cachefs-upload-{i}"), move || {
                        while let Some(d) = shared.uploads.next() {
                            // A remote tier that panics loses this upload, not the uploader.
                            let upload = std::panic::AssertUnwindSafe(|| shared.upload(&d));
                            if std::panic::catch_unwind(upload).is_err() {
                                shared.counters.add(super::stats::Count::UploadError, 1);
                            }
                            shared.uploads.done();
                        }
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        // A directory adopted from a run with a larger bound may start over this one.
        shared.enforce_bound();
        Ok(TieredStore::from_parts(shared, uploaders))
    }
}
