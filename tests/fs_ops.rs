//! Every `CacheFs` operation, in each write mode, over `MemBackend` and `OsBackend` (both wrapped in a
//! backend that counts calls and fails on demand).

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cachefs::fs::{Backend, CacheFs, Error, MemBackend, OsBackend, WarmOptions, WarmPriority, WriteMode};
use common::faulty::{EACCES, EIO, ENOSPC, Faulty, Op};
use tempfile::TempDir;

const MODES: [WriteMode; 3] = [
    WriteMode::WriteThrough,
    WriteMode::WriteBack { delay: Duration::from_millis(20), max_dirty_bytes: 1 << 20 },
    WriteMode::WriteAround,
];

struct Setup {
    fs: CacheFs,
    store: Arc<Faulty>,
    mode: WriteMode,
    name: String,
    _dir: Option<TempDir>,
}

impl Setup {
    fn write_back(&self) -> bool {
        matches!(self.mode, WriteMode::WriteBack { .. })
    }

    /// What the backend holds at `path` right now (None if missing).
    fn on_backend(&self, path: &str) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        self.store.inner().read(path, &mut buf).ok().map(|()| buf)
    }
}

fn setup(os: bool, mode: WriteMode, max_bytes: u64) -> Setup {
    setup_with(os, mode, max_bytes, max_bytes / 8)
}

fn setup_with(os: bool, mode: WriteMode, max_bytes: u64, large_file_threshold: u64) -> Setup {
    let (store, dir) = if os {
        let dir = tempfile::tempdir().unwrap();
        (Faulty::new(OsBackend::new(dir.path()).unwrap()), Some(dir))
    } else {
        (Faulty::new(MemBackend::new()), None)
    };
    let store = Arc::new(store);
    let fs = CacheFs::builder(Arc::clone(&store))
        .max_bytes(max_bytes)
        .large_file_threshold(large_file_threshold)
        .write_mode(mode)
        .chunk_size(4096)
        .build();
    let name = format!("{} {:?}", if os { "os" } else { "mem" }, mode);
    Setup { fs, store, mode, name, _dir: dir }
}

/// Runs `f` for each backend and write mode.
fn each(max_bytes: u64, f: impl Fn(&Setup)) {
    for os in [false, true] {
        for mode in MODES {
            f(&setup(os, mode, max_bytes));
        }
    }
}

#[test]
fn write_read_stat_exists_round_trip() {
    each(1 << 20, |s| {
        let fs = &s.fs;
        fs.write("a/b.txt", b"hello".to_vec()).unwrap();
        assert_eq!(&fs.read("a/b.txt").unwrap()[..], b"hello", "{}", s.name);
        assert_eq!(&fs.read("./a//b.txt").unwrap()[..], b"hello", "{}", s.name);
        assert_eq!(&fs.read_range("a/b.txt", 1, 3).unwrap()[..], b"ell");
        assert_eq!(&fs.read_range("a/b.txt", 4, 100).unwrap()[..], b"o");
        assert!(fs.read_range("a/b.txt", 99, 1).unwrap().is_empty());
        assert_eq!(fs.stat("a/b.txt").unwrap().len, 5);
        assert!(fs.exists("a/b.txt").unwrap());
        assert!(!fs.exists("a/none").unwrap());
        assert!(!fs.exists("a").unwrap(), "{}: a directory is not a file", s.name);
        assert!(fs.read("a/none").unwrap_err().is_not_found());
        fs.write("a/b.txt", b"bye".to_vec()).unwrap();
        assert_eq!(&fs.read("a/b.txt").unwrap()[..], b"bye", "{}", s.name);
        assert_eq!(fs.stat("a/b.txt").unwrap().len, 3);
        fs.flush().unwrap();
        assert_eq!(s.on_backend("a/b.txt").as_deref(), Some(&b"bye"[..]), "{}", s.name);
        let st = fs.stats();
        assert_eq!((st.writes, st.bytes_written), (2, 8));
        assert!(st.read_hits + st.read_misses >= 4);
    });
}

#[test]
fn a_second_read_is_a_hit_and_misses_fill_once() {
    each(1 << 20, |s| {
        s.store.inner().write("f", &[7; 1000]).unwrap();
        let before = s.store.reads();
        std::thread::scope(|t| {
            for _ in 0..4 {
                t.spawn(|| assert_eq!(s.fs.read("f").unwrap().len(), 1000));
            }
        });
        assert_eq!(s.store.reads() - before, 1, "{}: one fill however many miss", s.name);
        s.fs.read("f").unwrap();
        let st = s.fs.stats();
        assert_eq!(st.read_misses, 1);
        assert_eq!(st.read_hits, 4);
        assert_eq!(st.bytes_from_backend, 1000);
        assert_eq!(st.bytes_from_cache, 4000);
    });
}

#[test]
fn invalid_paths_are_refused_before_the_backend_is_touched() {
    each(1 << 20, |s| {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a\0b", "", "."] {
            assert!(matches!(s.fs.read(bad), Err(Error::InvalidPath { .. })), "{}: {bad:?}", s.name);
            assert!(matches!(s.fs.write(bad, vec![1]), Err(Error::InvalidPath { .. })), "{bad:?}");
            assert!(matches!(s.fs.stat(bad), Err(Error::InvalidPath { .. })), "{bad:?}");
            assert!(matches!(s.fs.remove(bad), Err(Error::InvalidPath { .. })), "{bad:?}");
            assert!(matches!(s.fs.create(bad), Err(Error::InvalidPath { .. })), "{bad:?}");
            assert!(matches!(s.fs.open(bad), Err(Error::InvalidPath { .. })), "{bad:?}");
        }
        assert!(matches!(s.fs.remove_all("../"), Err(Error::InvalidPath { .. })));
        assert!(matches!(s.fs.invalidate_matching("[z-a"), Err(Error::InvalidPattern { .. })));
        assert_eq!(s.store.reads() + s.store.writes(), 0, "{}", s.name);
    });
}

