//! The state one store shares with its uploader threads, and the read path over it: find the blob on
//! disk and pin it, or fill it under its flight; release it and keep the disk under its bound.
//!
//! Each part owns its state and its lock (disk index, flight table, upload queue, breaker); this type
//! only sequences them and never holds one part's lock while calling into another.

use std::fs::File;
use std::time::Duration;

use super::breaker::Breaker;
use super::disk::{DiskTier, Fingerprint, Lookup, Verdict};
use super::flight::{Flights, Role};
use super::stats::{Count, Counters, Gauges, OPS};
use super::upload::UploadQueue;
use super::{BreakerState, Digest, Error, Origin, Progress, RemoteTier, Source, TierStats};
use crate::latency::{LatencyConfig, LatencyRecorder};

/// How many times a read goes round "not on disk, wait for a flight, pin" before giving up on a blob
/// that keeps being evicted by other threads (only explicit evictions or a disk bound smaller than the
/// blobs read at once make that happen; a thread that leads a fill always gets its blob).
const ATTEMPTS: usize = 64;

#[derive(Debug)]
pub(crate) struct RemoteSlot {
    pub(crate) tier: Box<dyn RemoteTier>,
    pub(crate) breaker: Breaker,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) disk: DiskTier,
    pub(crate) remote: Option<RemoteSlot>,
    pub(crate) origin: Option<Box<dyn Origin>>,
    pub(crate) origin_gzip: bool,
    pub(crate) flights: Flights,
    pub(crate) uploads: UploadQueue,
    pub(crate) counters: Counters,
    pub(crate) latency: LatencyRecorder,
}

