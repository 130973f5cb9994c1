//! Hostile tests of `CacheFs` operations, from the documentation only: writer transactions, large
//! files under concurrent writers, races on one path, warming while writing, stats.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cachefs::fs::{CacheFs, Error, MemBackend, OsBackend, TEMP_MARKER, WarmOptions, WarmPriority, WriteMode};
use common::faulty::{EIO, ENOSPC, Faulty, Op};
use tempfile::TempDir;

const WB: WriteMode = WriteMode::WriteBack { delay: Duration::from_millis(5), max_dirty_bytes: 4 << 20 };
const WB_SLOW: WriteMode = WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 64 << 20 };
const MODES: [WriteMode; 4] = [WriteMode::WriteThrough, WB, WB_SLOW, WriteMode::WriteAround];

struct Env {
    fs: CacheFs,
    store: Arc<Faulty>,
    dir: Option<TempDir>,
    label: String,
}

impl Env {
    fn on_backend(&self, path: &str) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        self.store.inner().read(path, &mut buf).ok().map(|()| buf)
    }
    fn temp_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(dir) = &self.dir {
            let mut stack = vec![dir.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(&d).unwrap() {
                    let entry = entry.unwrap();
                    if entry.file_type().unwrap().is_dir() {
                        stack.push(entry.path());
                    } else if entry.file_name().to_string_lossy().contains(TEMP_MARKER) {
                        out.push(entry.path().display().to_string());
                    }
                }
            }
        }
        out
    }
}

fn env_with(os: bool, mode: WriteMode, max_bytes: u64, threshold: u64, chunk: u64) -> Env {
    let dir = os.then(|| tempfile::tempdir().unwrap());
    let store = Arc::new(if os {
        Faulty::new(OsBackend::new(dir.as_ref().unwrap().path()).unwrap())
    } else {
        Faulty::new(MemBackend::new())
    });
    let fs = CacheFs::builder(Arc::clone(&store))
        .max_bytes(max_bytes)
        .large_file_threshold(threshold)
        .chunk_size(chunk)
        .write_mode(mode)
        .build();
    Env { fs, store, dir, label: format!("{} {mode:?}", if os { "os" } else { "mem" }) }
}

fn env(os: bool, mode: WriteMode) -> Env {
    env_with(os, mode, 1 << 20, 8192, 2048)
}

fn each(f: impl Fn(&Env, bool)) {
    for os in [false, true] {
        for mode in MODES {
            let e = env(os, mode);
            f(&e, matches!(mode, WriteMode::WriteBack { .. }));
        }
    }
}

/// xorshift64*
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// FileWriter is a transaction
// ---------------------------------------------------------------------------------------------

/// "Nothing is visible before `close`: reads return the old content" — `read`, `read_range`, `open`,
/// `stat`, `exists`, for small and streamed writers, for an existing and a new file.
#[test]
fn holds_writer_invisible_before_close() {
    each(|e, _| {
        let fs = &e.fs;
        for (size, name) in [(100usize, "small"), (50_000, "large")] {
            let old = format!("{name}/old");
            let new = format!("{name}/new");
            fs.write(&old, b"OLD".to_vec()).unwrap();
            let mut w1 = fs.create(&old).unwrap();
            let mut w2 = fs.create(&new).unwrap();
            for _ in 0..(size / 1000).max(1) {
                w1.write_all(&[b'x'; 1000]).unwrap();
                w2.write_all(&[b'y'; 1000]).unwrap();
            }
            assert_eq!(&fs.read(&old).unwrap()[..], b"OLD", "{} {name}", e.label);
            assert_eq!(fs.stat(&old).unwrap().len, 3, "{} {name}: stat sees the open writer", e.label);
            assert_eq!(&fs.read_range(&old, 1, 10).unwrap()[..], b"LD");
            let mut r = fs.open(&old).unwrap();
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            assert_eq!(buf, b"OLD");
            assert!(!fs.exists(&new).unwrap(), "{} {name}: an unclosed writer's file exists", e.label);
            assert!(fs.read(&new).unwrap_err().is_not_found(), "{} {name}", e.label);
            assert!(fs.stat(&new).is_err());
            assert!(e.on_backend(&new).is_none(), "{} {name}: visible on the backend before close", e.label);
            fs.flush().unwrap();
            assert_eq!(e.on_backend(&old).as_deref(), Some(&b"OLD"[..]), "{} {name}", e.label);
            assert!(e.on_backend(&new).is_none(), "{} {name}: flush wrote an unclosed writer", e.label);
            w1.close().unwrap();
            w2.close().unwrap();
            assert_eq!(fs.read(&old).unwrap().len(), (size / 1000).max(1) * 1000);
            assert_eq!(fs.read(&new).unwrap().len(), (size / 1000).max(1) * 1000);
        }
    });
}

