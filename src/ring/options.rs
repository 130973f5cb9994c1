//! What a caller chooses when opening a ring: its geometry (fixed at creation) and how this handle
//! reads and writes it (I/O mode, read-ahead, flush cadence, compression), which may differ per open.

use super::Geometry;

/// How records move between the files and memory. Both modes read and write the same files, so a ring
/// written in one mode can be read in the other, by this process or another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IoMode {
    /// The shard files are memory-mapped (`memmap2`, `MAP_SHARED`): reads validate records in place,
    /// [`RingBuffer::get`](super::RingBuffer::get) lends the mapped bytes without copying, and cold pages
    /// cost no memory until touched.
    #[default]
    Mmap,
    /// `pread`/`pwritev` on the files, with pooled buffers (no allocation per read in steady state). The
    /// process's memory never maps record data; only the 4 KiB header page is mapped.
    Pread,
}

impl IoMode {
    /// `"mmap"` or `"pread"`.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Mmap => "mmap",
            IoMode::Pread => "pread",
        }
    }
}

/// Per-record compression of payloads on write. Readers need no setting: each frame records how its
/// payload is stored, so rings may mix compressed and plain records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Payloads are stored as given.
    #[default]
    None,
    /// LZ4 block compression (`lz4_flex`) when it makes the payload smaller; otherwise stored as given.
    /// A payload larger than a record is accepted when its compressed form fits.
    Lz4,
}

/// How to open (or create) a ring for writing: [`RingBuffer::open`](super::RingBuffer::open).
///
/// `records`, `record_size` and `shard_bytes` are the ring's geometry: they are written into its header
/// when the ring is created and must match when it is opened again ([`Error::GeometryMismatch`]
/// otherwise). The other fields apply to this handle only.
///
/// [`Error::GeometryMismatch`]: super::Error::GeometryMismatch
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingOptions {
    /// Slots in the ring: record `id` lives in slot `id % records`, so the ring keeps the latest
    /// `records` ids. At least 1.
    pub records: u64,
    /// Bytes per slot, including the 24-byte frame header: the largest payload is `record_size - 24`.
    /// A multiple of 8, from 32 to 64 MiB.
    pub record_size: u32,
    /// Largest size of one shard file (`ring.dat`, `ring.dat.1`, …). Each file holds a 4 KiB header and
    /// as many whole records as fit; it need not be a multiple of `record_size`. At most 1,024 files.
    pub shard_bytes: u64,
    /// Memory-mapped or `pread`/`pwrite` I/O.
    pub mode: IoMode,
    /// Read ahead, for handles that read the ring in order (consumers tailing or scanning it): the
    /// kernel's sequential read-ahead is switched on for the files (`MADV_SEQUENTIAL` on the mappings,
    /// `POSIX_FADV_SEQUENTIAL` on the files), so it loads records ahead of the reader in large
    /// background requests. Off (the default), mapped rings are advised `MADV_RANDOM`: a read makes only
    /// its own pages resident, which suits readers that jump between ids and keeps a cold ring's memory
    /// to what is read, but makes a cold sequential scan slow (one page per fault).
    pub prefetch: bool,
    /// Flush (make durable) after every `flush_every` records written. 0: only on
    /// [`flush`](super::RingBuffer::flush), [`close`](super::RingBuffer::close) and drop.
    pub flush_every: u32,
    /// Compression of payloads written through this handle.
    pub compression: Compression,
    /// The name reported in statistics (the `cache` label of the Prometheus and OpenTelemetry export).
    pub name: String,
}

impl Default for RingOptions {
    /// 65,536 records of 4 KiB (256 MiB) in shard files of at most 1 GiB, mapped, no read-ahead, flushed
    /// on demand, uncompressed, named `ring`.
    fn default() -> Self {
        RingOptions {
            records: 65_536,
            record_size: 4096,
            shard_bytes: 1 << 30,
            mode: IoMode::Mmap,
            prefetch: false,
            flush_every: 0,
            compression: Compression::None,
            name: "ring".to_string(),
        }
    }
}

impl RingOptions {
    /// The defaults with this geometry: `records` slots of `record_size` bytes.
    pub fn new(records: u64, record_size: u32) -> Self {
        RingOptions { records, record_size, ..RingOptions::default() }
    }

    /// The geometry these options ask for.
    pub fn geometry(&self) -> Geometry {
        Geometry { records: self.records, record_size: self.record_size, shard_bytes: self.shard_bytes }
    }
}

/// How to open an existing ring read-only: [`RingBuffer::open_read_only`](super::RingBuffer::open_read_only).
/// The geometry comes from the ring's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Memory-mapped or `pread` I/O (independent of the writer's mode).
    pub mode: IoMode,
    /// Read ahead for a reader that reads in order, as [`RingOptions::prefetch`].
    pub prefetch: bool,
    /// The name reported in statistics.
    pub name: String,
}

impl Default for ReadOptions {
    /// Mapped, no read-ahead, named `ring`.
    fn default() -> Self {
        ReadOptions { mode: IoMode::Mmap, prefetch: false, name: "ring".to_string() }
    }
}
