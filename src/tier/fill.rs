//! The fill protocol, run by the one thread that leads a blob's flight.
//!
//! 1. Look again: a flight that ended just before this one may have filled it. A blob on disk but
//!    unverified is hashed now; a corrupt one is deleted and filled like an absent one.
//! 2. The remote tier, if the breaker allows: stream into a temporary file, hashing. A miss, an
//!    invalid copy (including one whose bytes do not match the digest) or an error falls through to the
//!    origin; only errors count towards the breaker.
//! 3. The origin: stream (through a gzip decoder when the origin serves gzip) into a temporary file,
//!    hashing the decoded bytes. A mismatch is an error and nothing is stored.
//! 4. Verify, fsync, rename, fsync the directory, record the marker (`temp.rs`, `disk.rs`).
//! 5. After an origin fill, queue an upload to the remote tier; if the queue is full, drop it.
//!
//! A failure to write the disk tier (full, blob over the bound) ends the fill at once with that error:
//! the other tier would fail the same way.

use std::time::Instant;

use flate2::write::MultiGzDecoder;

use super::disk::Lookup;
use super::shared::{RemoteSlot, Shared};
use super::stats::Count;
use super::temp::TempBlob;
use super::{BlobSink, Digest, Error, Progress, RemoteGet, Source};

impl Shared {
    /// Makes `d` present and verified on disk (not pinned). Run only by the leader of `d`'s flight.
    pub(crate) fn fill_locked(&self, d: &Digest, progress: Option<&dyn Fn(Progress)>) -> Result<Source, Error> {
        match self.disk.pin(d) {
            Lookup::Pinned { generation, .. } => {
                self.disk.unpin(d, generation);
                return Ok(Source::Disk);
            }
            Lookup::Unverified => {
                if self.verify_locked(d)? {
                    return Ok(Source::Disk);
                }
            }
            Lookup::Absent => {}
        }
        if let Some(remote) = &self.remote {
            if remote.breaker.allow() {
                if let Some(()) = self.fill_from_remote(remote, d, progress)? {
                    return Ok(Source::Remote);
                }
            } else {
                self.counters.add(Count::RemoteSkipped, 1);
            }
        }
        self.fill_from_origin(d, progress)?;
        Ok(Source::Origin)
    }

    /// `Ok(None)`: the remote tier did not deliver a good copy (counted), go on to the origin.
    fn fill_from_remote(
        &self,
        remote: &RemoteSlot,
        d: &Digest,
        progress: Option<&dyn Fn(Progress)>,
    ) -> Result<Option<()>, Error> {
        let started = Instant::now();
        let mut temp = TempBlob::create(self.disk.dir(), d, self.disk.max_bytes())?;
        let outcome = remote.tier.get(d, &mut BlobSink::reporting(&mut temp, Source::Remote, progress));
        if let Some(failure) = temp.take_failure() {
            return Err(failure);
        }
        match outcome {
            Err(_) => {
                self.counters.add(Count::RemoteError, 1);
                if remote.breaker.failure() {
                    self.counters.add(Count::BreakerOpened, 1);
                }
                Ok(None)
            }
            Ok(RemoteGet::Miss) => {
                remote.breaker.success();
                self.counters.add(Count::RemoteMiss, 1);
                Ok(None)
            }
            Ok(RemoteGet::Invalid { .. }) => {
                remote.breaker.success();
                self.counters.add(Count::RemoteInvalid, 1);
                Ok(None)
            }
            Ok(RemoteGet::Hit) => {
                remote.breaker.success();
                match temp.finish(&self.disk.blob_path(d)) {
                    Ok((file, size)) => {
                        self.disk.commit(d, &file, size)?;
                        self.counters.add(Count::RemoteHit, 1);
                        self.counters.add(Count::RemoteBytes, size);
                        self.counters.add(Count::Fill, 1);
                        self.latency.record(0, started);
                        Ok(Some(()))
                    }
                    Err(Error::DigestMismatch { .. }) => {
                        self.counters.add(Count::RemoteInvalid, 1);
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn fill_from_origin(&self, d: &Digest, progress: Option<&dyn Fn(Progress)>) -> Result<(), Error> {
        let origin = self.origin.as_ref().ok_or_else(|| Error::not_found(d))?;
        let started = Instant::now();
        self.counters.add(Count::OriginFetch, 1);
        let result = self.fetch_origin(origin.as_ref(), d, progress);
        if result.is_err() {
            self.counters.add(Count::OriginError, 1);
        }
        let (temp, received) = result?;
        self.counters.add(Count::OriginBytes, received);
        let (file, size) = temp.finish(&self.disk.blob_path(d)).inspect_err(|_| {
            self.counters.add(Count::OriginError, 1);
        })?;
        self.disk.commit(d, &file, size)?;
        self.counters.add(Count::Fill, 1);
        self.latency.record(1, started);
        if self.remote.is_some() && !self.uploads.offer(*d) {
            self.counters.add(Count::UploadDropped, 1);
        }
        Ok(())
    }

    /// Streams the origin's bytes (decoded when gzip) into a new temporary blob; returns it unverified,
    /// with the number of bytes the origin sent.
    fn fetch_origin(
        &self,
        origin: &dyn super::Origin,
        d: &Digest,
        progress: Option<&dyn Fn(Progress)>,
    ) -> Result<(TempBlob, u64), Error> {
        let mut temp = TempBlob::create(self.disk.dir(), d, self.disk.max_bytes())?;
        let (result, received) = if self.origin_gzip {
            let mut decoder = MultiGzDecoder::new(&mut temp);
            let mut sink = BlobSink::reporting(&mut decoder, Source::Origin, progress);
            let result = origin.fetch(d, &mut sink);
            let received = sink.received();
            let result = result.and_then(|()| {
                decoder.try_finish().map_err(|e| Error::origin(d, format!("the gzip stream is invalid: {e}")))
            });
            (result, received)
        } else {
            let mut sink = BlobSink::reporting(&mut temp, Source::Origin, progress);
            let result = origin.fetch(d, &mut sink);
            (result, sink.received())
        };
        if let Some(failure) = temp.take_failure() {
            return Err(failure);
        }
        result.map(|()| (temp, received))
    }
}