/// "`abort`, or dropping the writer without `close` ..., discards everything written and leaves the
/// old content. Dropping is counted in `FsStats::abandoned_writers`." Streamed writers too, and no
/// temporary file stays behind.
#[test]
fn holds_writer_drop_and_abort_discard() {
    each(|e, _| {
        let fs = &e.fs;
        fs.write("f", b"OLD".to_vec()).unwrap();
        for size in [10usize, 8192, 8193, 100_000] {
            let before = fs.stats().abandoned_writers;
            let mut w = fs.create("f").unwrap();
            w.write_all(&vec![1u8; size]).unwrap();
            w.flush().unwrap(); // io::Write::flush stores nothing
            assert_eq!(&fs.read("f").unwrap()[..], b"OLD", "{} {size}: io::Write::flush stored", e.label);
            drop(w);
            assert_eq!(fs.stats().abandoned_writers, before + 1, "{} {size}", e.label);
            assert_eq!(&fs.read("f").unwrap()[..], b"OLD", "{} {size}: drop stored", e.label);
            let mut w = fs.create("f").unwrap();
            w.write_all(&vec![2u8; size]).unwrap();
            w.abort();
            assert_eq!(fs.stats().abandoned_writers, before + 1, "{} {size}: abort counted as abandoned", e.label);
            assert_eq!(&fs.read("f").unwrap()[..], b"OLD", "{} {size}: abort stored", e.label);
            fs.invalidate("f").unwrap();
            assert_eq!(&fs.read("f").unwrap()[..], b"OLD", "{} {size}: abort reached the backend", e.label);
            // A new file: nothing at all.
            let mut w = fs.create("g/new").unwrap();
            w.write_all(&vec![3u8; size]).unwrap();
            drop(w);
            assert!(!fs.exists("g/new").unwrap());
        }
        fs.flush().unwrap();
        let temps = e.temp_files();
        assert!(temps.is_empty(), "{}: abandoned streamed writers left temporaries: {temps:?}", e.label);
    });
}

/// `Write + Seek`: seeking past the end and writing leaves zeros; seeking back overwrites; for small
/// files and for writers that stream past the threshold.
#[test]
fn holds_writer_seek_semantics() {
    each(|e, _| {
        let fs = &e.fs;
        for (base, gap) in [(3usize, 10u64), (100, 9000), (9000, 5), (9000, 30_000), (20_000, 0)] {
            let mut w = fs.create("s").unwrap();
            w.write_all(&vec![b'a'; base]).unwrap();
            let end = w.seek(SeekFrom::End(0)).unwrap();
            assert_eq!(end, base as u64, "{}", e.label);
            let pos = w.seek(SeekFrom::Current(gap as i64)).unwrap();
            assert_eq!(pos, base as u64 + gap);
            w.write_all(b"z").unwrap();
            w.seek(SeekFrom::Start(1)).unwrap();
            w.write_all(b"BC").unwrap();
            w.close().unwrap();
            let mut expected = vec![b'a'; base];
            expected.resize(base + gap as usize, 0);
            expected.push(b'z');
            expected[1] = b'B';
            expected[2] = b'C';
            let got = fs.read("s").unwrap();
            assert_eq!(got.len(), expected.len(), "{} base {base} gap {gap}", e.label);
            assert!(got[..] == expected[..], "{} base {base} gap {gap}: content differs", e.label);
            fs.flush().unwrap();
            assert_eq!(e.on_backend("s").as_deref(), Some(&expected[..]), "{} base {base} gap {gap}: backend", e.label);
        }
    });
}

/// "A writer whose write, seek or flush failed is failed: later writes fail too, and `close` returns
/// `Error::WriterFailed` and stores nothing." A seek before the start of the file fails.
#[test]
fn holds_failed_seek_fails_the_writer() {
    each(|e, _| {
        let fs = &e.fs;
        fs.write("f", b"OLD".to_vec()).unwrap();
        for size in [10usize, 20_000] {
            let mut w = fs.create("f").unwrap();
            w.write_all(&vec![1; size]).unwrap();
            assert!(w.seek(SeekFrom::Current(-(size as i64) - 5)).is_err());
            let later = w.write_all(b"x");
            let closed = w.close();
            assert!(later.is_err(), "{} {size}: a write after a failed seek succeeded", e.label);
            assert!(
                matches!(closed, Err(Error::WriterFailed { .. })),
                "{} {size}: close after failed seek: {closed:?}",
                e.label
            );
            assert_eq!(&fs.read("f").unwrap()[..], b"OLD");
        }
    });
}