#[test]
fn handles_read_seek_write_and_store_on_close() {
    each(1 << 20, |s| {
        let mut w = s.fs.create("h/file").unwrap();
        w.write_all(b"0123456789").unwrap();
        w.seek(SeekFrom::Start(2)).unwrap();
        w.write_all(b"ab").unwrap();
        w.seek(SeekFrom::End(2)).unwrap();
        w.write_all(b"Z").unwrap();
        assert!(s.fs.read("h/file").unwrap_err().is_not_found(), "{}: nothing stored before close", s.name);
        w.close().unwrap();
        let want = b"01ab456789\0\0Z";
        assert_eq!(&s.fs.read("h/file").unwrap()[..], want, "{}", s.name);
        if s.write_back() {
            // flush-on-close is on by default: closing wrote it to the backend.
            assert_eq!(s.on_backend("h/file").as_deref(), Some(&want[..]));
        }
        let mut r = s.fs.open("h/file").unwrap();
        assert_eq!(r.len(), 13);
        let mut out = String::new();
        r.seek(SeekFrom::Current(2)).unwrap();
        r.by_ref().take(2).read_to_string(&mut out).unwrap();
        assert_eq!(out, "ab");
        r.seek(SeekFrom::End(-1)).unwrap();
        let mut last = Vec::new();
        r.read_to_end(&mut last).unwrap();
        assert_eq!(last, b"Z");
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
        // Only `close` stores: flushing stores nothing, and dropping or aborting discards.
        s.fs.write("h/kept", b"old".to_vec()).unwrap();
        {
            let mut dropped = s.fs.create("h/kept").unwrap();
            dropped.write_all(b"new").unwrap();
            dropped.flush().unwrap();
            assert_eq!(&s.fs.read("h/kept").unwrap()[..], b"old", "{}: flush stores nothing", s.name);
        }
        assert_eq!(&s.fs.read("h/kept").unwrap()[..], b"old", "{}: drop discards", s.name);
        assert_eq!(s.fs.stats().abandoned_writers, 1, "{}", s.name);
        let mut aborted = s.fs.create("h/new").unwrap();
        aborted.write_all(b"x").unwrap();
        aborted.abort();
        assert!(s.fs.read("h/new").unwrap_err().is_not_found(), "{}: abort discards", s.name);
        assert_eq!(s.fs.stats().abandoned_writers, 1, "{}: an abort is not abandoned", s.name);
        let _ = s.fs.flush();
        assert_eq!(s.on_backend("h/kept").as_deref(), Some(&b"old"[..]), "{}", s.name);
        assert_eq!(s.on_backend("h/new"), None, "{}", s.name);
    });
}

#[test]
fn remove_and_remove_all_take_files_from_cache_dirty_set_and_backend() {
    each(1 << 20, |s| {
        for p in ["d/1", "d/2", "d/sub/3", "dd/4", "e"] {
            s.fs.write(p, p.as_bytes().to_vec()).unwrap();
        }
        s.fs.remove("e").unwrap();
        assert!(s.fs.read("e").unwrap_err().is_not_found(), "{}", s.name);
        assert!(s.fs.remove("e").unwrap_err().is_not_found());
        assert_eq!(s.fs.remove_all("d").unwrap(), 3, "{}", s.name);
        for p in ["d/1", "d/2", "d/sub/3"] {
            assert!(s.fs.read(p).unwrap_err().is_not_found(), "{}: {p}", s.name);
        }
        s.fs.flush().unwrap();
        assert_eq!(s.on_backend("dd/4").as_deref(), Some(&b"dd/4"[..]));
        assert_eq!(s.store.inner().list("").unwrap(), ["dd/4"], "{}: nothing comes back after a flush", s.name);
        assert_eq!(s.fs.stats().dirty_entries, 0);
    });
}

#[test]
fn rename_moves_files_including_dirty_ones() {
    each(1 << 20, |s| {
        s.fs.write("r/a", b"aaa".to_vec()).unwrap();
        s.fs.write("r/b", b"old b".to_vec()).unwrap();
        s.fs.read("r/b").unwrap();
        s.fs.rename("r/a", "r/b").unwrap();
        assert!(s.fs.read("r/a").unwrap_err().is_not_found(), "{}", s.name);
        assert_eq!(&s.fs.read("r/b").unwrap()[..], b"aaa", "{}", s.name);
        assert_eq!(s.fs.stat("r/b").unwrap().len, 3);
        s.fs.rename("r/b", "r/b").unwrap();
        assert!(s.fs.rename("r/none", "r/c").unwrap_err().is_not_found());
        assert!(matches!(s.fs.rename("r/b", "../x"), Err(Error::InvalidPath { .. })));
        s.fs.flush().unwrap();
        assert_eq!(s.on_backend("r/b").as_deref(), Some(&b"aaa"[..]), "{}", s.name);
        assert_eq!(s.on_backend("r/a"), None);
        assert_eq!(s.fs.stats().dirty_entries, 0);
    });
}

