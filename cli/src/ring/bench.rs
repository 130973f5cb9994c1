//! `cachefs ring bench`: the ring against raw file I/O of the same bytes, in one run.
//!
//! For each record size there are three files of the same size: a raw baseline (preallocated, written
//! once), and a ring in each I/O mode (written one full lap first). Then, in rounds that alternate
//! between the three (cold reads in an order that rotates from round to round) so that a change in the
//! machine's load or the device's speed hits all of them alike (the median round is reported):
//! - **write**: the next records (at most `max_flushes` syncs' worth), flushing every `flush_every`;
//!   the baseline `pwrite`s the same record-sized blocks in order with an `fdatasync` as often.
//! - **cold sequential read**: after `posix_fadvise(DONTNEED)` on closed files (the pages' residency is
//!   checked with `mincore`), one lap in id order with `read_many` (256 KiB of records a call), with the
//!   `prefetch` option (the kernel's sequential read-ahead) and without; the baseline reads **the same
//!   ring's files** in 1 MiB `read`s after `posix_fadvise(SEQUENTIAL)`, in the same round. (On a virtual
//!   disk the host's cache makes a "cold" read's speed depend on each file's history: comparing with a
//!   read of another file measured that, not the ring.)
//!
//! Then, page cache warm: **sequential read** (the same lap; the baseline `pread`s record-sized blocks)
//! and **random read** (`read` of uniform ids; the baseline `pread`s one block).
//!
//! Throughput counts record bytes (`record_size` per record, frame header included) for the ring and
//! the baseline alike.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cachefs::ring::{Error, IoMode, ReadBatch, RingBuffer, RingOptions};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the files go (they are removed afterwards).
    pub dir: PathBuf,
    /// Bytes of each ring and baseline file, in MiB.
    pub mib: u64,
    /// Record sizes to measure.
    pub record_sizes: Vec<u32>,
    /// Most syncs in one write measurement (bounds the time of small records).
    pub max_flushes: u64,
    /// Random reads per measurement.
    pub random_reads: u64,
    /// Records flushed together.
    pub flush_every: u32,
    /// Rounds of the write and cold-read measurements (the median is reported).
    pub rounds: usize,
}

impl Settings {
    /// The figures of docs/benchmarks.md: 128 MiB files, 4 KiB and 128 B records, 5 rounds.
    pub fn full(dir: PathBuf) -> Self {
        Settings {
            dir,
            mib: 128,
            record_sizes: vec![4096, 128],
            max_flushes: 1024,
            random_reads: 1 << 20,
            flush_every: 64,
            rounds: 5,
        }
    }

    /// Seconds, for tests.
    pub fn smoke(dir: PathBuf) -> Self {
        Settings { mib: 2, max_flushes: 16, random_reads: 1000, rounds: 1, ..Settings::full(dir) }
    }
}

/// One line of results: the baseline (`mode: None`) or the ring in a mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub record_size: u32,
    pub mode: Option<IoMode>,
    /// MB/s (10⁶ bytes), flushing every `flush_every` records.
    pub write_mbs: f64,
    /// MB/s after dropping the page cache (the ring with `prefetch`).
    pub cold_read_mbs: f64,
    /// MB/s cold without `prefetch` (ring only).
    pub cold_read_no_prefetch_mbs: Option<f64>,
    /// MB/s of a raw sequential read of the same files, cold (ring rows; the target's baseline).
    pub raw_cold_same_files_mbs: Option<f64>,
    /// Largest fraction of the file's pages resident when a cold read started.
    pub resident_before_cold: f64,
    /// MB/s, page cache warm.
    pub warm_read_mbs: f64,
    /// Nanoseconds per random read, page cache warm.
    pub random_read_ns: f64,
}

/// Why the bench stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Ring(#[from] Error),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io { path: path.display().to_string(), source }
}

fn os_error(path: &Path, source: std::io::Error) -> BenchError {
    BenchError::Io { path: path.display().to_string(), source }
}

fn mbs(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// xorshift64*, for random ids.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Syncs `path` and drops its pages from the page cache.
fn drop_cache(path: &Path) -> Result<(), BenchError> {
    let f = File::open(path).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    // SAFETY: a hint on an open descriptor; it touches no memory of ours.
    match unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } {
        0 => Ok(()),
        e => Err(os_error(path, std::io::Error::from_raw_os_error(e))),
    }
}