/// A streamed write that fails part-way (EIO, ENOSPC) fails the writer: nothing stored anywhere.
#[test]
fn holds_failed_stream_write_stores_nothing() {
    for os in [false, true] {
        for mode in MODES {
            for errno in [EIO, ENOSPC] {
                for nth in [1u64, 2, 5] {
                    let e = env(os, mode);
                    let fs = &e.fs;
                    fs.write("f", b"OLD".to_vec()).unwrap();
                    fs.flush().unwrap();
                    e.store.fail(Op::Stream, nth, 1, errno);
                    let mut w = fs.create("f").unwrap();
                    let mut failed = false;
                    for i in 0..40 {
                        if w.write_all(&[i as u8; 1000]).is_err() {
                            failed = true;
                        } else if failed {
                            panic!("{}: a write succeeded after a failed one", e.label);
                        }
                    }
                    let r = w.close();
                    e.store.heal();
                    if failed {
                        assert!(
                            matches!(r, Err(Error::WriterFailed { .. })),
                            "{} errno {errno} nth {nth}: {r:?}",
                            e.label
                        );
                        assert_eq!(&fs.read("f").unwrap()[..], b"OLD", "{}", e.label);
                        fs.flush().unwrap();
                        assert_eq!(e.on_backend("f").as_deref(), Some(&b"OLD"[..]), "{}", e.label);
                    }
                    assert!(
                        e.temp_files().is_empty(),
                        "{}: a failed writer left temporaries {:?}",
                        e.label,
                        e.temp_files()
                    );
                }
            }
        }
    }
}

