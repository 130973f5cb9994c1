use std::time::Duration;
use cachefs::fs::{CacheFs, MemBackend, OsBackend, WriteMode};
#[test]
fn probe() {
    for os in [false, true] {
        for mode in [WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 }, WriteMode::WriteThrough] {
            for flush_first in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let fs = if os { CacheFs::builder(OsBackend::new(dir.path()).unwrap()) } else { CacheFs::builder(MemBackend::new()) }.write_mode(mode).build();
                fs.write("f", b"1".to_vec()).unwrap();
                if flush_first { fs.flush().unwrap(); }
                let r = fs.remove_all("f");
                fs.flush().unwrap();
                let mut buf = Vec::new();
                eprintln!("os={os} {mode:?} flushed_first={flush_first}: remove_all(f) = {:?}; read(f) = {:?}; backend has f: {}", r, fs.read("f").map(|b| b.len()), fs.backend().read("f", &mut buf).is_ok());
            }
        }
    }
}
