//! `cachefs ring bench`: the ring against raw file I/O of the same bytes, in one run.
//!
//! For each record size, a raw baseline on a preallocated file, then the ring in each I/O mode:
//! - **write**: a steady-state lap (the file already written once), flushing every 64 records
//!   (`fdatasync`); the baseline `pwrite`s the same record-sized blocks with the same syncs.
//! - **cold sequential read**: after closing and `posix_fadvise(DONTNEED)` (the pages' residency is
//!   checked with `mincore`), one lap in id order with `read`, with and without `prefetch`; the baseline
//!   reads the file sequentially in 1 MiB `read`s (the device's streaming speed).
//! - **warm sequential read** and **random read** (uniform ids, page cache warm); the baselines `pread`
//!   record-sized blocks.
//!
//! Throughput counts record bytes (`record_size` per record, frame header included) for the ring and
//! the baseline alike.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cachefs::ring::{Error, IoMode, RingBuffer, RingOptions};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the files go (they are removed afterwards).
    pub dir: PathBuf,
    /// Bytes of each ring and baseline file, in MiB.
    pub mib: u64,
    /// Record sizes to measure.
    pub record_sizes: Vec<u32>,
    /// Most records written in the measured write lap (bounds the time of small records, one sync per
    /// 64 of them).
    pub max_write_records: u64,
    /// Random reads per measurement.
    pub random_reads: u64,
    /// Records flushed together.
    pub flush_every: u32,
}

impl Settings {
    /// The figures of docs/benchmarks.md: 128 MiB files, 4 KiB and 128 B records.
    pub fn full(dir: PathBuf) -> Self {
        Settings { dir, mib: 128, record_sizes: vec![4096, 128], max_write_records: 1 << 18, random_reads: 1 << 20, flush_every: 64 }
    }

    /// Seconds, for tests.
    pub fn smoke(dir: PathBuf) -> Self {
        Settings { dir, mib: 2, record_sizes: vec![4096, 128], max_write_records: 2048, random_reads: 1000, flush_every: 64 }
    }
}

/// One line of results: the baseline (`mode: None`) or the ring in a mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub record_size: u32,
    pub mode: Option<IoMode>,
    /// MB/s (10⁶ bytes), flushing every `flush_every` records.
    pub write_mbs: f64,
    /// MB/s after dropping the page cache (with prefetch for the ring).
    pub cold_read_mbs: f64,
    /// MB/s cold without prefetch (ring only).
    pub cold_read_no_prefetch_mbs: Option<f64>,
    /// Fraction of the file's pages resident when the cold read started.
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

fn mbs(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
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
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(BenchError::Io { path: path.display().to_string(), source: std::io::Error::from_raw_os_error(r) });
    }
    Ok(())
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
        let page = 4096usize;
        let n = len.div_ceil(page);
        let mut vec = vec![0u8; n];
        // SAFETY: maps `len` bytes of an open file read-only and shared; the mapping is only passed
        // to `mincore` (never read through) and unmapped below.
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if addr == libc::MAP_FAILED {
            return Err(BenchError::Io { path: path.display().to_string(), source: std::io::Error::last_os_error() });
        }
        // SAFETY: `addr` is a page-aligned mapping of `len` bytes and `vec` holds one byte per page.
        let r = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
        // SAFETY: unmaps exactly the mapping made above, which nothing else refers to.
        unsafe { libc::munmap(addr, len) };
        if r != 0 {
            return Err(BenchError::Io { path: path.display().to_string(), source: std::io::Error::last_os_error() });
        }
        pages += n as u64;
        hot += vec.iter().filter(|&&b| b & 1 == 1).count() as u64;
    }
    Ok(if pages == 0 { 0.0 } else { hot as f64 / pages as f64 })
}