/// Writers of one path racing each other and plain writes: each close replaces the whole content
/// (never a mix of two writers), and after flush the cache agrees with the backend.
#[test]
fn holds_concurrent_writers_of_one_path_never_mix() {
    for os in [false, true] {
        for mode in MODES {
            let e = env(os, mode);
            let fs = &e.fs;
            std::thread::scope(|s| {
                for t in 0..3u8 {
                    let e = &e;
                    s.spawn(move || {
                        for i in 0..40usize {
                            let len = [100usize, 9000, 30_000][(i + t as usize) % 3];
                            let tag = t * 50 + i as u8 % 50 + 1;
                            if i % 4 == 0 {
                                let _ = fs.write("p", vec![tag; len]);
                            } else {
                                let mut w = fs.create("p").unwrap();
                                for chunk in vec![tag; len].chunks(777) {
                                    w.write_all(chunk).unwrap();
                                }
                                match w.close() {
                                    Ok(()) | Err(Error::Flush { .. }) => {}
                                    Err(err) => panic!("{err}"),
                                }
                            }
                            if let Ok(b) = fs.read("p") {
                                assert!(b.iter().all(|&x| x == b[0]), "{}: a read mixed two writers", e.label);
                            }
                        }
                    });
                }
            });
            fs.flush().unwrap();
            let cached = fs.read("p").unwrap();
            assert!(cached.iter().all(|&x| x == cached[0]));
            assert_eq!(e.on_backend("p").as_deref(), Some(&cached[..]), "{}: cache and backend differ", e.label);
            assert!(e.temp_files().is_empty(), "{}", e.label);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Large files: readers never mix versions
// ---------------------------------------------------------------------------------------------

/// Version `v` of the large file: its length and every 8-byte word name the version.
fn version(v: u64) -> Vec<u8> {
    let words = 2048 + (v % 5) as usize * 700; // 16 KiB .. 38 KiB, not chunk-aligned
    let mut out = Vec::with_capacity(words * 8 + 3);
    for _ in 0..words {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&[v as u8; 3]);
    out
}

fn check_one_version(bytes: &[u8], whole: bool, what: &str) {
    if bytes.len() < 8 {
        return;
    }
    let v = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if whole {
        assert_eq!(bytes, &version(v)[..], "{what}: a whole read is not exactly version {v} (len {})", bytes.len());
    } else {
        for (i, w) in bytes.chunks_exact(8).enumerate() {
            let x = u64::from_le_bytes(w.try_into().unwrap());
            assert_eq!(x, v, "{what}: word {i} is from version {x}, word 0 from {v}");
        }
    }
}

#[test]
fn holds_large_file_readers_never_mix_versions() {
    for os in [false, true] {
        for mode in MODES {
            // threshold 4 KiB, chunks 1 KiB, a tiny budget so that chunks are evicted all the time
            let e = env_with(os, mode, 32 << 10, 4096, 1024);
            let fs = &e.fs;
            fs.write("big", version(1)).unwrap();
            let done = AtomicBool::new(false);
            let (reads, modified) = (AtomicU64::new(0), AtomicU64::new(0));
            let started = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut v = 2;
                    while started.elapsed() < Duration::from_millis(1500) {
                        if v % 3 == 0 {
                            let mut w = fs.create("big").unwrap();
                            for c in version(v).chunks(1500) {
                                w.write_all(c).unwrap();
                            }
                            let _ = w.close();
                        } else {
                            let _ = fs.write("big", version(v));
                        }
                        if v % 7 == 0 {
                            let _ = fs.invalidate("big");
                        }
                        v += 1;
                    }
                    done.store(true, SeqCst);
                });
                for t in 0..2u64 {
                    let (done, reads, modified, label) = (&done, &reads, &modified, &e.label);
                    s.spawn(move || {
                        let mut rng = Rng(t + 1);
                        while !done.load(SeqCst) {
                            match rng.below(3) {
                                0 => {
                                    let Ok(mut r) = fs.open("big") else { continue };
                                    let len = r.len();
                                    let mut buf = Vec::new();
                                    // read in odd pieces, with seeks
                                    let mut piece = vec![0u8; 1 + rng.below(3000) as usize];
                                    let res: std::io::Result<()> = (|| {
                                        loop {
                                            let n = r.read(&mut piece)?;
                                            if n == 0 {
                                                return Ok(());
                                            }
                                            buf.extend_from_slice(&piece[..n]);
                                        }
                                    })();
                                    match res {
                                        Ok(()) => {
                                            assert_eq!(buf.len() as u64, len, "{label}: open reader length");
                                            check_one_version(&buf, true, label);
                                        }
                                        Err(err) => {
                                            let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
                                            assert!(
                                                matches!(inner, Some(Error::Modified { .. })),
                                                "{label}: reader error {err:?}"
                                            );
                                            check_one_version(&buf, false, label);
                                            modified.fetch_add(1, SeqCst);
                                        }
                                    }
                                }
                                1 => match fs.read("big") {
                                    Ok(b) => check_one_version(&b, true, label),
                                    Err(Error::Modified { .. }) => {
                                        modified.fetch_add(1, SeqCst);
                                    }
                                    Err(err) => panic!("{label}: read: {err}"),
                                },
                                _ => {
                                    let off = rng.below(30_000) & !7;
                                    match fs.read_range("big", off, 1 + rng.below(6000)) {
                                        Ok(b) => check_one_version(&b[..b.len() & !7], false, label),
                                        Err(Error::Modified { .. }) => {
                                            modified.fetch_add(1, SeqCst);
                                        }
                                        Err(err) => panic!("{label}: read_range: {err}"),
                                    }
                                }
                            }
                            reads.fetch_add(1, SeqCst);
                        }
                    });
                }
            });
            assert!(reads.load(SeqCst) > 50, "{}: too few reads", e.label);
            fs.flush().unwrap();
            let last = fs.read("big").unwrap();
            assert_eq!(e.on_backend("big").as_deref(), Some(&last[..]), "{}", e.label);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Races on one path
// ---------------------------------------------------------------------------------------------

/// Many threads write, read, remove and rename the same few paths; afterwards `flush()` succeeds and
/// the cache agrees with the backend on every path.
#[test]
fn holds_races_on_one_path_end_consistent() {
    for os in [false, true] {
        for mode in MODES {
            let e = env(os, mode);
            let fs = &e.fs;
            let paths = ["k", "k2", "d/k"];
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let label = &e.label;
                    s.spawn(move || {
                        let mut rng = Rng(t * 31 + 7);
                        for i in 0..600u64 {
                            let p = paths[rng.below(3) as usize];
                            let q = paths[rng.below(3) as usize];
                            let tag = (t << 32) | i;
                            let len = [8usize, 5000, 12_000][rng.below(3) as usize];
                            let content: Vec<u8> = tag.to_le_bytes().iter().copied().cycle().take(len).collect();
                            match rng.below(8) {
                                0..=2 => {
                                    let _ = fs.write(p, content);
                                }
                                3 => {
                                    let _ = fs.remove(p);
                                }
                                4 => {
                                    let _ = fs.rename(p, q);
                                }
                                5 => {
                                    if let Ok(mut w) = fs.create(p) {
                                        let _ = w.write_all(&content);
                                        let _ = w.close();
                                    }
                                }
                                6 => {
                                    let _ = fs.invalidate(p);
                                }
                                _ => {
                                    if let Ok(b) = fs.read(p) {
                                        let w0 = &b[..8.min(b.len())];
                                        assert!(
                                            b.chunks(8).all(|c| c == &w0[..c.len()]),
                                            "{label}: a read mixed versions"
                                        );
                                    }
                                }
                            }
                        }
                    });
                }
            });
            fs.flush().unwrap_or_else(|err| panic!("{}: flush after the races: {err}", e.label));
            for p in paths {
                let cached = fs.read(p).ok().map(|b| b.to_vec());
                assert_eq!(cached, e.on_backend(p), "{}: cache and backend disagree on {p}", e.label);
                fs.invalidate(p).unwrap();
                let again = fs.read(p).ok().map(|b| b.to_vec());
                assert_eq!(cached, again, "{}: {p} changed after invalidate", e.label);
            }
            let st = fs.stats();
            assert_eq!((st.dirty_entries, st.dirty_bytes), (0, 0), "{}: dirty after flush", e.label);
            assert!(e.temp_files().is_empty(), "{}: {:?}", e.label, e.temp_files());
        }
    }
}

