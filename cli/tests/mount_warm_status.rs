//! `cachefs warm` and `cachefs status` against a real mount: warming through the backing directory's
//! paths or the mount's, globs and lists, and the live view; bad input gets a readable error.

mod mount_support;

use std::fs;
use std::process::{Command, Output};

use mount_support::{Mounted, fuse_available, n};

fn cachefs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefs")).args(args).output().unwrap()
}

#[test]
fn warm_fills_the_cache_through_backing_or_mount_paths() {
    if !fuse_available("warm_fills_the_cache_through_backing_or_mount_paths") {
        return;
    }
    let m = Mounted::new(&["--metadata-ttl", "1h"]);
    for i in 0..60 {
        let dir = m.backing.join(format!("data/{}", i % 4));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}.bin")), vec![i as u8; 1000 + i]).unwrap();
        fs::write(dir.join(format!("f{i}.txt")), b"text").unwrap();
    }
    let data = m.backing.join("data");
    let out = cachefs(&["warm", data.to_str().unwrap(), "--glob", "**/*.bin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("warmed 60 of 60 files"), "{:?}", out);
    let before = m.stats();
    assert_eq!(n(&before, &["fs", "read_misses"]), 60, "each .bin file read once from the backing directory");
    for i in 0..60 {
        let got = fs::read(m.mnt.join(format!("data/{}/f{i}.bin", i % 4))).unwrap();
        assert_eq!(got, vec![i as u8; 1000 + i]);
    }
    let after = m.stats();
    assert_eq!(n(&after, &["backing", "reads"]), n(&before, &["backing", "reads"]), "warmed files come from memory");
    // A list of mount paths, at low priority; the .txt files were not warmed before.
    let list = m.dir.path().join("list");
    let lines: Vec<String> =
        (0..8).map(|i| m.mnt.join(format!("data/{}/f{i}.txt", i % 4)).display().to_string()).collect();
    fs::write(&list, format!("# the text files\n\n{}\n", lines.join("\n"))).unwrap();
    let out = cachefs(&["warm", "--list", list.to_str().unwrap(), "--priority", "low"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("warmed 8 of 8 files"));
    assert_eq!(n(&m.stats(), &["fs", "read_misses"]), 68);

    let status = cachefs(&["status", &m.metrics, "--once"]);
    let view = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{view}");
    for needle in ["hit ratio", "of 128 reads", "cached ", "dirty ", "backing        68 reads", "latency (µs)", "read "]
    {
        assert!(view.contains(needle), "missing {needle:?} in\n{view}");
    }
}

#[test]
fn warm_and_status_refuse_bad_input_readably() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().display().to_string();
    for (args, needle) in [
        (vec!["warm", plain.as_str()], "not inside a cachefs mount"),
        (vec!["warm"], "give at least one PATH or --list"),
        (vec!["warm", "/definitely/missing"], "/definitely/missing"),
        (vec!["warm", "--list", "/definitely/missing.list"], "/definitely/missing.list"),
        (vec!["warm", plain.as_str(), "--glob", "[x"], "--glob"),
        (vec!["status", "127.0.0.1:1", "--once"], "127.0.0.1:1"),
        (vec!["status", "127.0.0.1:1", "--interval", "0"], "--interval"),
    ] {
        let out = cachefs(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.starts_with("error: "), "{args:?}: {err}");
    }
    // A server that is not a cachefs mount's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for s in listener.incoming().flatten().take(1) {
            // The whole request is read first: closing a socket with unread input resets the connection,
            // and the client would see that instead of the answer.
            let mut reader = std::io::BufReader::new(s);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut s = reader.into_inner();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    });
    let out = cachefs(&["status", &addr, "--once"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a cachefs mount's stats"));
    let _ = fuse_available;
}