#[test]
fn invalidation_drops_cached_copies_only() {
    each(1 << 20, |s| {
        for p in ["m/a.bin", "m/b.bin", "m/c.txt", "mm/d.bin", "z.bin"] {
            s.store.inner().write(p, b"v1").unwrap();
            s.fs.read(p).unwrap();
        }
        // Changed behind the cache's back: reads still see the cached copy until invalidated.
        s.store.inner().write("m/a.bin", b"v2").unwrap();
        assert_eq!(&s.fs.read("m/a.bin").unwrap()[..], b"v1");
        assert!(s.fs.invalidate("m/a.bin").unwrap());
        assert!(!s.fs.invalidate("m/a.bin").unwrap());
        assert_eq!(&s.fs.read("m/a.bin").unwrap()[..], b"v2", "{}", s.name);
        assert_eq!(s.fs.invalidate_matching("m/*.bin").unwrap(), 2);
        assert_eq!(s.fs.invalidate_prefix("m").unwrap(), 1, "{}: only m/c.txt was left under m", s.name);
        assert_eq!(s.fs.batch_invalidate(["mm/d.bin", "z.bin", "nope", "../bad"]), 2);
        let before = s.store.reads();
        s.fs.read("z.bin").unwrap();
        assert_eq!(s.store.reads(), before + 1);
        s.fs.clear();
        s.fs.read("z.bin").unwrap();
        assert_eq!(s.store.reads(), before + 2);
        assert!(s.fs.stats().invalidated >= 6);
    });
}

#[test]
fn invalidating_a_dirty_file_keeps_its_data() {
    let s = setup(false, WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 }, 1 << 20);
    s.fs.write("x", b"dirty".to_vec()).unwrap();
    s.fs.invalidate("x").unwrap();
    s.fs.clear();
    assert_eq!(&s.fs.read("x").unwrap()[..], b"dirty");
    assert_eq!(s.fs.stat("x").unwrap().len, 5);
    assert_eq!(s.on_backend("x"), None);
    s.fs.flush().unwrap();
    assert_eq!(s.on_backend("x").as_deref(), Some(&b"dirty"[..]));
}

#[test]
fn batch_stats_and_batch_flush_report_each_path() {
    each(1 << 20, |s| {
        s.fs.write("b/1", vec![1]).unwrap();
        s.fs.write("b/2", vec![1, 2]).unwrap();
        let stats = s.fs.batch_stats(["b/1", "b/2", "b/3", "/abs"]);
        assert_eq!(stats[0].as_ref().unwrap().len, 1);
        assert_eq!(stats[1].as_ref().unwrap().len, 2);
        assert!(stats[2].as_ref().unwrap_err().is_not_found());
        assert!(matches!(stats[3], Err(Error::InvalidPath { .. })));
        match s.fs.batch_flush(["b/1", "../x", "b/2"]) {
            Err(Error::Flush { failures }) => {
                assert_eq!(failures.len(), 1);
                assert_eq!(failures[0].path, "../x");
            }
            other => panic!("{}: {other:?}", s.name),
        }
        assert_eq!(s.on_backend("b/1").as_deref(), Some(&[1][..]), "{}: valid paths were still flushed", s.name);
        assert_eq!(s.fs.batch_flush(["b/1", "b/2"]).unwrap(), 0);
    });
}

#[test]
fn batch_flush_attempts_every_file_and_reports_every_failure() {
    let s = setup(true, WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 }, 1 << 20);
    for i in 0..5 {
        s.fs.write(format!("f{i}"), vec![i as u8; 10]).unwrap();
    }
    s.store.fail(Op::Write, 2, 2, ENOSPC); // the 2nd and 3rd writes fail
    let paths: Vec<String> = (0..5).map(|i| format!("f{i}")).collect();
    match s.fs.batch_flush(&paths) {
        Err(Error::Flush { failures }) => {
            assert_eq!(failures.len(), 2);
            assert!(failures.iter().all(|f| matches!(*f.error, Error::StorageFull { .. })));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.fs.stats().dirty_entries, 2);
    assert_eq!(s.fs.stats().flush_errors, 2);
    assert_eq!(s.fs.batch_flush(&paths).unwrap(), 2);
    for (i, p) in paths.iter().enumerate() {
        assert_eq!(s.on_backend(p), Some(vec![i as u8; 10]));
    }
}

#[test]
fn prefetch_and_warm_variants_load_in_parallel_with_progress() {
    each(1 << 20, |s| {
        for i in 0..20 {
            s.store.inner().write(&format!("w/{}/f{i}.bin", i % 2), &[i as u8; 100]).unwrap();
        }
        let report = s.fs.prefetch(["w/0/f0.bin", "w/1/f1.bin", "w/none", "../bad"], 3);
        assert_eq!((report.files, report.bytes, report.errors.len()), (2, 200, 2), "{}", s.name);
        let calls = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&calls);
        let options = WarmOptions {
            workers: 3,
            progress: Some(Arc::new(move |p| {
                assert!(p.files + p.errors + p.skipped <= p.total);
                seen.fetch_add(1, SeqCst);
            })),
            ..WarmOptions::default()
        };
        let report = s.fs.warm_glob("w/1/*.bin", options.clone()).unwrap();
        assert_eq!(report.files, 10);
        assert_eq!(calls.load(SeqCst), 10);
        assert_eq!(s.fs.warm_dir("w/0", options.clone()).unwrap().files, 10);
        let list = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(list.path(), "# comment\nw/0/f0.bin\n\n  w/1/f1.bin  \n").unwrap();
        assert_eq!(s.fs.warm_from_list(list.path(), options.clone()).unwrap().files, 2);
        assert!(matches!(s.fs.warm_from_list("/no/such/list", options.clone()), Err(Error::NotFound { .. })));
        let strict = WarmOptions { skip_errors: false, workers: 1, ..WarmOptions::default() };
        assert!(matches!(s.fs.warm(["w/0/f0.bin", "w/missing"], strict), Err(Error::WarmStopped { .. })));
        let handle = s.fs.warm_async(["w/0/f2.bin", "w/0/f4.bin"], WarmOptions::default());
        let report = handle.join().unwrap();
        assert_eq!(report.files, 2);
        assert!(s.fs.stats().warmed >= 26, "{}", s.fs.stats().warmed);
    });
}