/// Conflicting write-back writes from two threads at once: a pending `a` and a pending `a/b` must not
/// both be acknowledged.
#[test]
fn holds_concurrent_conflicting_writes_never_both_acknowledged() {
    for os in [false, true] {
        let e = env(os, WB_SLOW);
        let fs = &e.fs;
        let mut both = 0;
        for round in 0..300 {
            let a = format!("r{round}/a");
            let ab = format!("r{round}/a/b");
            let barrier = std::sync::Barrier::new(2);
            let (r1, r2) = std::thread::scope(|s| {
                let h1 = s.spawn(|| {
                    barrier.wait();
                    fs.write(&a, b"file".to_vec())
                });
                let h2 = s.spawn(|| {
                    barrier.wait();
                    if round % 2 == 0 {
                        fs.write(&ab, b"child".to_vec())
                    } else {
                        let mut w = fs.create(&ab)?;
                        w.write_all(b"child").unwrap();
                        w.close()
                    }
                });
                (h1.join().unwrap(), h2.join().unwrap())
            });
            if r1.is_ok() && r2.is_ok() {
                both += 1;
            }
        }
        let flushed = fs.flush();
        assert!(
            both == 0 && flushed.is_ok(),
            "{}: {both} rounds acknowledged both a and a/b; flush: {flushed:?}",
            e.label
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Warming while writing
// ---------------------------------------------------------------------------------------------

/// A high-priority warm pins what it loads; writes during the warm must win: "a pin holds the content
/// it was taken on, and goes with it".
#[test]
fn holds_warm_while_writing_never_serves_the_pinned_old_content() {
    for os in [false, true] {
        for mode in MODES {
            for priority in [WarmPriority::High, WarmPriority::Normal, WarmPriority::Low] {
                // A small budget: evictions happen, so a stale pin would show.
                let e = env_with(os, mode, 64 << 10, 8192, 2048);
                let fs = &e.fs;
                let n = 60;
                for i in 0..n {
                    e.store.inner().write(&format!("w/{i}"), &vec![0u8; 1500]).unwrap();
                }
                let opts = WarmOptions { workers: 2, priority, ..WarmOptions::default() };
                let handle = fs.warm_async((0..n).map(|i| format!("w/{i}")).collect::<Vec<_>>(), opts);
                for round in 1..=3u8 {
                    for i in 0..n {
                        fs.write(format!("w/{i}"), vec![round; 1500]).unwrap();
                    }
                }
                let _ = handle.join();
                for i in 0..n {
                    let b = fs.read(format!("w/{i}")).unwrap();
                    assert!(
                        b.iter().all(|&x| x == 3),
                        "{} {priority:?}: w/{i} reads version {} after the warm",
                        e.label,
                        b[0]
                    );
                }
                // evict everything and read again
                for i in 0..n * 3 {
                    let _ = fs.write(format!("other/{i}"), vec![9u8; 1500]);
                }
                for i in 0..n {
                    let b = fs.read(format!("w/{i}")).unwrap();
                    assert!(
                        b.iter().all(|&x| x == 3),
                        "{} {priority:?}: w/{i} reads version {} after evictions",
                        e.label,
                        b[0]
                    );
                }
                fs.flush().unwrap();
                for i in 0..n {
                    assert_eq!(e.on_backend(&format!("w/{i}")), Some(vec![3u8; 1500]), "{}", e.label);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dirty data and eviction, stats
// ---------------------------------------------------------------------------------------------

/// "A dirty file is never evicted before it is written", even with a budget far smaller than the
/// dirty data and a storm of reads of other files.
#[test]
fn holds_dirty_files_survive_eviction_pressure() {
    for os in [false, true] {
        let e = env_with(os, WB_SLOW, 32 << 10, 4096, 1024);
        let fs = &e.fs;
        for i in 0..200u32 {
            fs.write(format!("d/{i}"), vec![(i % 251) as u8; 3000]).unwrap();
        }
        for i in 0..300u32 {
            e.store.inner().write(&format!("o/{i}"), &[1; 3000]).unwrap();
            let _ = fs.read(format!("o/{i}"));
        }
        fs.clear();
        let _ = fs.invalidate_prefix("d");
        let _ = fs.invalidate_matching("**");
        for i in 0..200u32 {
            let b = fs.read(format!("d/{i}")).unwrap();
            assert_eq!(&b[..], &vec![(i % 251) as u8; 3000][..], "{}: dirty d/{i} lost", e.label);
        }
        let st = fs.stats();
        assert_eq!(st.dirty_entries, 200, "{}: {st:?}", e.label);
        assert_eq!(st.dirty_bytes, 200 * 3000, "{}", e.label);
        fs.flush().unwrap();
        let st = fs.stats();
        assert_eq!((st.dirty_entries, st.dirty_bytes), (0, 0));
        assert!(st.flushes >= 200 && st.flushed_bytes >= 600_000, "{}: {st:?}", e.label);
        for i in 0..200u32 {
            assert_eq!(e.on_backend(&format!("d/{i}")), Some(vec![(i % 251) as u8; 3000]));
        }
    }
}

/// Stats add up: writes, bytes written, read hits and misses, removed.
#[test]
fn holds_stats_sanity() {
    each(|e, wb| {
        let fs = &e.fs;
        for i in 0..10 {
            fs.write(format!("s/{i}"), vec![1u8; 100]).unwrap();
        }
        let st = fs.stats();
        assert_eq!((st.writes, st.bytes_written), (10, 1000), "{}: {st:?}", e.label);
        if wb {
            assert!(st.dirty_bytes + st.flushed_bytes >= 1000);
        }
        fs.flush().unwrap();
        let before = fs.stats();
        for i in 0..10 {
            fs.read(format!("s/{i}")).unwrap();
        }
        let after = fs.stats();
        assert_eq!(
            after.read_hits + after.read_misses - before.read_hits - before.read_misses,
            10,
            "{}: {after:?}",
            e.label
        );
        fs.remove("s/0").unwrap();
        assert_eq!(fs.remove_all("s").unwrap(), 9, "{}", e.label);
        assert_eq!(fs.stats().removed, 10, "{}", e.label);
        let json: serde_json::Value = serde_json::from_str(&fs.stats().to_json()).unwrap();
        assert!(json.is_object());
        let prom = fs.stats().to_prometheus();
        assert!(prom.lines().all(|l| l.is_empty() || l.starts_with('#') || l.starts_with("cachefs_")), "{prom}");
    });
}

/// The Prometheus text of `FsStats` must stay valid whatever the name (label values escaped).
#[test]
fn holds_fs_prometheus_escapes_the_name() {
    for name in ["quote\"d", "back\\slash", "new\nline"] {
        let fs = CacheFs::builder(MemBackend::new()).name(name).build();
        fs.write("a", b"1".to_vec()).unwrap();
        let prom = fs.stats().to_prometheus();
        for l in prom.lines() {
            assert!(l.is_empty() || l.starts_with('#') || l.starts_with("cachefs_"), "name {name:?}: stray line {l:?}");
        }
    }
}

/// `flush()` "Ok means every write acknowledged before this call is on the backend", while other
/// threads keep writing during the flush.
#[test]
fn holds_flush_ok_means_on_backend_under_concurrent_writes() {
    for os in [false, true] {
        let e = env(os, WB);
        let fs = &e.fs;
        let stop = AtomicBool::new(false);
        let acked: std::sync::Mutex<BTreeMap<String, u64>> = Default::default();
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (stop, acked) = (&stop, &acked);
                s.spawn(move || {
                    let mut v = 0u64;
                    while !stop.load(SeqCst) {
                        v += 1;
                        let p = format!("t{t}/{}", v % 17);
                        fs.write(&p, v.to_le_bytes().repeat(100)).unwrap();
                        acked.lock().unwrap().insert(p, v);
                    }
                });
            }
            for _ in 0..30 {
                std::thread::sleep(Duration::from_millis(10));
                let snapshot = acked.lock().unwrap().clone();
                fs.flush().unwrap();
                for (p, v) in snapshot {
                    let on = e.on_backend(&p).expect("acknowledged file missing after flush Ok");
                    let got = u64::from_le_bytes(on[..8].try_into().unwrap());
                    assert!(
                        got >= v,
                        "{}: {p} on backend is version {got}, {v} was acknowledged before flush",
                        e.label
                    );
                }
            }
            stop.store(true, SeqCst);
        });
    }
}

/// Edge arguments: ranges past the end or overflowing u64, reader seeks, for small and large files.
#[test]
fn holds_range_and_seek_edges() {
    each(|e, _| {
        let fs = &e.fs;
        let small: Vec<u8> = (0..100u8).collect();
        let large: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        fs.write("small", small.clone()).unwrap();
        fs.write("large", large.clone()).unwrap();
        for (p, data) in [("small", &small), ("large", &large)] {
            let n = data.len() as u64;
            for (off, len) in
                [(0, 0), (n, 10), (n + 5, 10), (n - 1, u64::MAX), (u64::MAX, 1), (u64::MAX - 1, 10), (1, u64::MAX)]
            {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fs.read_range(p, off, len)));
                let r = r.unwrap_or_else(|_| panic!("{}: read_range({p}, {off}, {len}) panicked", e.label));
                if let Ok(b) = r {
                    let start = off.min(n) as usize;
                    let end = off.saturating_add(len).min(n) as usize;
                    assert_eq!(&b[..], &data[start..end.max(start)], "{}: read_range({p}, {off}, {len})", e.label);
                }
            }
            let mut r = fs.open(p).unwrap();
            assert_eq!(r.len(), n);
            assert_eq!(r.seek(SeekFrom::End(-3)).unwrap(), n - 3);
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            assert_eq!(&buf[..], &data[data.len() - 3..], "{}: {p}", e.label);
            assert!(r.seek(SeekFrom::Current(-(n as i64) - 1)).is_err());
            assert_eq!(r.seek(SeekFrom::Start(n + 100)).unwrap(), n + 100);
            let mut one = [0u8; 1];
            assert_eq!(r.read(&mut one).unwrap(), 0, "{}: read past the end", e.label);
            r.seek(SeekFrom::Start(7)).unwrap();
            let mut buf = vec![0u8; 5];
            r.read_exact(&mut buf).unwrap();
            assert_eq!(&buf[..], &data[7..12]);
        }
    });
}

/// A large file opened for reading, then removed or rewritten: later reads fail with `Modified` or
/// return the opened version, never bytes of another; a small file is a snapshot.
#[test]
fn holds_reader_of_removed_or_rewritten_file() {
    each(|e, _| {
        let fs = &e.fs;
        fs.write("big", vec![1u8; 50_000]).unwrap();
        fs.write("small", vec![1u8; 100]).unwrap();
        let mut rb = fs.open("big").unwrap();
        let mut rs = fs.open("small").unwrap();
        let mut head = vec![0u8; 3000];
        rb.read_exact(&mut head).unwrap();
        fs.write("big", vec![2u8; 50_000]).unwrap();
        fs.write("small", vec![2u8; 100]).unwrap();
        fs.clear();
        let mut rest = Vec::new();
        match rb.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.iter().all(|&b| b == 1) && rest.len() == 47_000, "{}: mixed versions", e.label),
            Err(err) => assert!(rest.iter().all(|&b| b == 1), "{}: {err}", e.label),
        }
        let mut all = Vec::new();
        rs.read_to_end(&mut all).unwrap();
        assert_eq!(all, vec![1u8; 100], "{}: small file is not a snapshot", e.label);
        let mut rb = fs.open("big").unwrap();
        fs.remove("big").unwrap();
        fs.clear();
        let mut rest = Vec::new();
        if rb.read_to_end(&mut rest).is_ok() {
            assert!(rest.iter().all(|&b| b == 2) && rest.len() == 50_000, "{}", e.label);
        }
    });
}

/// "When dirty bytes would exceed `max_dirty_bytes`, writers wait; if the flusher then completes a
/// pass in which every write failed, waiting writers get `Error::WriteBackStalled` ... instead of
/// waiting forever." With the backend failing every write, writers must get an answer.
#[test]
fn holds_write_back_stall_answers_instead_of_hanging() {
    for os in [false, true] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let e = env_with(
                os,
                WriteMode::WriteBack { delay: Duration::from_millis(5), max_dirty_bytes: 10_000 },
                1 << 20,
                8192,
                2048,
            );
            e.store.fail_always(Op::Write, EIO);
            let mut outcomes = Vec::new();
            for i in 0..30 {
                outcomes.push(
                    e.fs.write(format!("s/{i}"), vec![1u8; 1000])
                        .map_err(|e| matches!(e, Error::WriteBackStalled { .. })),
                );
            }
            let accepted: Vec<usize> = (0..30).filter(|&i| outcomes[i].is_ok()).collect();
            let stalled = outcomes.iter().filter(|o| **o == Err(true)).count();
            // What was accepted is still readable, and lands once the backend heals.
            for &i in &accepted {
                assert_eq!(e.fs.read(format!("s/{i}")).unwrap().len(), 1000);
            }
            e.store.heal();
            e.fs.flush().unwrap();
            for &i in &accepted {
                assert_eq!(e.on_backend(&format!("s/{i}")), Some(vec![1u8; 1000]));
            }
            let _ = tx.send((accepted.len(), stalled));
        });
        let (accepted, stalled) = rx.recv_timeout(Duration::from_secs(50)).expect("writers hung on a failing backend");
        assert!(stalled > 0 && accepted <= 11, "os {os}: accepted {accepted}, stalled {stalled}");
    }
}

