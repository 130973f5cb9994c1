//! A ring buffer of fixed-size records on disk (cargo feature `ring`): one producer appends records with
//! increasing ids, any number of consumers read recent ones, in this process or another.
//!
//! ```
//! use std::time::Duration;
//! use cachefs::ring::{IoMode, RingBuffer, RingOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("ticks.ring");
//! let options = RingOptions { mode: IoMode::Mmap, flush_every: 64, ..RingOptions::new(1024, 128) };
//! let ring = RingBuffer::open(&path, options)?;
//! for id in 0..2_000u64 {
//!     ring.write(id, format!("tick {id}").as_bytes())?; // ids 976..=1999 remain: 1,024 slots
//! }
//! let mut buf = Vec::new();
//! ring.read(1999, &mut buf)?;
//! assert_eq!(buf, b"tick 1999");
//! assert_eq!(&*ring.get(1998)?, b"tick 1998");       // zero-copy: the mapped bytes
//! assert!(ring.read(5, &mut buf).unwrap_err().is_not_found()); // overwritten on a later lap
//! assert!(ring.wait_for(1999, Duration::ZERO)?);
//! ring.flush()?;                                      // durable
//!
//! let reader = RingBuffer::open_read_only(&path, Default::default())?; // e.g. in another process
//! assert_eq!(reader.latest_id(), Some(1999));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! Record `id` lives in slot `id % records`. Each slot holds a frame (`record.rs`): a 24-byte header with
//! a non-zero magic, the id, lengths, a codec flag and a CRC32 over all of them and the payload, then
//! the payload. A read checks the frame and that it holds the id asked for: a slot overwritten on a later
//! lap, or never written, gives [`Error::NotFound`]; a torn or damaged frame gives [`Error::Corrupt`] and
//! is counted, never served; a zero-filled slot is never a record. Slots are spread over shard files
//! (`ring.dat`, `ring.dat.1`, …) of at most `shard_bytes`, each starting with a 4 KiB header page that
//! records the geometry, the format version and the ring's random nonce (`header.rs`); shard 0's page
//! also holds the control block: the published and flushed ids and the write sequence. Files are
//! preallocated with `fallocate`, so a full device fails [`RingBuffer::open`], never a mapped write.
//!
//! # Ids
//! A write's id must be greater than the latest id, and at most one lap (`records`) past it (the first
//! write may use any id): ids may skip, but a wrong id far in the future would otherwise make the ring
//! unwritable for good. `u64::MAX` is reserved. Reading an id past the latest is `NotFound` (not yet
//! written; [`RingBuffer::wait_for`] it), or [`Error::TooFarAhead`] beyond one lap.
//!
//! # Concurrent calls
//! A `RingBuffer` is `Send + Sync`: share it with `Arc` and call anything from any thread. Writes (and
//! flushes) are serialised by a mutex; reads never take it, and never wait for a write except as below.
//! An advisory lock (`flock`) on `ring.dat` admits one writer handle per ring, across processes; any
//! number of [`open_read_only`](RingBuffer::open_read_only) handles may read it, in any process, and see
//! each record as soon as it is published (not only once flushed).
//!
//! **Why readers never see a half-written record, and why that is sound.** Two mechanisms:
//!
//! - *In the writer's process* readers pin the slot (`pins.rs`): one atomic word per stripe of slots
//!   holds a pin count and a writer bit, and readers and the writer only ever change it with
//!   read-modify-writes, so the word's single modification order decides who came first: a reader that
//!   pinned before the writer's claim holds the writer off; one that came after sees the bit and stays
//!   out. A pinned slot's bytes therefore cannot change, and a reader may check them in place with plain
//!   loads and even lend them as `&[u8]` ([`RingBuffer::get`]) for as long as the pin lives; the
//!   acquire/release pairs on the word order the writer's stores before later pins and the pinned loads
//!   before the next store. Loom checks this protocol (`loom-tests/tests/ring.rs`). The writer meets a
//!   pinned slot only one lap later; it then waits for the guard (at most a second, then
//!   [`Error::SlotPinned`], writing nothing).
//! - *Read-only handles* cannot pin: the writer may be another process. They copy the slot between two
//!   reads of the header's write sequence (a seqlock: odd while the writer changes a slot) and trust the
//!   copy only if the sequence did not move; otherwise they copy again (bounded), and a slot being
//!   overwritten is `NotFound`. The writer stores mapped records as aligned 8-byte atomic words and
//!   readers copy them as such, so even a racing copy within one process is not a data race; the
//!   sequence and the CRC decide whether to trust it. A read-only handle never lends mapped bytes (its
//!   [`Record`]s are validated copies): no guard could stop another process's writer.
//!
//! # Guarantees
//! - **Durability**: [`flush`](RingBuffer::flush) `fdatasync`s the shards written since the last flush,
//!   then the header naming the latest id (`write.rs`). After a crash (even `SIGKILL` mid-write) the
//!   writer's next open recovers the latest id from the header's hints, each verified against the record
//!   it names (`recover.rs`): every record flushed before the crash is served byte-identical, records
//!   written but not flushed are served if intact or missing, and none is served torn. One exception,
//!   which follows from [`write`](RingBuffer::write) overwriting the record one lap older: if the crash
//!   cut short the write of `latest + 1`, the record it was replacing (`latest + 1 - records`, the oldest
//!   of the lap) is gone too, flushed or not, and reads `NotFound`.
//! - **Geometry**: reopening with another geometry is [`Error::GeometryMismatch`]; a file shorter than
//!   its header requires is [`Error::FileTooShort`]; neither changes anything on disk.
//! - **Memory**: in [`IoMode::Mmap`] the files are mapped whole but pages become resident only when read
//!   or written (the mappings are advised `MADV_RANDOM`, so a read faults in its own pages, not a
//!   read-ahead window), and a cold ring costs almost no memory; handles opened with `prefetch` are
//!   advised `MADV_SEQUENTIAL` instead, for fast scans. In [`IoMode::Pread`] no record data is mapped
//!   and reads reuse pooled buffers (no allocation per read in steady state).
//! - The files must not be truncated or written by anything else while a handle maps them: a mapped
//!   access past the end of a file is `SIGBUS`, as for any memory-mapped file. On copy-on-write
//!   filesystems (btrfs, ZFS) preallocation does not reserve room for overwrites, so a full device can
//!   still fail a later write there (`pread` mode reports it as an error; a mapped write would fault):
//!   prefer `IoMode::Pread` or a filesystem that overwrites in place (ext4, XFS) for rings.