#[test]
fn warm_async_reports_progress_and_can_be_cancelled() {
    let s = setup(false, WriteMode::WriteThrough, 64 << 20);
    let paths: Vec<String> = (0..200).map(|i| format!("a/{i}")).collect();
    for p in &paths {
        s.store.inner().write(p, &[1; 10]).unwrap();
    }
    // Each file takes at least 2 ms (the progress callback sleeps), so the cancel lands mid-warm.
    let slow = WarmOptions {
        workers: 1,
        progress: Some(Arc::new(|_| std::thread::sleep(Duration::from_millis(2)))),
        ..WarmOptions::default()
    };
    let handle = s.fs.warm_async(&paths, slow);
    handle.cancel();
    assert!(matches!(handle.join(), Err(Error::WarmStopped { .. })));
    assert!(s.fs.stats().warmed < 200);
    s.store.heal();
    let handle = s.fs.warm_async(&paths, WarmOptions { workers: 2, ..WarmOptions::default() });
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(handle.progress().files, 200);
    assert_eq!(handle.progress().total, 200);
    assert_eq!(handle.join().unwrap().files, 200);
}

/// 16 files of 7,000 bytes in a 64 KiB cache (8 shards of 8 KiB): at most 8 can be cached at once.
fn crowded() -> (Setup, Vec<String>) {
    let s = setup(false, WriteMode::WriteThrough, 64 << 10);
    let paths: Vec<String> = (0..16).map(|i| format!("p/{i}")).collect();
    for p in &paths {
        s.store.inner().write(p, &[3; 7000]).unwrap();
    }
    (s, paths)
}

#[test]
fn high_priority_files_are_served_without_the_backend_until_the_warm_completes() {
    let (s, paths) = crowded();
    let fs = Arc::new(s.fs);
    let reader = Arc::clone(&fs);
    let store = Arc::clone(&s.store);
    let all = paths.clone();
    let extra_reads = Arc::new(AtomicU64::new(u64::MAX));
    let out = Arc::clone(&extra_reads);
    let options = WarmOptions {
        workers: 1,
        priority: WarmPriority::High,
        progress: Some(Arc::new(move |p| {
            if p.files == 16 {
                let before = store.reads();
                for q in &all {
                    assert_eq!(reader.read(q).unwrap().len(), 7000);
                }
                out.store(store.reads() - before, SeqCst);
            }
        })),
        ..WarmOptions::default()
    };
    assert_eq!(fs.warm(&paths, options).unwrap().files, 16);
    assert_eq!(extra_reads.load(SeqCst), 0, "pinned files came from memory although the cache cannot hold them all");
    assert!(fs.stats().data.evictions() > 0);
    let before = s.store.reads();
    for q in &paths {
        fs.read(q).unwrap();
    }
    assert!(s.store.reads() > before, "after the warm the pins are released and eviction resumes");
}

#[test]
fn low_priority_warm_only_fills_free_space() {
    let (s, paths) = crowded();
    let report =
        s.fs.warm(&paths, WarmOptions { priority: WarmPriority::Low, workers: 1, ..WarmOptions::default() }).unwrap();
    assert!(report.skipped >= 8, "{report:?}");
    assert_eq!(report.files + report.skipped, 16);
    assert_eq!(s.fs.stats().warm_skipped, report.skipped);
}

#[test]
fn datasets_live_under_their_name() {
    each(1 << 20, |s| {
        s.fs.store_file("imagenet", "train/0.jpg", vec![0; 10]).unwrap();
        s.fs.store_file("imagenet", "train/1.jpg", vec![1; 10]).unwrap();
        s.fs.store_file("coco", "a.jpg", vec![2; 10]).unwrap();
        assert!(s.fs.has_file("imagenet", "train/0.jpg").unwrap());
        assert!(!s.fs.has_file("coco", "train/0.jpg").unwrap());
        assert_eq!(s.fs.get_file("coco", "a.jpg").unwrap().len(), 10);
        let mut w = s.fs.open_writer("coco", "b.jpg").unwrap();
        w.write_all(b"bbb").unwrap();
        w.close().unwrap();
        let mut r = s.fs.open_reader("coco", "b.jpg").unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"bbb");
        s.fs.flush().unwrap();
        assert_eq!(s.fs.dataset_files("imagenet").unwrap(), ["train/0.jpg", "train/1.jpg"], "{}", s.name);
        assert_eq!(s.on_backend("coco/b.jpg").as_deref(), Some(&b"bbb"[..]));
        for (ds, p) in [("a/b", "x"), ("..", "x"), ("", "x"), ("ok", "../../x"), ("ok", "/x")] {
            assert!(matches!(s.fs.get_file(ds, p), Err(Error::InvalidPath { .. })), "{ds}/{p}");
            assert!(matches!(s.fs.store_file(ds, p, vec![]), Err(Error::InvalidPath { .. })), "{ds}/{p}");
        }
    });
}