/// The fraction of `paths`' pages in the page cache (`mincore` over a temporary mapping).
fn resident(paths: &[PathBuf]) -> Result<f64, BenchError> {
    let (mut pages, mut hot) = (0u64, 0u64);
    for path in paths {
        let f = File::open(path).map_err(io(path))?;
        let len = f.metadata().map_err(io(path))?.len() as usize;
        if len == 0 {
            continue;
        }
        let n = len.div_ceil(4096);
        let mut vec = vec![0u8; n];
        // SAFETY: maps `len` bytes of an open file read-only and shared; the mapping is only passed
        // to `mincore` (never read through) and unmapped below.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if addr == libc::MAP_FAILED {
            return Err(os_error(path, std::io::Error::last_os_error()));
        }
        // SAFETY: `addr` is a page-aligned mapping of `len` bytes and `vec` holds one byte per page.
        let r = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
        let e = std::io::Error::last_os_error();
        // SAFETY: unmaps exactly the mapping made above, which nothing else refers to.
        unsafe { libc::munmap(addr, len) };
        if r != 0 {
            return Err(os_error(path, e));
        }
        pages += n as u64;
        hot += vec.iter().filter(|&&b| b & 1 == 1).count() as u64;
    }
    Ok(if pages == 0 { 0.0 } else { hot as f64 / pages as f64 })
}

/// A cold raw read of `paths`, in 1 MiB `read`s after `posix_fadvise(SEQUENTIAL)`: (MB/s, resident
/// fraction before).
fn raw_cold_read(paths: &[PathBuf]) -> Result<(f64, f64), BenchError> {
    for p in paths {
        drop_cache(p)?;
    }
    let resident = resident(paths)?;
    let mut buf = vec![0u8; 1 << 20];
    let (t, mut got) = (Instant::now(), 0u64);
    for path in paths {
        let mut f = File::open(path).map_err(io(path))?;
        // SAFETY: a hint on an open descriptor; it touches no memory of ours.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
        loop {
            match f.read(&mut buf).map_err(io(path))? {
                0 => break,
                k => got += k as u64,
            }
        }
    }
    Ok((mbs(got, t.elapsed().as_secs_f64()), resident))
}

/// The raw baseline file of one record size.
struct Raw {
    path: PathBuf,
    file: File,
    size: u64,
    records: u64,
    /// The next record to overwrite.
    next: u64,
}

impl Raw {
    fn create(dir: &Path, size: u32, records: u64) -> Result<Raw, BenchError> {
        let path = dir.join(format!("raw-{size}.dat"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io(&path))?;
        let size = u64::from(size);
        // SAFETY: `fallocate` on an open descriptor.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, (records * size) as libc::off_t) } != 0 {
            return Err(os_error(&path, std::io::Error::last_os_error()));
        }
        let mut raw = Raw { path, file, size, records, next: 0 };
        raw.write(records, 0)?;
        raw.file.sync_data().map_err(io(&raw.path))?;
        Ok(raw)
    }

    /// Writes `n` blocks in order (wrapping), syncing every `every` (0: never).
    fn write(&mut self, n: u64, every: u64) -> Result<(), BenchError> {
        let block = vec![0x5Au8; self.size as usize];
        for i in 0..n {
            self.file.write_all_at(&block, self.next * self.size).map_err(io(&self.path))?;
            self.next = (self.next + 1) % self.records;
            if every > 0 && (i + 1) % every == 0 {
                self.file.sync_data().map_err(io(&self.path))?;
            }
        }
        Ok(())
    }

    /// A cold sequential read of the whole file: (MB/s, resident fraction before).
    fn cold_read(&self) -> Result<(f64, f64), BenchError> {
        raw_cold_read(std::slice::from_ref(&self.path))
    }

    fn warm_read(&self) -> Result<f64, BenchError> {
        let mut buf = vec![0u8; self.size as usize];
        let t = Instant::now();
        for i in 0..self.records {
            self.file.read_exact_at(&mut buf, i * self.size).map_err(io(&self.path))?;
        }
        Ok(mbs(self.records * self.size, t.elapsed().as_secs_f64()))
    }

    fn random_read(&self, n: u64) -> Result<f64, BenchError> {
        let (mut rng, mut buf) = (Rng(0x9E37_79B9_7F4A_7C15), vec![0u8; self.size as usize]);
        let t = Instant::now();
        for _ in 0..n {
            self.file.read_exact_at(&mut buf, rng.below(self.records) * self.size).map_err(io(&self.path))?;
        }
        Ok(t.elapsed().as_nanos() as f64 / n as f64)
    }
}

/// One ring of the bench.
struct Ring {
    path: PathBuf,
    options: RingOptions,
    size: u64,
    records: u64,
}

impl Ring {
    fn create(dir: &Path, size: u32, records: u64, mode: IoMode) -> Result<Ring, BenchError> {
        let path = dir.join(format!("ring-{size}-{}.dat", mode.name()));
        let options =
            RingOptions { mode, shard_bytes: 4096 + records * u64::from(size), ..RingOptions::new(records, size) };
        let ring = RingBuffer::open(&path, options.clone())?;
        let payload = vec![0x5Au8; size as usize - 24];
        for id in 0..records {
            ring.write(id, &payload)?;
        }
        ring.close()?;
        Ok(Ring { path, options, size: u64::from(size), records })
    }