/// Dropping a write-back `CacheFs` flushes; `close()` reports failures.
#[test]
fn holds_drop_and_close_flush() {
    for os in [false, true] {
        let e = env(os, WB_SLOW);
        let Env { fs, store, dir, .. } = e;
        for i in 0..50 {
            fs.write(format!("x/{i}"), vec![i as u8; 500]).unwrap();
        }
        drop(fs);
        for i in 0..50 {
            let mut buf = Vec::new();
            store.inner().read(&format!("x/{i}"), &mut buf).unwrap();
            assert_eq!(buf, vec![i as u8; 500]);
        }
        let fs = CacheFs::builder(Arc::clone(&store)).write_mode(WB_SLOW).build();
        fs.write("y", b"1".to_vec()).unwrap();
        store.fail_always(Op::Write, EIO);
        let r = fs.close();
        assert!(matches!(r, Err(Error::Flush { .. })), "close with a failing backend: {r:?}");
        store.heal();
        drop(dir);
    }
}

/// Dataset names are "one plain component"; globs and lists cannot leave the root.
#[test]
fn holds_dataset_names_and_warm_inputs_are_checked() {
    each(|e, _| {
        let fs = &e.fs;
        for bad in ["", ".", "..", "a/b", "/abs", "a\0b", "x.cachefs-tmp.y"] {
            let r = fs.store_file(bad, "f", b"1".to_vec());
            if r.is_ok() {
                // the marker case may be accepted by MemBackend; then it must round-trip
                assert_eq!(&fs.get_file(bad, "f").unwrap()[..], b"1", "{}: dataset {bad:?}", e.label);
                fs.flush().unwrap_or_else(|err| panic!("{}: dataset {bad:?} acknowledged, flush: {err}", e.label));
            }
        }
        assert!(fs.store_file("ds", "../escape", b"1".to_vec()).is_err(), "{}", e.label);
        assert!(matches!(fs.warm_glob("[", WarmOptions::default()), Err(Error::InvalidPattern { .. })));
        assert!(fs.invalidate_matching("[").is_err());
        let list = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(list.path(), "# comment\n\n../../etc/passwd\n/etc/passwd\nok\n").unwrap();
        fs.write("ok", b"fine".to_vec()).unwrap();
        let report = fs.warm_from_list(list.path(), WarmOptions::default()).unwrap();
        assert_eq!(report.files, 1, "{}: {report:?}", e.label);
        assert_eq!(report.errors.len(), 2, "{}: {report:?}", e.label);
    });
}