#[test]
fn large_files_stream_in_chunks_and_detect_changes() {
    // 64 KiB budget: threshold 8 KiB, chunks 4 KiB.
    each(64 << 10, |s| {
        let big: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        s.store.inner().write("big", &big).unwrap();
        assert_eq!(s.fs.read("big").unwrap(), big, "{}", s.name);
        assert_eq!(&s.fs.read_range("big", 4090, 20).unwrap()[..], &big[4090..4110]);
        assert_eq!(&s.fs.read_range("big", 49_990, 100).unwrap()[..], &big[49_990..]);
        let mut r = s.fs.open("big").unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, big);
        r.seek(SeekFrom::Start(10_000)).unwrap();
        let mut ten = [0u8; 10];
        r.read_exact(&mut ten).unwrap();
        assert_eq!(ten, big[10_000..10_010]);
        assert!(s.fs.stats().data.weighted_size <= 64 << 10);
        // A write while a reader streams: the reader's next chunk fails instead of mixing versions.
        let mut r = s.fs.open("big").unwrap();
        r.read_exact(&mut ten).unwrap();
        s.fs.write("big", vec![9; 30_000]).unwrap();
        r.seek(SeekFrom::Start(40_000)).unwrap();
        let e = r.read_exact(&mut ten).unwrap_err();
        let inner = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(matches!(inner, Some(Error::Modified { .. })), "{}: {e:?}", s.name);
        assert_eq!(s.fs.read("big").unwrap(), vec![9; 30_000], "{}", s.name);
    });
}

#[test]
fn large_files_are_streamed_to_the_backend_and_replace_atomically_on_close() {
    // 64 KiB budget: threshold 8 KiB, so a 50 KB file is streamed.
    each(64 << 10, |s| {
        s.fs.write("big", b"old".to_vec()).unwrap();
        let want: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let mut w = s.fs.create("big").unwrap();
        for chunk in want.chunks(7_000) {
            w.write_all(chunk).unwrap();
        }
        w.seek(SeekFrom::Start(10)).unwrap();
        w.write_all(&want[10..20]).unwrap(); // rewrite in place after spilling
        w.flush().unwrap(); // a streamed file is not stored by flush
        assert_eq!(&s.fs.read("big").unwrap()[..], b"old", "{}: nothing replaced before close", s.name);
        w.close().unwrap();
        assert_eq!(s.fs.read("big").unwrap(), want, "{}", s.name);
        assert_eq!(s.fs.stat("big").unwrap().len, 50_000);
        assert_eq!(s.on_backend("big"), Some(want.clone()), "{}: on the backend at close, in every mode", s.name);
        assert_eq!(s.fs.stats().dirty_entries, 0);
        // Dropped without close: discarded, and its temporary is gone.
        {
            let mut w = s.fs.create("big2").unwrap();
            w.write_all(&want).unwrap();
        }
        assert!(s.fs.read("big2").unwrap_err().is_not_found(), "{}", s.name);
        if let Some(dir) = &s._dir {
            assert_eq!(OsBackend::new(dir.path()).unwrap().remove_temp_files().unwrap(), 0, "{}", s.name);
        }
    });
}

#[test]
fn a_failed_commit_of_a_streamed_file_keeps_the_old_content() {
    for os in [false, true] {
        let s = setup(os, WriteMode::write_back(), 64 << 10);
        s.fs.write("f", b"old".to_vec()).unwrap();
        s.fs.flush().unwrap();
        let mut w = s.fs.create("f").unwrap();
        w.write_all(&[1; 20_000]).unwrap();
        // The faulty wrapper streams through its default (buffered) `create`, whose commit is one write.
        s.store.fail(Op::Write, 1, 1, ENOSPC);
        assert!(matches!(w.close(), Err(Error::StorageFull { .. })), "{}", s.name);
        assert_eq!(&s.fs.read("f").unwrap()[..], b"old");
        assert_eq!(s.on_backend("f").as_deref(), Some(&b"old"[..]));
    }
}

#[test]
fn write_through_failure_keeps_the_old_content() {
    for os in [false, true] {
        for mode in [WriteMode::WriteThrough, WriteMode::WriteAround] {
            let s = setup(os, mode, 1 << 20);
            s.fs.write("f", b"old".to_vec()).unwrap();
            s.store.fail(Op::Write, 1, 1, ENOSPC);
            assert!(matches!(s.fs.write("f", b"new".to_vec()), Err(Error::StorageFull { .. })), "{}", s.name);
            assert_eq!(&s.fs.read("f").unwrap()[..], b"old", "{}", s.name);
            assert_eq!(s.on_backend("f").as_deref(), Some(&b"old"[..]));
            assert_eq!(s.fs.stats().writes, 1);
        }
    }
}

#[test]
fn read_failures_are_typed_and_nothing_is_cached() {
    each(1 << 20, |s| {
        s.store.inner().write("r", b"data").unwrap();
        s.store.fail(Op::Read, 1, 1, EIO);
        assert!(matches!(s.fs.read("r"), Err(Error::Io { .. })), "{}", s.name);
        assert_eq!(&s.fs.read("r").unwrap()[..], b"data");
        s.store.fail(Op::Stat, 1, 1, EIO);
        assert!(matches!(s.fs.stat("missing-meta"), Err(Error::Io { .. })));
        s.store.inner().write("secret", b"s").unwrap();
        s.store.fail(Op::Read, 1, 1, EACCES);
        match s.fs.read("secret") {
            Err(Error::PermissionDenied { path }) => assert_eq!(path, "secret"),
            other => panic!("{}: {other:?}", s.name),
        }
        s.store.fail(Op::Write, 1, 1, EACCES);
        if !s.write_back() {
            assert!(matches!(s.fs.write("secret", vec![1]), Err(Error::PermissionDenied { .. })));
        }
        assert_eq!(&s.fs.read("secret").unwrap()[..], b"s", "{}: nothing changed", s.name);
    });
}