/// The baseline: a preallocated file written and read with plain system calls.
fn raw(s: &Settings, size: u32, progress: &dyn Fn(&str)) -> Result<Row, BenchError> {
    let path = s.dir.join(format!("raw-{size}.dat"));
    let records = s.mib * (1 << 20) / u64::from(size);
    let block = vec![0x5Au8; size as usize];
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).map_err(io(&path))?;
    // SAFETY: `fallocate` on an open descriptor.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, (records * u64::from(size)) as libc::off_t) } != 0 {
        return Err(BenchError::Io { path: path.display().to_string(), source: std::io::Error::last_os_error() });
    }
    progress(&format!("raw {size} B: first lap"));
    for i in 0..records {
        file.write_all_at(&block, i * u64::from(size)).map_err(io(&path))?;
    }
    file.sync_data().map_err(io(&path))?;
    progress(&format!("raw {size} B: writes"));
    let n = records.min(s.max_write_records);
    let t = Instant::now();
    for i in 0..n {
        file.write_all_at(&block, i * u64::from(size)).map_err(io(&path))?;
        if (i + 1) % u64::from(s.flush_every) == 0 {
            file.sync_data().map_err(io(&path))?;
        }
    }
    file.sync_data().map_err(io(&path))?;
    let write_mbs = mbs(n * u64::from(size), t.elapsed().as_secs_f64());
    progress(&format!("raw {size} B: cold read"));
    drop_cache(&path)?;
    let resident_before_cold = resident(std::slice::from_ref(&path))?;
    let total = records * u64::from(size);
    let seq = |f: &mut File| -> Result<f64, BenchError> {
        let mut buf = vec![0u8; 1 << 20];
        let t = Instant::now();
        let mut got = 0u64;
        loop {
            let k = f.read(&mut buf).map_err(io(&path))?;
            if k == 0 {
                break;
            }
            got += k as u64;
        }
        assert_eq!(got, total);
        Ok(mbs(total, t.elapsed().as_secs_f64()))
    };
    let cold_read_mbs = seq(&mut File::open(&path).map_err(io(&path))?)?;
    progress(&format!("raw {size} B: warm reads"));
    let warm_read_mbs = {
        let mut buf = vec![0u8; size as usize];
        let t = Instant::now();
        for i in 0..records {
            file.read_exact_at(&mut buf, i * u64::from(size)).map_err(io(&path))?;
        }
        mbs(total, t.elapsed().as_secs_f64())
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = vec![0u8; size as usize];
    let t = Instant::now();
    for _ in 0..s.random_reads {
        file.read_exact_at(&mut buf, rng.below(records) * u64::from(size)).map_err(io(&path))?;
    }
    let random_read_ns = t.elapsed().as_nanos() as f64 / s.random_reads as f64;
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Row {
        record_size: size,
        mode: None,
        write_mbs,
        cold_read_mbs,
        cold_read_no_prefetch_mbs: None,
        resident_before_cold,
        warm_read_mbs,
        random_read_ns,
    })
}

/// One lap of reads in id order; MB/s of record bytes.
fn read_lap(ring: &RingBuffer, first: u64, records: u64, size: u32) -> Result<f64, BenchError> {
    let mut buf = Vec::with_capacity(size as usize);
    let t = Instant::now();
    for id in first..first + records {
        ring.read(id, &mut buf)?;
    }
    Ok(mbs(records * u64::from(size), t.elapsed().as_secs_f64()))
}

