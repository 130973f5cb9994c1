//! `cachefs ring inspect` and `cachefs ring bench --smoke` end to end: the report of a clean ring, a
//! damaged one (exit code 1, the slot named), and readable errors (exit code 2) for bad input.

use std::os::unix::fs::FileExt;
use std::process::{Command, Output};

use cachefs::ring::{IoMode, RingBuffer, RingOptions};

fn cachefs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefs")).args(args).output().expect("run cachefs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn inspect_reports_geometry_latest_id_and_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let opts = RingOptions { mode: IoMode::Mmap, shard_bytes: 4096 + 50 * 128, ..RingOptions::new(100, 128) };
    let ring = RingBuffer::open(&path, opts).unwrap();
    for id in 0..130u64 {
        ring.write(id, &id.to_le_bytes()).unwrap();
    }
    ring.flush().unwrap();
    let p = path.to_str().unwrap();
    for mode in ["pread", "mmap"] {
        // The writer stays open: inspect is read-only.
        let out = cachefs(&["ring", "inspect", p, "--mode", mode]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        for needle in [
            "format      version 1, 2 shard file(s)",
            "geometry    100 records of 128 bytes (payload up to 104 bytes)",
            "latest id   129 (flushed: 129)",
            "window      ids 30..=129",
            "valid       100 records",
            "ids         30..=129",
            "corrupt     0",
            "OK: every record checks",
        ] {
            assert!(t.contains(needle), "{needle:?} missing in\n{t}");
        }
    }
    // Damage a payload byte of slot 42 (which holds id 42).
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xEE], 4096 + 42 * 128 + 26).unwrap();
    let out = cachefs(&["ring", "inspect", p]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("corrupt     1") && t.contains("corrupt slots 42") && t.contains("CORRUPT"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn inspect_gives_a_readable_error_for_what_is_not_a_ring() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let missing = dir.path().join("missing.dat");
    for (path, needle) in [(&notes, "not a ring file"), (&missing, "No such file")] {
        let out = cachefs(&["ring", "inspect", path.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.contains(needle) && t.contains(path.to_str().unwrap()), "{t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "hello");
}

#[test]
fn bench_smoke_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = cachefs(&["ring", "bench", "--smoke", "--dir", dir.path().to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in ["| 4 KiB | raw file |", "| 4 KiB | ring, mmap |", "| 128 B | ring, pread |", "Pages resident"] {
        assert!(t.contains(needle), "{needle:?} missing in\n{t}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the bench removes its files");
    let out = cachefs(&["ring", "bench", "--mib", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