    fn open(&self, flush_every: u32, prefetch: bool) -> Result<RingBuffer, BenchError> {
        Ok(RingBuffer::open(&self.path, RingOptions { flush_every, prefetch, ..self.options.clone() })?)
    }

    /// Writes `n` more records through `ring` (flushing as it was opened to).
    fn write(&self, ring: &RingBuffer, n: u64) -> Result<(), BenchError> {
        let payload = vec![0x5Au8; self.size as usize - 24];
        let next = ring.latest_id().map_or(0, |l| l + 1);
        for id in next..next + n {
            ring.write(id, &payload)?;
        }
        ring.flush()?;
        Ok(())
    }

    /// One lap in id order, 256 KiB of records per `read_many`: MB/s.
    fn read_lap(&self, ring: &RingBuffer) -> Result<f64, BenchError> {
        let first = ring.latest_id().expect("written") + 1 - self.records;
        let per_call = (256 << 10) / self.size;
        let mut batch = ReadBatch::new();
        let (t, mut got) = (Instant::now(), 0);
        for start in (first..first + self.records).step_by(per_call as usize) {
            got += ring.read_many(start..(start + per_call).min(first + self.records), &mut batch)?;
        }
        assert_eq!(got as u64, self.records, "every record of the lap");
        Ok(mbs(self.records * self.size, t.elapsed().as_secs_f64()))
    }

    fn files(&self) -> Result<Vec<PathBuf>, BenchError> {
        Ok(self.open(0, false)?.files().to_vec())
    }

    fn cold_read(&self, prefetch: bool) -> Result<(f64, f64), BenchError> {
        let files = self.files()?;
        for f in &files {
            drop_cache(f)?;
        }
        let resident = resident(&files)?;
        let ring = self.open(0, prefetch)?;
        Ok((self.read_lap(&ring)?, resident))
    }

    fn random_read(&self, ring: &RingBuffer, n: u64) -> Result<f64, BenchError> {
        let first = ring.latest_id().expect("written") + 1 - self.records;
        let (mut rng, mut buf) = (Rng(0x9E37_79B9_7F4A_7C15), Vec::with_capacity(self.size as usize));
        let t = Instant::now();
        for _ in 0..n {
            ring.read(first + rng.below(self.records), &mut buf)?;
        }
        Ok(t.elapsed().as_nanos() as f64 / n as f64)
    }
}

/// The three rows of one record size.
fn measure(s: &Settings, size: u32, progress: &dyn Fn(&str)) -> Result<Vec<Row>, BenchError> {
    let records = s.mib * (1 << 20) / u64::from(size);
    let writes = records.min(s.max_flushes * u64::from(s.flush_every));
    progress(&format!("{size} B: writing the files once"));
    let mut raw = Raw::create(&s.dir, size, records)?;
    let rings =
        [Ring::create(&s.dir, size, records, IoMode::Mmap)?, Ring::create(&s.dir, size, records, IoMode::Pread)?];
    // [raw, mmap, pread] per measure; ring cold reads with and without prefetch.
    let (mut write, mut cold, mut cold_bare, mut hot) =
        ([vec![], vec![], vec![]], [vec![], vec![], vec![]], [vec![], vec![]], 0.0f64);
    let handles: Vec<RingBuffer> = rings.iter().map(|r| r.open(s.flush_every, false)).collect::<Result<_, _>>()?;
    for round in 0..s.rounds {
        progress(&format!("{size} B: writes, round {}", round + 1));
        let t = Instant::now();
        raw.write(writes, u64::from(s.flush_every))?;
        raw.file.sync_data().map_err(io(&raw.path))?;
        write[0].push(mbs(writes * u64::from(size), t.elapsed().as_secs_f64()));
        for (i, (ring, handle)) in rings.iter().zip(&handles).enumerate() {
            let t = Instant::now();
            ring.write(handle, writes)?;
            write[i + 1].push(mbs(writes * u64::from(size), t.elapsed().as_secs_f64()));
        }
    }
    drop(handles);
    let mut raw_same = [vec![], vec![]];
    for round in 0..s.rounds {
        progress(&format!("{size} B: cold reads, round {}", round + 1));
        // Seven cold reads a round, in an order that rotates between rounds, so that none of them is
        // always the one that follows (or precedes) another's I/O.
        for step in 0..7 {
            let (mbs, r) = match (step + round) % 7 {
                0 => {
                    let v = raw.cold_read()?;
                    cold[0].push(v.0);
                    v
                }
                k => {
                    let i = (k - 1) / 3;
                    match (k - 1) % 3 {
                        0 => {
                            let v = raw_cold_read(&rings[i].files()?)?;
                            raw_same[i].push(v.0);
                            v
                        }
                        1 => {
                            let v = rings[i].cold_read(true)?;
                            cold[i + 1].push(v.0);
                            v
                        }
                        _ => {
                            let v = rings[i].cold_read(false)?;
                            cold_bare[i].push(v.0);
                            v
                        }
                    }
                }
            };
            let _ = mbs;
            hot = hot.max(r);
        }
    }
    progress(&format!("{size} B: warm and random reads"));
    raw.warm_read()?;
    let mut rows = vec![Row {
        record_size: size,
        mode: None,
        write_mbs: median(write[0].clone()),
        cold_read_mbs: median(cold[0].clone()),
        cold_read_no_prefetch_mbs: None,
        raw_cold_same_files_mbs: None,
        resident_before_cold: hot,
        warm_read_mbs: raw.warm_read()?,
        random_read_ns: raw.random_read(s.random_reads)?,
    }];
    for (i, ring) in rings.iter().enumerate() {
        let handle = ring.open(0, false)?;
        ring.read_lap(&handle)?;
        rows.push(Row {
            record_size: size,
            mode: Some(ring.options.mode),
            write_mbs: median(write[i + 1].clone()),
            cold_read_mbs: median(cold[i + 1].clone()),
            cold_read_no_prefetch_mbs: Some(median(cold_bare[i].clone())),
            raw_cold_same_files_mbs: Some(median(raw_same[i].clone())),
            resident_before_cold: hot,
            warm_read_mbs: ring.read_lap(&handle)?,
            random_read_ns: ring.random_read(&handle, s.random_reads)?,
        });
        let files = handle.files().to_vec();
        drop(handle);
        for f in files {
            let _ = std::fs::remove_file(f);
        }
    }
    drop(raw.file);
    let _ = std::fs::remove_file(&raw.path);
    Ok(rows)
}