#[test]
fn write_back_keeps_dirty_files_whatever_the_cache_evicts() {
    for os in [false, true] {
        let s =
            setup(os, WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 64 << 20 }, 64 << 10);
        for i in 0..100u32 {
            s.fs.write(format!("d/{i}"), vec![i as u8; 5000]).unwrap();
        }
        assert!(s.fs.stats().data.weighted_size <= 64 << 10);
        assert_eq!(s.fs.stats().dirty_entries, 100);
        assert_eq!(s.store.writes(), 0);
        for i in 0..100u32 {
            assert_eq!(s.fs.read(format!("d/{i}")).unwrap(), vec![i as u8; 5000]);
        }
        assert_eq!(s.store.reads(), 0, "dirty data is served from memory");
        s.fs.flush().unwrap();
        assert_eq!(s.fs.stats().dirty_bytes, 0);
        for i in 0..100u32 {
            assert_eq!(s.on_backend(&format!("d/{i}")), Some(vec![i as u8; 5000]));
        }
    }
}

#[test]
fn the_flusher_writes_after_the_delay() {
    let s = setup(true, WriteMode::WriteBack { delay: Duration::from_millis(30), max_dirty_bytes: 1 << 20 }, 1 << 20);
    s.fs.write("later", b"x".to_vec()).unwrap();
    assert_eq!(s.on_backend("later"), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // The file lands on the backend a moment before the flusher counts it: wait for both.
    while (s.on_backend("later").is_none() || s.fs.stats().flushes == 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.on_backend("later").as_deref(), Some(&b"x"[..]));
    assert_eq!(s.fs.stats().flushes, 1);
}

#[test]
fn failed_flushes_keep_data_dirty_retry_and_report() {
    let s = setup(true, WriteMode::WriteBack { delay: Duration::from_millis(1), max_dirty_bytes: 1 << 20 }, 1 << 20);
    s.store.fail_always(Op::Write, EIO);
    s.fs.write("k", b"keep me".to_vec()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.fs.stats().flush_errors < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(s.fs.stats().flush_errors >= 2, "the flusher retries");
    assert!(matches!(s.fs.flush(), Err(Error::Flush { .. })));
    assert_eq!(&s.fs.read("k").unwrap()[..], b"keep me");
    assert_eq!(s.fs.stats().dirty_entries, 1);
    s.store.heal();
    s.fs.flush().unwrap();
    assert_eq!(s.on_backend("k").as_deref(), Some(&b"keep me"[..]));
}

#[test]
fn writers_wait_for_the_flusher_at_the_dirty_limit() {
    let max = 64 << 10;
    let s = setup(false, WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: max }, 1 << 20);
    s.store.slow_writes(Duration::from_millis(1));
    let peak = AtomicU64::new(0);
    std::thread::scope(|t| {
        for w in 0..2 {
            let (fs, peak) = (&s.fs, &peak);
            t.spawn(move || {
                for i in 0..40 {
                    fs.write(format!("bp/{w}/{i}"), vec![1; 8 << 10]).unwrap();
                    peak.fetch_max(fs.stats().dirty_bytes, SeqCst);
                }
            });
        }
    });
    assert!(peak.load(SeqCst) <= max, "dirty bytes peaked at {}", peak.load(SeqCst));
    assert!(s.fs.stats().backpressure_waits > 0);
    s.fs.flush().unwrap();
    assert_eq!(s.store.inner().list("bp").unwrap().len(), 80);
}

#[test]
fn a_stalled_backend_refuses_new_writes_instead_of_losing_them() {
    let s = setup(false, WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 10_000 }, 1 << 20);
    s.store.fail_always(Op::Write, ENOSPC);
    s.fs.write("a", vec![1; 8000]).unwrap();
    assert!(matches!(s.fs.write("b", vec![2; 8000]), Err(Error::WriteBackStalled { .. })));
    assert!(s.fs.read("b").unwrap_err().is_not_found(), "a refused write stored nothing");
    assert_eq!(s.fs.read("a").unwrap(), vec![1; 8000]);
    s.store.heal();
    s.fs.write("b", vec![2; 8000]).unwrap();
    s.fs.flush().unwrap();
    assert_eq!(s.on_backend("a"), Some(vec![1; 8000]));
    assert_eq!(s.on_backend("b"), Some(vec![2; 8000]));
}

#[test]
fn nothing_acknowledged_by_flush_is_lost_under_random_failures() {
    for os in [false, true] {
        let s =
            setup(os, WriteMode::WriteBack { delay: Duration::from_millis(2), max_dirty_bytes: 256 << 10 }, 128 << 10);
        let mut acknowledged = std::collections::BTreeMap::new();
        let mut pending = std::collections::BTreeMap::new();
        for round in 0..30u32 {
            if round % 3 == 0 {
                s.store.fail(Op::Write, 1 + u64::from(round % 4), 2, if round % 2 == 0 { EIO } else { ENOSPC });
            }
            for i in 0..10u32 {
                let path = format!("r/{}", (round * 7 + i) % 25);
                let data = vec![(round + i) as u8; 100 + (i as usize * 37)];
                s.fs.write(&path, data.clone()).unwrap();
                pending.insert(path, data);
            }
            if s.fs.flush().is_ok() {
                acknowledged.append(&mut pending);
            }
        }
        s.store.heal();
        s.fs.flush().unwrap();
        acknowledged.append(&mut pending);
        for (path, data) in &acknowledged {
            assert_eq!(s.on_backend(path).as_ref(), Some(data), "{}: {path}", s.name);
        }
        assert!(s.fs.stats().flush_errors > 0);
    }
}