/// `content_ttl`: "Dirty write-back data is never dropped by this."; expired clean content is read
/// again from the backend.
#[test]
fn holds_content_ttl_never_drops_dirty_data() {
    for os in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let clock = cachefs::ManualClock::new();
        let b = if os {
            CacheFs::builder(OsBackend::new(dir.path()).unwrap())
        } else {
            CacheFs::builder(MemBackend::new())
        };
        let fs = b
            .write_mode(WB_SLOW)
            .content_ttl(Duration::from_secs(1))
            .metadata_ttl(Duration::from_secs(1))
            .clock(clock.clone())
            .build();
        fs.write("d", b"dirty".to_vec()).unwrap();
        for _ in 0..5 {
            clock.advance(Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(&fs.read("d").unwrap()[..], b"dirty", "os {os}");
            assert_eq!(fs.stat("d").unwrap().len, 5, "os {os}");
            assert!(fs.exists("d").unwrap());
        }
        fs.flush().unwrap();
        assert_eq!(fs.stats().dirty_entries, 0);
    }
}

/// `WarmPriority::Low`: "Only fills free space: a file that would evict something is skipped."
#[test]
fn holds_low_priority_warm_evicts_nothing() {
    for os in [false, true] {
        let e = env_with(os, WriteMode::WriteThrough, 256 << 10, 16 << 10, 4096);
        let fs = &e.fs;
        for i in 0..400 {
            e.store.inner().write(&format!("old/{i}"), &[1u8; 2000]).unwrap();
            e.store.inner().write(&format!("new/{i}"), &[2u8; 2000]).unwrap();
        }
        // Fill the cache with what fits.
        for i in 0..400 {
            fs.read(format!("old/{i}")).unwrap();
        }
        let cached_before = fs.stats().data.entries;
        let evicted_before = fs.stats().data.evictions();
        let report = fs
            .warm_dir("new", WarmOptions { priority: WarmPriority::Low, workers: 2, ..WarmOptions::default() })
            .unwrap();
        let after = fs.stats();
        assert!(report.skipped > 0, "os {os}: nothing skipped: {report:?}");
        assert_eq!(
            after.data.evictions(),
            evicted_before,
            "os {os}: a low-priority warm evicted {} entries (cached before {cached_before}, report {report:?})",
            after.data.evictions() - evicted_before
        );
    }
}