/// Runs every measurement; `progress` names each step as it starts.
pub fn run(s: &Settings, progress: &dyn Fn(&str)) -> Result<Vec<Row>, BenchError> {
    std::fs::create_dir_all(&s.dir).map_err(io(&s.dir))?;
    let mut rows = Vec::new();
    for &size in &s.record_sizes {
        rows.extend(measure(s, size, progress)?);
    }
    Ok(rows)
}

/// A throughput with two significant digits at least.
fn figure(v: f64) -> String {
    if v < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") }
}

/// The results as a Markdown table, each ring row with its ratios to the baselines (writes: the raw
/// file of its record size; cold reads: a raw read of the ring's own files in the same rounds), and the
/// targets (writes and cold reads at least 0.8× the baseline) marked met or missed.
pub fn table(rows: &[Row], flush_every: u32) -> String {
    let mut out = format!(
        "| record | I/O | write MB/s, flush every {flush_every} | cold seq. read MB/s (`prefetch`) | raw read of the same files, cold | cold, no `prefetch` | warm seq. read MB/s | random read ns | targets (≥ 0.8× raw) |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    );
    for r in rows {
        let base = rows.iter().find(|b| b.mode.is_none() && b.record_size == r.record_size).expect("baseline row");
        let size = if r.record_size >= 1024 {
            format!("{} KiB", r.record_size / 1024)
        } else {
            format!("{} B", r.record_size)
        };
        let ratio = |ours: f64, raw: f64| format!("{} ({:.2}×)", figure(ours), ours / raw);
        match (r.mode, r.raw_cold_same_files_mbs) {
            (Some(mode), Some(raw_cold)) => {
                let (w, c) = (r.write_mbs / base.write_mbs, r.cold_read_mbs / raw_cold);
                let mark = |x: f64| if x >= 0.8 { "met" } else { "**missed**" };
                out.push_str(&format!(
                    "| {size} | ring, {} | {} | {} | {:.0} | {:.0} | {} | {:.0} | write {}, cold read {} |\n",
                    mode.name(),
                    ratio(r.write_mbs, base.write_mbs),
                    ratio(r.cold_read_mbs, raw_cold),
                    raw_cold,
                    r.cold_read_no_prefetch_mbs.unwrap_or(0.0),
                    ratio(r.warm_read_mbs, base.warm_read_mbs),
                    r.random_read_ns,
                    mark(w),
                    mark(c)
                ));
            }
            _ => out.push_str(&format!(
                "| {size} | raw file | {} | {:.0} | — | — | {:.0} | {:.0} | — |\n",
                figure(r.write_mbs),
                r.cold_read_mbs,
                r.warm_read_mbs,
                r.random_read_ns
            )),
        }
    }
    let hot = rows.iter().map(|r| r.resident_before_cold).fold(0.0, f64::max);
    out.push_str(&format!("\nPages resident when a cold read started: at most {:.1}%.\n", hot * 100.0));
    out
}