/// A blob pinned on disk for a reader, with its file open.
#[derive(Debug)]
pub(crate) struct Pinned {
    pub(crate) file: File,
    pub(crate) size: u64,
    pub(crate) generation: u64,
    pub(crate) source: Source,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        disk: DiskTier,
        remote: Option<(Box<dyn RemoteTier>, u32, Duration)>,
        origin: Option<Box<dyn Origin>>,
        origin_gzip: bool,
        upload_queue: usize,
    ) -> Self {
        Shared {
            name,
            disk,
            remote: remote
                .map(|(tier, failures, cool_down)| RemoteSlot { tier, breaker: Breaker::new(failures, cool_down) }),
            origin,
            origin_gzip,
            flights: Flights::default(),
            uploads: UploadQueue::new(upload_queue),
            counters: Counters::new(),
            latency: LatencyRecorder::new(OPS, LatencyConfig { sample_every: 1 }),
        }
    }

    /// Pins `d` on disk with its file open, filling it first if needed.
    ///
    /// The leader of a fill pins the blob and opens its file before it ends its flight, and nothing
    /// removes a blob while its flight runs, so a thread that filled a blob always reads it. A thread that waited for
    /// another's flight pins afterwards and may find the blob evicted again (an explicit `evict`, or a
    /// disk bound smaller than the blobs in use); it then goes round again, at most `ATTEMPTS` times.
    pub(crate) fn acquire(&self, d: &Digest, progress: Option<&dyn Fn(Progress)>) -> Result<Pinned, Error> {
        let source = Source::Disk;
        let mut lookup = self.disk.pin(d);
        for _ in 0..ATTEMPTS {
            if let Lookup::Pinned { size, verified, generation } = lookup
                && let Some(pinned) = self.open_pinned(d, size, verified, generation, source)?
            {
                return Ok(pinned);
            }
            lookup = match self.flights.join(d) {
                Role::Leader(leader) => {
                    let result = self.fill_locked(d, progress);
                    // Pinned and opened before the flight ends: an `evict` (which waits for the flight)
                    // may then unlink the file, but this thread reads the open file regardless.
                    let opened = match (&result, self.disk.pin(d)) {
                        (Ok(filled), Lookup::Pinned { size, verified, generation }) => {
                            self.open_pinned(d, size, verified, generation, *filled)
                        }
                        _ => Ok(None),
                    };
                    if result.is_err() {
                        self.counters.add(Count::FillError, 1);
                    }
                    leader.finish(result.as_ref().map(|_| ()).map_err(Clone::clone));
                    result?;
                    if let Some(pinned) = opened? {
                        return Ok(pinned);
                    }
                    Lookup::Absent
                }
                Role::Waited(result) => {
                    result?;
                    self.disk.pin(d)
                }
            };
        }
        Err(Error::Evicted { digest: d.to_string() })
    }

    /// Opens a pinned blob and checks that its file is still the version that was verified. `None`
    /// (pin released) when it changed or vanished: the caller fills or re-verifies it.
    fn open_pinned(
        &self,
        d: &Digest,
        size: u64,
        verified: Fingerprint,
        generation: u64,
        source: Source,
    ) -> Result<Option<Pinned>, Error> {
        let path = self.disk.blob_path(d);
        match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok((file, meta)) if Fingerprint::of(&meta) == verified => {
                if source == Source::Disk {
                    self.counters.add(Count::DiskHit, 1);
                } else {
                    // A new blob: make room for it now that it is pinned.
                    self.enforce_bound();
                }
                Ok(Some(Pinned { file, size, generation, source }))
            }
            Ok(_) => {
                // Written to since it was verified: verify again before serving it.
                self.disk.unpin(d, generation);
                self.disk.distrust(d);
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Deleted behind the store's back.
                self.disk.unpin(d, generation);
                self.disk.remove(d, true);
                Ok(None)
            }
            Err(e) => {
                self.disk.unpin(d, generation);
                Err(Error::io(&path, e))
            }
        }
    }

    /// Releases a pin taken by `acquire`, and evicts if the disk is over its bound.
    pub(crate) fn release(&self, d: &Digest, generation: u64) {
        self.disk.unpin(d, generation);
        if self.disk.over_bound() {
            self.enforce_bound();
        }
    }

    /// Under `d`'s flight: a blob on disk but unverified is hashed; a corrupt one is deleted. Returns
    /// whether a verified copy is on disk now.
    pub(crate) fn verify_locked(&self, d: &Digest) -> Result<bool, Error> {
        match self.disk.verify(d)? {
            Verdict::Good => {
                self.counters.add(Count::Verified, 1);
                Ok(true)
            }
            Verdict::Corrupt(_) => {
                self.counters.add(Count::Corrupt, 1);
                self.disk.remove(d, true);
                Ok(false)
            }
            Verdict::Missing => {
                self.disk.remove(d, true);
                Ok(false)
            }
        }
    }

    /// Evicts least recently used blobs that nobody has open until the disk is under its bound. A blob
    /// whose flight is running (being filled, verified, or evicted by another thread) is skipped.
    pub(crate) fn enforce_bound(&self) {
        for victim in self.disk.eviction_candidates() {
            if !self.disk.over_bound() {
                break;
            }
            if let Some(leader) = self.flights.try_lead(&victim) {
                if let Some(size) = self.disk.remove(&victim, false) {
                    self.counters.add(Count::Eviction, 1);
                    self.counters.add(Count::EvictedBytes, size);
                }
                leader.finish(Ok(()));
            }
        }
    }

    /// Uploads one blob from disk to the remote tier (on an uploader thread).
    pub(crate) fn upload(&self, d: &Digest) {
        let Some(remote) = &self.remote else { return };
        if !remote.breaker.allow() {
            self.counters.add(Count::UploadDropped, 1);
            return;
        }
        let Lookup::Pinned { size, generation, .. } = self.disk.pin(d) else {
            return; // evicted (or distrusted) since it was queued: nothing to upload
        };
        let path = self.disk.blob_path(d);
        // The blob may have been evicted (explicitly) between the pin and the open: nothing to upload,
        // and nothing the remote tier's breaker should hear about.
        let Ok(mut file) = File::open(&path) else {
            self.release(d, generation);
            return;
        };
        let result = remote.tier.put(d, size, &mut file);
        self.release(d, generation);
        match result {
            Ok(()) => {
                remote.breaker.success();
                self.counters.add(Count::Upload, 1);
                self.counters.add(Count::UploadBytes, size);
            }
            Err(_) => {
                self.counters.add(Count::UploadError, 1);
                if remote.breaker.failure() {
                    self.counters.add(Count::BreakerOpened, 1);
                }
            }
        }
    }

    pub(crate) fn stats(&self) -> TierStats {
        let (disk_blobs, disk_bytes, open_blobs) = self.disk.usage();
        self.counters.report(
            &self.name,
            Gauges {
                upload_queue: self.uploads.len() as u64,
                breaker: self.remote.as_ref().map_or(BreakerState::Closed, |r| r.breaker.state()),
                disk_blobs,
                disk_bytes,
                disk_max_bytes: self.disk.max_bytes(),
                open_blobs,
                latency: self.latency.summaries(),
            },
        )
    }
}