/// "a rename or streamed commit claims its target for its duration": a rename onto `c` racing a
/// write-back write of `c/y` (and a streamed writer committing `c` racing a write of `c/y`) must never
/// leave an acknowledged write that cannot be flushed.
#[test]
fn holds_rename_and_commit_racing_conflicting_writes() {
    for os in [false, true] {
        let e = env(os, WB_SLOW);
        let fs = &e.fs;
        for round in 0..200 {
            let src = format!("src{round}");
            let c = format!("r{round}/c");
            let cy = format!("r{round}/c/y");
            fs.write(&src, vec![1u8; 100]).unwrap();
            if round % 2 == 0 {
                fs.flush().unwrap();
            }
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    barrier.wait();
                    if round % 3 == 0 {
                        let mut w = fs.create(&c).unwrap_or_else(|_| fs.create(format!("r{round}/other")).unwrap());
                        w.write_all(&vec![2u8; 20_000]).unwrap();
                        let _ = w.close();
                    } else {
                        let _ = fs.rename(&src, &c);
                    }
                });
                s.spawn(|| {
                    barrier.wait();
                    let _ = fs.write(&cy, vec![3u8; 10]);
                });
            });
        }
        let r = fs.flush();
        assert!(r.is_ok(), "{}: acknowledged writes that cannot be flushed: {r:?}", e.label);
    }
}