#[test]
fn dropping_the_cache_flushes_dirty_files() {
    let store = Arc::new(MemBackend::new());
    let fs = CacheFs::builder(Arc::clone(&store)).write_mode(WriteMode::write_back()).build();
    fs.write("bye", b"flushed on drop".to_vec()).unwrap();
    drop(fs);
    let mut buf = Vec::new();
    store.read("bye", &mut buf).unwrap();
    assert_eq!(buf, b"flushed on drop");
    let fs = CacheFs::builder(Arc::clone(&store)).write_mode(WriteMode::write_back()).build();
    fs.write("closed", b"x".to_vec()).unwrap();
    fs.close().unwrap();
    assert!(store.stat("closed").is_ok());
}

#[test]
fn metadata_is_cached_for_its_ttl() {
    let clock = cachefs::ManualClock::new();
    let store = Arc::new(Faulty::new(MemBackend::new()));
    let fs = CacheFs::builder(Arc::clone(&store)).metadata_ttl(Duration::from_secs(5)).clock(clock.clone()).build();
    store.inner().write("m", b"12").unwrap();
    assert_eq!(fs.stat("m").unwrap().len, 2);
    store.inner().write("m", b"1234").unwrap();
    assert_eq!(fs.stat("m").unwrap().len, 2, "served from the metadata cache");
    clock.advance(Duration::from_secs(6));
    assert_eq!(fs.stat("m").unwrap().len, 4, "expired, asked again");
    let st = fs.stats();
    assert_eq!((st.metadata_hits, st.metadata_misses), (1, 2));
}

#[test]
fn content_expires_after_its_ttl_but_dirty_data_stays() {
    let clock = cachefs::ManualClock::new();
    let store = Arc::new(Faulty::new(MemBackend::new()));
    let fs = CacheFs::builder(Arc::clone(&store))
        .content_ttl(Duration::from_secs(60))
        .policy(cachefs::Policy::Ttl)
        .write_mode(WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 })
        .clock(clock.clone())
        .build();
    store.inner().write("clean", b"v1").unwrap();
    fs.read("clean").unwrap();
    fs.write("dirty", b"d".to_vec()).unwrap();
    store.inner().write("clean", b"v2").unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(&fs.read("clean").unwrap()[..], b"v1", "still fresh");
    clock.advance(Duration::from_secs(31));
    assert_eq!(&fs.read("clean").unwrap()[..], b"v2", "expired, read again");
    assert_eq!(&fs.read("dirty").unwrap()[..], b"d", "dirty data outlives the TTL");
    assert_eq!(store.reads(), 2);
    fs.flush().unwrap();
    assert!(store.inner().stat("dirty").is_ok());
}

#[test]
fn stats_export_as_json_and_prometheus() {
    // A delay the test cannot outlast, so the file is still dirty when counted.
    let s = setup(false, WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 }, 1 << 20);
    s.fs.write("x", vec![1; 10]).unwrap();
    s.fs.read("x").unwrap();
    let st = s.fs.stats();
    assert_eq!((st.read_hits, st.dirty_entries, st.dirty_bytes), (1, 1, 10));
    assert!(st.hit_rate() > 0.99);
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).unwrap();
    assert_eq!(json["dirty_bytes"], 10);
    let text = st.to_prometheus();
    assert!(text.contains("cachefs_fs_read_hits_total{cache=\"cachefs\"} 1"), "{text}");
    assert!(text.contains("# TYPE cachefs_fs_dirty_bytes gauge"));
}

/// Defect 3 (issue 11): a reader of a chunked file returned the next version's cached chunks.
#[test]
fn a_reader_of_a_chunked_file_never_mixes_versions() {
    // Threshold 8 KiB, chunks 4 KiB, and room for every chunk of both versions.
    for (os, mode) in [false, true].into_iter().flat_map(|os| MODES.map(|m| (os, m))) {
        let s = &setup_with(os, mode, 4 << 20, 8 << 10);
        let (v1, v2) = (vec![1u8; 50_000], vec![2u8; 50_000]);
        s.store.inner().write("big", &v1).unwrap();
        let mut a = s.fs.open("big").unwrap();
        let mut head = vec![0u8; 4096];
        a.read_exact(&mut head).unwrap();
        assert_eq!(head, v1[..4096], "{}", s.name);
        s.fs.write("big", v2.clone()).unwrap();
        assert_eq!(s.fs.read("big").unwrap(), v2, "{}: reader B sees version 2", s.name);
        let mut rest = Vec::new();
        match a.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.iter().all(|&b| b == 1), "{}: reader A mixed versions", s.name),
            Err(e) => {
                let inner = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
                assert!(matches!(inner, Some(Error::Modified { .. })), "{}: {e:?}", s.name);
            }
        }
    }
}