mod batch;
mod error;
mod geometry;
mod guard;
mod header;
mod io;
mod options;
mod pins;
mod pool;
mod read;
mod record;
mod recover;
mod shard;
mod stats;
mod verify;
mod wait;
mod write;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use batch::ReadBatch;
pub use error::Error;
pub use geometry::Geometry;
pub use guard::Record;
pub use options::{Compression, IoMode, ReadOptions, RingOptions};
pub use stats::RingStats;
pub use verify::VerifyReport;

pub(crate) use stats::Telemetry;

/// The on-disk format version this build reads and writes (recorded in every shard's header).
pub const FORMAT_VERSION: u32 = header::VERSION;

/// The pin protocol between this process's writer and its readers (`pins.rs`), exposed to the loom
/// models in `loom-tests` only (built with `--cfg loom`), through thin wrappers.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_model {
    use std::time::Duration;

    /// [`pins::SlotGate`](super::pins::SlotGate).
    #[derive(Debug, Default)]
    pub struct Gate(super::pins::SlotGate);

    /// A reader's pin.
    #[derive(Debug)]
    pub struct Pinned<'a>(#[allow(dead_code)] super::pins::Pin<'a>);

    /// The writer's claim.
    #[derive(Debug)]
    pub struct Claim(super::pins::WriteClaim);

    impl Gate {
        /// `SlotGate::pin`.
        pub fn pin(&self, slot: u64) -> Option<Pinned<'_>> {
            self.0.pin(slot).map(Pinned)
        }

        /// `SlotGate::begin_write`, waiting as long as it takes.
        pub fn begin_write(&self, slot: u64) -> Claim {
            Claim(self.0.begin_write(slot, Duration::MAX).expect("no deadline").0)
        }

        /// `SlotGate::end_write`.
        pub fn end_write(&self, claim: Claim) {
            self.0.end_write(claim.0)
        }
    }
}

use geometry::Layout;
use header::Control;
use io::{MmapStore, PreadStore, Store};
use pool::FramePool;
use record::{FRAME_HEADER, Seed};
use shard::Shards;
use wait::Waiters;
use write::Writer;

/// A ring of fixed-size records on disk; see the [module documentation](self).
pub struct RingBuffer {
    /// Shard 0, the ring's name in errors.
    path: PathBuf,
    files: Vec<PathBuf>,
    layout: Layout,
    /// The CRC seed of this ring's frames.
    seed: Seed,
    mode: IoMode,
    store: Box<dyn Store>,
    control: Arc<Control>,
    /// `None` for read-only handles.
    writer: Option<Writer>,
    waiters: Waiters,
    pool: FramePool,
    telemetry: Arc<Telemetry>,
}

