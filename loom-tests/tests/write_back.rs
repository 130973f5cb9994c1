//! Loom models of CacheFs write-back: the real `CacheFs` over `MemBackend`, with its flusher on a loom
//! thread, its stripe locks, dirty budget and condition variables all loom's (two stripes under loom).
//!
//! Run: `scripts/loom` (it runs every test file of loom-tests).
#![cfg(loom)]

use std::time::Duration;

use cachefs::fs::{Backend, CacheFs, MemBackend, WriteMode};
use loom::sync::Arc;
use loom::thread;

/// `loom::model` with room for the longer executions of a whole `CacheFs` (every lock of the engine,
/// the stripes and the budget is a branch).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = std::env::var("LOOM_MAX_BRANCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    builder.check(f);
}

fn on_backend(store: &MemBackend, path: &str) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    store.read(path, &mut buf).ok().map(|()| buf)
}

fn write_back(store: &std::sync::Arc<MemBackend>, max_dirty_bytes: u64) -> Arc<CacheFs> {
    // A delay of an hour: the flusher only writes when a writer needs room (or never), so the model
    // explores writes racing flushes it triggers, not clock ticks.
    let mode = WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes };
    // A four-entry metadata table: the default (100,000 entries) would create that many loom atomics
    // in every iteration.
    // A manual clock: metadata expiry times (and so which slot a full set gives up) must not depend on
    // real time, or loom's iterations would not repeat.
    Arc::new(
        CacheFs::builder(std::sync::Arc::clone(store))
            .write_mode(mode)
            .metadata_capacity(4)
            .clock(cachefs::ManualClock::new())
            .build(),
    )
}

/// Model W1: two writers replace the same file while one of them flushes. After a final flush the
/// backend holds exactly what reads return: a flush never writes an older version over a newer one.
#[test]
fn flushes_never_reorder_versions() {
    model(|| {
        let store = std::sync::Arc::new(MemBackend::new());
        let fs = write_back(&store, 1 << 20);
        let other = Arc::clone(&fs);
        let t = thread::spawn(move || {
            other.write("f", b"one".to_vec()).unwrap();
            other.flush().unwrap();
        });
        fs.write("f", b"two".to_vec()).unwrap();
        t.join().unwrap();
        fs.flush().unwrap();
        let read = fs.read("f").unwrap();
        assert_eq!(on_backend(&store, "f").as_deref(), Some(&read[..]));
        assert_eq!(fs.stats().dirty_entries, 0);
    });
}

/// Model W2: back-pressure. Two writers of 8 bytes each under a 10-byte dirty budget: the second must
/// wait for the flusher, and nobody may wait forever (loom reports a deadlock if one does). Afterwards
/// both files are on the backend and the dirty budget is back to zero.
#[test]
fn writers_over_the_dirty_budget_wait_for_the_flusher_and_finish() {
    model(|| {
        let store = std::sync::Arc::new(MemBackend::new());
        let fs = write_back(&store, 10);
        let other = Arc::clone(&fs);
        let t = thread::spawn(move || other.write("a", vec![1; 8]).unwrap());
        fs.write("b", vec![2; 8]).unwrap();
        t.join().unwrap();
        assert!(fs.stats().dirty_bytes <= 10);
        fs.flush().unwrap();
        assert_eq!(on_backend(&store, "a"), Some(vec![1; 8]));
        assert_eq!(on_backend(&store, "b"), Some(vec![2; 8]));
        assert_eq!(fs.stats().dirty_bytes, 0);
    });
}

/// Model W3: a remove racing a flush of the same file. Whatever the order, once both are done the file
/// is either gone everywhere or present with the same content in the cache and on the backend.
#[test]
fn remove_racing_flush_leaves_cache_and_backend_agreeing() {
    model(|| {
        let store = std::sync::Arc::new(MemBackend::new());
        let fs = write_back(&store, 1 << 20);
        fs.write("f", b"data".to_vec()).unwrap();
        let other = Arc::clone(&fs);
        let t = thread::spawn(move || other.flush().unwrap());
        fs.remove("f").unwrap();
        t.join().unwrap();
        fs.flush().unwrap();
        assert!(fs.read("f").unwrap_err().is_not_found());
        assert_eq!(on_backend(&store, "f"), None, "the removed file came back");
    });
}

/// Model M1: the metadata cache's sequence locks. One writer replaces files in a one-set (four-way)
/// metadata table, forcing slots to change owner, while a reader stats two of them: every `stat` must
/// return that file's own length, never another file's or a torn mix (the table is read without locks).
#[test]
fn metadata_reads_never_return_another_files_entry() {
    model(|| {
        let store = std::sync::Arc::new(MemBackend::new());
        let fs = Arc::new(
            CacheFs::builder(std::sync::Arc::clone(&store))
                .metadata_capacity(4)
                .write_mode(WriteMode::WriteThrough)
                .clock(cachefs::ManualClock::new()) // deterministic replacement (see `write_back`)
                .build(),
        );
        for i in 1..=4u8 {
            store.write(&format!("f{i}"), &vec![i; i as usize]).unwrap();
            fs.stat(format!("f{i}")).unwrap(); // fills the set's four ways
        }
        store.write("f5", &[5; 5]).unwrap();
        let writer = Arc::clone(&fs);
        let t = thread::spawn(move || {
            writer.stat("f5").unwrap(); // takes over one of the four slots
            writer.write("f1", vec![1; 11]).unwrap(); // f1 changes length
        });
        for (path, lens) in [("f2", &[2u64][..]), ("f1", &[1, 11][..])] {
            let len = fs.stat(path).unwrap().len;
            assert!(lens.contains(&len), "{path}: length {len}");
        }
        t.join().unwrap();
        assert_eq!(fs.stat("f1").unwrap().len, 11);
        assert_eq!(fs.stat("f5").unwrap().len, 5);
    });
}