/// Defect 4 (issue 11): a writer dropped after a failed write committed the part written before it.
#[test]
fn a_writer_whose_write_failed_stores_nothing() {
    // 64 KiB budget: threshold 8 KiB, so the writer streams to the backend from its third block.
    each(64 << 10, |s| {
        s.fs.write("f", b"old".to_vec()).unwrap();
        s.fs.flush().unwrap();
        for errno in [EIO, ENOSPC] {
            // Dropped, as `?` does.
            let failed = (|| -> std::io::Result<()> {
                let mut w = s.fs.create("f").map_err(std::io::Error::from)?;
                s.store.fail(Op::Stream, 3, 1, errno);
                for _ in 0..10 {
                    w.write_all(&[7; 4096])?;
                }
                w.close().map_err(std::io::Error::from)
            })();
            assert!(failed.is_err(), "{}", s.name);
            let _ = s.fs.flush();
            assert_eq!(&s.fs.read("f").unwrap()[..], b"old", "{}: the old version stays", s.name);
            assert_eq!(s.on_backend("f").as_deref(), Some(&b"old"[..]), "{}", s.name);
            // Closed after the failure: `close` reports it and stores nothing.
            let mut w = s.fs.create("f").unwrap();
            s.store.fail(Op::Stream, 2, 1, errno);
            let results: Vec<bool> = (0..4).map(|_| w.write_all(&[8; 4096]).is_ok()).collect();
            assert!(results.contains(&false), "{}", s.name);
            assert!(w.close().is_err(), "{}: close of a writer whose write failed", s.name);
            let _ = s.fs.flush();
            assert_eq!(&s.fs.read("f").unwrap()[..], b"old", "{}", s.name);
            assert_eq!(s.on_backend("f").as_deref(), Some(&b"old"[..]), "{}", s.name);
        }
    });
}

/// Defect 5 (issue 11): write-back acknowledged writes that no flush could ever write.
#[test]
fn write_back_acknowledges_only_what_it_can_flush() {
    let long_path = format!("{}/f", vec!["d".repeat(200); 22].join("/"));
    let long_name = "n".repeat(255);
    for os in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Backend> =
            if os { Arc::new(OsBackend::new(dir.path()).unwrap()) } else { Arc::new(MemBackend::new()) };
        let fs = CacheFs::builder(Arc::clone(&store))
            .write_mode(WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 })
            .build();
        let name = if os { "os" } else { "mem" };
        if os {
            assert!(fs.write(&long_path, b"x".to_vec()).is_err(), "{name}: a {}-byte path", long_path.len());
            assert!(fs.create(&long_path).and_then(|w| w.close()).is_err(), "{name}");
        }
        // A 255-byte name is valid everywhere, temporary files included.
        fs.write(&long_name, b"x".to_vec()).unwrap();
        store.write("dir/inner", b"x").unwrap();
        assert!(fs.write("dir", b"x".to_vec()).is_err(), "{name}: the target is a directory");
        assert!(fs.create("dir").and_then(|w| w.close()).is_err(), "{name}");
        store.write("file", b"x").unwrap();
        assert!(fs.write("file/child", b"x".to_vec()).is_err(), "{name}: the parent is a file");
        // Conflicts within the dirty set itself.
        fs.write("p", b"x".to_vec()).unwrap();
        assert!(fs.write("p/q", b"y".to_vec()).is_err(), "{name}: the parent is a dirty file");
        fs.write("r/s", b"y".to_vec()).unwrap();
        assert!(fs.write("r", b"x".to_vec()).is_err(), "{name}: a dirty file lies below");
        assert!(fs.rename("p", "r/s/t").is_err(), "{name}: rename below a dirty file");
        // Everything acknowledged can be flushed.
        fs.flush().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fs.stats().dirty_entries, 0);
        let mut buf = Vec::new();
        store.read(&long_name, &mut buf).unwrap();
        assert_eq!(buf, b"x");
    }
}

/// Defect 6 (issue 11): a backend call that failed after taking effect left the old content cached.
#[test]
fn a_failed_call_that_took_effect_leaves_no_stale_copy() {
    each(64 << 10, |s| {
        let agree = |path: &str| {
            let cached = s.fs.read(path).ok().map(|b| b.to_vec());
            assert_eq!(cached, s.on_backend(path), "{}: {path}", s.name);
            assert_eq!(s.fs.stat(path).ok().map(|m| m.len), s.on_backend(path).map(|b| b.len() as u64), "{}", s.name);
        };
        for (p, v) in [("a", b"A"), ("b", b"B"), ("c", b"C")] {
            s.fs.write(p, v.to_vec()).unwrap();
        }
        s.fs.flush().unwrap();
        for p in ["a", "b", "c"] {
            s.fs.read(p).unwrap();
        }
        s.store.fail_after_effect(Op::Write, 1, 1, EIO);
        assert!(s.fs.rename("a", "b").is_err(), "{}", s.name);
        s.fs.flush().unwrap();
        agree("a");
        agree("b");
        s.store.fail_after_effect(Op::Write, 1, 1, EIO);
        assert!(s.fs.remove("b").is_err(), "{}", s.name);
        agree("b");
        let mut w = s.fs.create("c").unwrap();
        w.write_all(&[5; 20_000]).unwrap();
        s.store.fail_after_effect(Op::Write, 1, 1, EIO);
        assert!(w.close().is_err(), "{}", s.name);
        s.fs.flush().unwrap();
        agree("c");
    });
}

/// Defect 7 (issue 11): temporary names were the pid and a counter from 0, so a temporary left by a
/// crashed process under the same pid (a restarted container) made every write fail with "File exists".
#[test]
fn stale_temporaries_of_a_reused_pid_do_not_block_writes() {
    let dir = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    for seq in 0..4 {
        std::fs::write(dir.path().join(format!(".f{}{pid}.{seq}", cachefs::fs::TEMP_MARKER)), b"stale").unwrap();
    }
    let b = OsBackend::new(dir.path()).unwrap();
    b.write("f", b"new").unwrap();
    let mut w = b.create("f").unwrap();
    w.write_all(b"newer").unwrap();
    w.commit().unwrap();
    let mut buf = Vec::new();
    b.read("f", &mut buf).unwrap();
    assert_eq!(buf, b"newer");
    assert_eq!(b.remove_temp_files().unwrap(), 4, "only the stale ones are left");
}