fn ring(s: &Settings, size: u32, mode: IoMode, progress: &dyn Fn(&str)) -> Result<Row, BenchError> {
    let path = s.dir.join(format!("ring-{size}-{}.dat", mode.name()));
    let records = s.mib * (1 << 20) / u64::from(size);
    let geometry = RingOptions { mode, shard_bytes: 4096 + records * u64::from(size), ..RingOptions::new(records, size) };
    let payload = vec![0x5Au8; size as usize - 24];
    let name = mode.name();
    progress(&format!("ring {size} B {name}: first lap"));
    {
        let ring = RingBuffer::open(&path, geometry.clone())?;
        for id in 0..records {
            ring.write(id, &payload)?;
        }
        ring.close()?;
    }
    progress(&format!("ring {size} B {name}: writes"));
    let n = records.min(s.max_write_records);
    let ring = RingBuffer::open(&path, RingOptions { flush_every: s.flush_every, ..geometry.clone() })?;
    let t = Instant::now();
    for id in records..records + n {
        ring.write(id, &payload)?;
    }
    ring.flush()?;
    let write_mbs = mbs(n * u64::from(size), t.elapsed().as_secs_f64());
    let files = ring.files().to_vec();
    let latest = ring.latest_id().expect("written");
    ring.close()?;
    let first = latest + 1 - records;
    let prefetch = ((1u64 << 20) / u64::from(size)).max(64) as u32;

    let cold = |prefetch: u32| -> Result<(f64, f64), BenchError> {
        for f in &files {
            drop_cache(f)?;
        }
        let resident = resident(&files)?;
        let ring = RingBuffer::open(&path, RingOptions { prefetch, ..geometry.clone() })?;
        let mbs = read_lap(&ring, first, records, size)?;
        Ok((mbs, resident))
    };
    progress(&format!("ring {size} B {name}: cold read"));
    let (cold_read_mbs, resident_before_cold) = cold(prefetch)?;
    progress(&format!("ring {size} B {name}: cold read, no prefetch"));
    let (no_prefetch, _) = cold(0)?;
    progress(&format!("ring {size} B {name}: warm reads"));
    let ring = RingBuffer::open(&path, geometry)?;
    read_lap(&ring, first, records, size)?;
    let warm_read_mbs = read_lap(&ring, first, records, size)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = Vec::with_capacity(size as usize);
    let t = Instant::now();
    for _ in 0..s.random_reads {
        ring.read(first + rng.below(records), &mut buf)?;
    }
    let random_read_ns = t.elapsed().as_nanos() as f64 / s.random_reads as f64;
    drop(ring);
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    Ok(Row {
        record_size: size,
        mode: Some(mode),
        write_mbs,
        cold_read_mbs,
        cold_read_no_prefetch_mbs: Some(no_prefetch),
        resident_before_cold,
        warm_read_mbs,
        random_read_ns,
    })
}

/// Runs every measurement; `progress` names each step as it starts.
pub fn run(s: &Settings, progress: &dyn Fn(&str)) -> Result<Vec<Row>, BenchError> {
    std::fs::create_dir_all(&s.dir).map_err(io(&s.dir))?;
    let mut rows = Vec::new();
    for &size in &s.record_sizes {
        rows.push(raw(s, size, progress)?);
        for mode in [IoMode::Mmap, IoMode::Pread] {
            rows.push(ring(s, size, mode, progress)?);
        }
    }
    Ok(rows)
}

/// The results as a Markdown table, each ring row with its ratio to the baseline of its record size,
/// and the targets (writes and cold reads at least 0.8× the baseline) marked met or missed.
pub fn table(rows: &[Row], flush_every: u32) -> String {
    let mut out = format!(
        "| record | I/O | write MB/s, flush every {flush_every} | cold seq. read MB/s (prefetch) | cold, no prefetch | warm seq. read MB/s | random read ns | targets (≥ 0.8× raw) |\n|---|---|---:|---:|---:|---:|---:|---|\n"
    );
    for r in rows {
        let base = rows.iter().find(|b| b.mode.is_none() && b.record_size == r.record_size).expect("baseline row");
        let size = if r.record_size >= 1024 { format!("{} KiB", r.record_size / 1024) } else { format!("{} B", r.record_size) };
        let ratio = |ours: f64, raw: f64| format!("{ours:.0} ({:.2}×)", ours / raw);
        match r.mode {
            None => out.push_str(&format!(
                "| {size} | raw file | {:.0} | {:.0} | — | {:.0} | {:.0} | — |\n",
                r.write_mbs, r.cold_read_mbs, r.warm_read_mbs, r.random_read_ns
            )),
            Some(mode) => {
                let (w, c) = (r.write_mbs / base.write_mbs, r.cold_read_mbs / base.cold_read_mbs);
                let mark = |x: f64| if x >= 0.8 { "met" } else { "**missed**" };
                out.push_str(&format!(
                    "| {size} | ring, {} | {} | {} | {:.0} | {} | {:.0} | write {}, cold read {} |\n",
                    mode.name(),
                    ratio(r.write_mbs, base.write_mbs),
                    ratio(r.cold_read_mbs, base.cold_read_mbs),
                    r.cold_read_no_prefetch_mbs.unwrap_or(0.0),
                    ratio(r.warm_read_mbs, base.warm_read_mbs),
                    r.random_read_ns,
                    mark(w),
                    mark(c)
                ));
            }
        }
    }
    let hot = rows.iter().map(|r| r.resident_before_cold).fold(0.0, f64::max);
    out.push_str(&format!("\nPages resident when a cold read started: at most {:.1}%.\n", hot * 100.0));
    out
}