impl fmt::Debug for RingBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuffer")
            .field("path", &self.path)
            .field("geometry", &self.layout.geometry())
            .field("mode", &self.mode)
            .field("read_only", &self.writer.is_none())
            .field("latest_id", &self.latest_id())
            .finish_non_exhaustive()
    }
}

impl RingBuffer {
    /// Opens the ring at `path` for writing, creating it (preallocated) if it does not exist or is an
    /// empty file, and recovers its latest id after a crash. `path` is shard 0; further shards are
    /// `path.1`, `path.2`, …. A creation interrupted by a crash is finished by the next open; any other
    /// file at `path` whose first page is not a ring header (zeros included) is refused and left as it is,
    /// and so is a file in the way of a new ring's further shard.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for an impossible geometry; [`Error::Locked`] if another handle has the
    /// ring open for writing (in any process); [`Error::GeometryMismatch`], [`Error::UnsupportedVersion`],
    /// [`Error::BadHeader`] or [`Error::FileTooShort`] if the files on disk do not match; [`Error::StorageFull`]
    /// if the device cannot hold a new ring (nothing is left behind); [`Error::Io`] otherwise, e.g. for
    /// a missing directory.
    pub fn open(path: impl AsRef<Path>, options: RingOptions) -> Result<RingBuffer, Error> {
        let path = path.as_ref();
        let layout = Layout::new(options.geometry())?;
        let shards = Shards::open_writer(path, layout)?;
        let control = Control::map(shards.get(0).file(), true).map_err(|e| Error::io(path, e))?;
        let mut ring = RingBuffer::assemble(path, shards, control, options.mode, options.prefetch, options.name)?;
        let recovered = recover::recover(&*ring.store, layout, &ring.seed, &ring.control)?;
        if let Some(slot) = recovered.torn {
            ring.store.write_frame(slot, &[0; FRAME_HEADER], &[])?;
        }
        let latest = recovered.latest;
        ring.control.reset_after_crash();
        ring.control.publish(latest.map_or(0, |id| id + 1));
        ring.writer = Some(Writer::new(latest, layout.shards(), options.flush_every, options.compression));
        Ok(ring)
    }

    /// Opens an existing ring read-only, typically in another process than its writer. Its geometry
    /// comes from its header. The handle sees records as soon as the writer publishes them; writes are
    /// [`Error::ReadOnly`]. See the module docs for how its reads stay consistent.
    ///
    /// # Errors
    /// As [`open`](RingBuffer::open), except `Locked` and `GeometryMismatch`; a ring whose creation has
    /// not finished yet is [`Error::BadHeader`].
    pub fn open_read_only(path: impl AsRef<Path>, options: ReadOptions) -> Result<RingBuffer, Error> {
        let path = path.as_ref();
        let shards = Shards::open_reader(path)?;
        let control = Control::map(shards.get(0).file(), false).map_err(|e| Error::io(path, e))?;
        RingBuffer::assemble(path, shards, control, options.mode, options.prefetch, options.name)
    }

    fn assemble(
        path: &Path,
        shards: Shards,
        control: Control,
        mode: IoMode,
        prefetch: bool,
        name: String,
    ) -> Result<RingBuffer, Error> {
        let layout = shards.layout();
        let (seed, files) = (Seed::new(shards.nonce()), shards.paths());
        let write = control.is_writable();
        let store: Box<dyn Store> = match mode {
            IoMode::Mmap => Box::new(MmapStore::new(shards, write, prefetch)?),
            IoMode::Pread => Box::new(PreadStore::new(shards, prefetch)),
        };
        let control = Arc::new(control);
        let telemetry =
            Arc::new(Telemetry::new(name, control.clone(), mode, !write, layout.geometry(), layout.shards()));
        Ok(RingBuffer {
            path: path.to_path_buf(),
            files,
            layout,
            seed,
            mode,
            store,
            control,
            writer: None,
            waiters: Waiters::default(),
            pool: FramePool::new(layout.record_size()),
            telemetry,
        })
    }

    /// Writes record `id`. Readers see it when this returns; it is durable after the next
    /// [`flush`](RingBuffer::flush) (automatic every `flush_every` records).
    ///
    /// An empty payload is a valid record. Overwrites the record one lap older (`id - records`), if any.
    ///
    /// # Errors
    /// [`Error::NotIncreasing`], [`Error::TooFarAhead`] (more than one lap past the latest id),
    /// [`Error::ReservedId`] (`u64::MAX`), [`Error::PayloadTooLarge`] (more than `record_size - 24`
    /// bytes, or than that compressed), [`Error::SlotPinned`], [`Error::ReadOnly`]; an I/O error (in
    /// `pread` mode) leaves the slot torn and the latest id unchanged. Failed checks write nothing.
    pub fn write(&self, id: u64, payload: &[u8]) -> Result<(), Error> {
        self.write_record(id, payload)
    }

