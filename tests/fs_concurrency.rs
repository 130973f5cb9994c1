//! Readers, writers, invalidations and evictions at once, in each write mode: every read returns a
//! complete version of the file it asked for, and a reader never sees a file go back to an older version
//! (no stale fill overwrites a newer write). Bounded: a fixed number of operations per thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cachefs::fs::{Backend, CacheFs, MemBackend, OsBackend, WriteMode};

const PATHS_PER_WRITER: u64 = 6;
const WRITES: u64 = 1_500;
const READS: u64 = 10_000;

/// Version `v` of `path`: the path and version, then padding to a length that depends on both.
fn content(path: &str, v: u64) -> Vec<u8> {
    let mut out = format!("{path}|{v}|").into_bytes();
    out.resize(out.len() + ((v * 37) % 3000) as usize, (v % 251) as u8);
    out
}

/// The version a complete copy of `path` holds; panics on anything else.
fn version(path: &str, bytes: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    let mut parts = text.split('|');
    assert_eq!(parts.next(), Some(path), "read another file's content");
    let v: u64 = parts.next().and_then(|v| v.parse().ok()).expect("a header");
    assert_eq!(bytes, content(path, v), "{path}: a torn or mixed version {v}");
    v
}

fn run(fs: Arc<CacheFs>, backend: &dyn Backend, label: &str) {
    let writers = 2u64;
    let paths: Vec<Vec<String>> =
        (0..writers).map(|w| (0..PATHS_PER_WRITER).map(|i| format!("c/{w}/{i}")).collect()).collect();
    for p in paths.iter().flatten() {
        fs.write(p, content(p, 0)).unwrap();
    }
    // Readers stop once every writer has finished (or after READS reads each).
    let done = AtomicBool::new(false);
    let writing = AtomicU64::new(writers);
    let all: Vec<&String> = paths.iter().flatten().collect();
    std::thread::scope(|s| {
        for own in &paths {
            let (fs, done, writing) = (&fs, &done, &writing);
            s.spawn(move || {
                for v in 1..=WRITES {
                    let p = &own[(v % PATHS_PER_WRITER) as usize];
                    fs.write(p, content(p, v)).unwrap();
                }
                if writing.fetch_sub(1, SeqCst) == 1 {
                    done.store(true, SeqCst);
                }
            });
        }
        for r in 0..2u64 {
            let (fs, all, done) = (&fs, &all, &done);
            s.spawn(move || {
                let mut seen = vec![0u64; all.len()];
                let mut x = r + 1;
                for _ in 0..READS {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let i = (x >> 33) as usize % all.len();
                    let v = version(all[i], &fs.read(all[i]).unwrap());
                    assert!(v >= seen[i], "{label}: {} went back from version {} to {v}", all[i], seen[i]);
                    seen[i] = v;
                    if done.load(SeqCst) {
                        break;
                    }
                }
            });
        }
        let (fs, all) = (&fs, &all);
        s.spawn(move || {
            for k in 0..4_000usize {
                fs.invalidate(all[k % all.len()]).unwrap();
                if k % 97 == 0 {
                    fs.clear();
                }
            }
        });
    });
    assert!(done.load(SeqCst), "{label}: every writer finished");
    fs.flush().unwrap();
    for p in paths.iter().flatten() {
        let cached = fs.read(p).unwrap();
        let mut stored = Vec::new();
        backend.read(p, &mut stored).unwrap();
        assert_eq!(stored, cached.to_vec(), "{label}: {p} differs between cache and backend after flush");
        assert!(version(p, &stored) >= WRITES - PATHS_PER_WRITER, "{label}: {p} lost its last writes");
    }
}

#[test]
fn readers_never_see_torn_or_older_versions() {
    let modes = [
        WriteMode::WriteThrough,
        WriteMode::WriteAround,
        WriteMode::WriteBack { delay: Duration::from_millis(1), max_dirty_bytes: 16 << 10 },
    ];
    for mode in modes {
        // 64 KiB of cache for 12 files of up to 3 KB, plus constant invalidation: plenty of refills.
        let mem = Arc::new(MemBackend::new());
        let fs = Arc::new(CacheFs::builder(Arc::clone(&mem)).max_bytes(64 << 10).write_mode(mode).build());
        run(fs, &*mem, &format!("mem {mode:?}"));
        let dir = tempfile::tempdir().unwrap();
        let os = Arc::new(OsBackend::new(dir.path()).unwrap());
        let fs = Arc::new(CacheFs::builder(Arc::clone(&os)).max_bytes(64 << 10).write_mode(mode).build());
        run(fs, &*os, &format!("os {mode:?}"));
    }
}