    /// Writes records in order under one acquisition of the writer's lock, and returns how many.
    ///
    /// Ids are checked (increasing, within a lap of each other) before anything is written, and so are
    /// payload lengths when compression is off. A failure after that (a payload that does not fit even
    /// compressed, I/O) stops the batch: the records before it stay written ([`latest_id`](Self::latest_id)
    /// tells how far it got).
    pub fn write_many(&self, records: &[(u64, &[u8])]) -> Result<usize, Error> {
        self.write_batch(records)
    }

    /// Reads the payload of record `id` into `out` (cleared first) and returns its length.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the record is not in the ring (never written, not yet written, or
    /// overwritten on a later lap); [`Error::TooFarAhead`] for an id more than a lap past the latest;
    /// [`Error::Corrupt`] if its frame fails the CRC or other checks (counted, never served); I/O errors.
    pub fn read(&self, id: u64, out: &mut Vec<u8>) -> Result<usize, Error> {
        self.read_into(id, out)
    }

    /// Lends the payload of record `id`: in place (no copy) from the writer's handle in
    /// [`IoMode::Mmap`], otherwise as a validated copy. See [`Record`] for what holding it costs.
    ///
    /// # Errors
    /// As [`read`](RingBuffer::read).
    pub fn get(&self, id: u64) -> Result<Record<'_>, Error> {
        self.lend(id)
    }

    /// Reads every record of `ids` that is in the ring into `batch` (cleared first), in id order, and
    /// returns how many. Ids older than one lap before the latest are skipped without looking (their
    /// slots hold newer records unless ids skipped), as are ids not written; corrupt records are listed
    /// in [`ReadBatch::corrupt`] and counted, never served.
    ///
    /// # Errors
    /// I/O errors only.
    pub fn read_many(&self, ids: Range<u64>, batch: &mut ReadBatch) -> Result<usize, Error> {
        self.read_range(ids, batch)
    }

    /// The latest id published by the writer, or `None` if nothing was written.
    pub fn latest_id(&self) -> Option<u64> {
        self.control.published().checked_sub(1)
    }

    /// Waits until record `id` is published (`true`) or `timeout` passes (`false`), without polling in
    /// the writer's process (a condition variable: woken within the scheduler's latency); read-only
    /// handles poll the header with a back-off capped at 1 ms, so an idle one sees a record up to about
    /// 1 ms late plus scheduling delay (see `wait.rs` for measured figures). A `timeout` too large to add
    /// to now waits forever.
    ///
    /// # Errors
    /// [`Error::TooFarAhead`] if `id` is more than a lap past the latest id.
    pub fn wait_for(&self, id: u64, timeout: Duration) -> Result<bool, Error> {
        let records = self.layout.records();
        if let Some(latest) = self.latest_id()
            && id > latest
            && id - latest > records
        {
            return Err(Error::TooFarAhead { id, latest, records });
        }
        let deadline = Instant::now().checked_add(timeout);
        Ok(if self.writer.is_some() {
            self.waiters.wait(id, deadline, || self.control.published())
        } else {
            wait::poll(&self.control, id, deadline)
        })
    }

    /// Makes every record written so far durable (a no-op on read-only handles).
    ///
    /// # Errors
    /// I/O errors of `fdatasync`; the records stay pending and the next flush retries them.
    pub fn flush(&self) -> Result<(), Error> {
        self.flush_writer()
    }

    /// Flushes and closes the handle, releasing the writer's lock. Dropping a handle flushes too, but
    /// cannot report a failure.
    ///
    /// # Errors
    /// As [`flush`](RingBuffer::flush).
    pub fn close(self) -> Result<(), Error> {
        self.flush()
    }

    /// Counters and gauges of this handle (latest and flushed ids are the ring's).
    pub fn stats(&self) -> RingStats {
        self.telemetry.report()
    }

    /// The ring's geometry.
    pub fn geometry(&self) -> Geometry {
        self.layout.geometry()
    }

    /// Whether this handle was opened with [`open_read_only`](RingBuffer::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// The ring's files, shard 0 first.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The largest payload a record holds uncompressed: `record_size - 24`.
    pub fn max_payload(&self) -> usize {
        self.layout.record_size() - FRAME_HEADER
    }

    /// The counters, for exporters that outlive a borrow (`otel`).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(crate) fn telemetry(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        if self.writer.as_ref().is_some_and(Writer::has_unflushed) {
            // Best effort: `close` is the way to see a failure.
            let _ = self.flush_writer();
        }
    }
}
