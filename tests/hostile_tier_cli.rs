//! Hostile tests of `cachefs fetch` (the CLI over `cachefs::tier`), from its `--help` and the README only.
#![cfg(all(feature = "tier", feature = "redis"))]

mod common;
mod hostile_tier_common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cachefs::tier::{Digest, TieredStore};
use hostile_tier_common::*;

fn fetch(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new(common::cli_binary()).arg("fetch").args(args).output().unwrap();
    (out, t.elapsed())
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
}

/// A readable error: no Rust Debug dump of an error value.
fn assert_readable(stderr: &str, what: &str) {
    for bad in [
        "InvalidDigest {",
        "NotFound {",
        "Origin {",
        "Config {",
        "Locked {",
        "Io {",
        "DigestMismatch {",
        "Error {",
        "Os {",
        "kind:",
        "panicked",
        "RUST_BACKTRACE",
    ] {
        assert!(!stderr.contains(bad), "{what}: stderr has a Debug dump or panic ({bad}):\n{stderr}");
    }
    assert!(!stderr.trim().is_empty(), "{what}: no error message at all");
}

fn put(origin: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    std::fs::write(origin.join(d.file_name()), bytes).unwrap();
    d
}

#[test]
fn holds_fetch_prints_digest_bytes_source_and_exits_zero() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put(o.path(), &content(1, 3 << 20));
    let b = put(o.path(), &content(2, 12345));
    let args = ["--disk-dir", disk.path().to_str().unwrap(), "--origin-dir", o.path().to_str().unwrap()];
    let (out, _) = fetch(&[&args[..], &[&a.to_string(), &b.to_string()]].concat());
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}{se}");
    let mut lines: Vec<&str> = so.lines().collect();
    lines.sort();
    let mut want = vec![format!("{a} {} origin", 3 << 20), format!("{b} 12345 origin")];
    want.sort();
    assert_eq!(lines, want, "stdout: {so}");
    let (out, _) = fetch(&[&args[..], &[&a.to_string()]].concat());
    assert_eq!(text(&out).0.trim(), format!("{a} {} disk", 3 << 20));
}

#[test]
fn holds_fetch_rejects_bad_digests_readably_with_a_nonzero_exit() {
    let disk = tempfile::tempdir().unwrap();
    for bad in [
        "sha256:XYZ",
        "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
        "md5:abc",
        "",
        " ",
        "sha256:é",
    ] {
        let (out, t) = fetch(&["--disk-dir", disk.path().to_str().unwrap(), bad]);
        let (so, se) = text(&out);
        assert!(!out.status.success(), "{bad:?} accepted: {so}");
        assert_readable(&se, bad);
        assert!(t < Duration::from_secs(10));
        eprintln!("{bad:?} -> exit {:?}: {}", out.status.code(), se.trim());
    }
}

#[test]
fn holds_fetch_with_unreachable_redis_falls_back_to_the_origin() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put(o.path(), &content(3, 100_000));
    let dead = format!("redis://127.0.0.1:{}", free_port());
    let (out, t) = fetch(&[
        "--disk-dir",
        disk.path().to_str().unwrap(),
        "--origin-dir",
        o.path().to_str().unwrap(),
        "--redis",
        &dead,
        "--redis-timeout-ms",
        "300",
        &a.to_string(),
    ]);
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}{se}");
    assert_eq!(so.trim(), format!("{a} 100000 origin"));
    assert!(t < Duration::from_secs(5), "{t:?}");
    // a silent Redis
    let silent = Silent::start();
    let disk2 = tempfile::tempdir().unwrap();
    let (out, t) = fetch(&[
        "--disk-dir",
        disk2.path().to_str().unwrap(),
        "--origin-dir",
        o.path().to_str().unwrap(),
        "--redis",
        &silent.url(),
        "--redis-timeout-ms",
        "300",
        &a.to_string(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(t < Duration::from_secs(5), "fetch with a silent Redis took {t:?}");
}

#[test]
fn holds_fetch_with_no_tier_having_the_blob_fails_readably() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = Digest::of(b"absent");
    let dd = disk.path().to_str().unwrap();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no origin at all", vec!["--disk-dir".into(), dd.into(), d.to_string()]),
        (
            "origin dir without it",
            vec![
                "--disk-dir".into(),
                dd.into(),
                "--origin-dir".into(),
                o.path().to_str().unwrap().into(),
                d.to_string(),
            ],
        ),
        (
            "registry without repo",
            vec!["--disk-dir".into(), dd.into(), "--registry".into(), "http://127.0.0.1:1".into(), d.to_string()],
        ),
        (
            "registry unreachable",
            vec![
                "--disk-dir".into(),
                dd.into(),
                "--registry".into(),
                format!("http://127.0.0.1:{}", free_port()),
                "--repo".into(),
                "a/b".into(),
                d.to_string(),
            ],
        ),
        ("bad redis url", vec!["--disk-dir".into(), dd.into(), "--redis".into(), "notaurl".into(), d.to_string()]),
        (
            "bad cluster url",
            vec![
                "--disk-dir".into(),
                dd.into(),
                "--redis-cluster".into(),
                "redis://127.0.0.1:1,,bad".into(),
                d.to_string(),
            ],
        ),
        ("bad size", vec!["--disk-dir".into(), dd.into(), "--disk-max-bytes".into(), "12Q".into(), d.to_string()]),
        ("zero size", vec!["--disk-dir".into(), dd.into(), "--disk-max-bytes".into(), "0".into(), d.to_string()]),
        ("disk dir is a file", vec!["--disk-dir".into(), "/etc/hostname".into(), d.to_string()]),
    ];
    for (what, args) in cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (out, t) = fetch(&args);
        let (so, se) = text(&out);
        assert!(!out.status.success(), "{what}: exit 0: {so}{se}");
        assert_readable(&se, what);
        assert!(t < Duration::from_secs(40), "{what}: {t:?}");
        eprintln!("{what} -> exit {:?} in {t:?}: {}", out.status.code(), se.trim().replace('\n', " | "));
    }
}

#[test]
fn holds_fetch_on_a_locked_disk_dir_and_a_corrupt_gzip_origin_fail_readably() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(4, 100_000);
    let d = Digest::of(&bytes);
    std::fs::write(o.path().join(d.file_name()), &gzip(&bytes)[..5000]).unwrap();
    {
        let _held = TieredStore::builder().disk_dir(disk.path()).build().unwrap();
        let (out, _) = fetch(&[
            "--disk-dir",
            disk.path().to_str().unwrap(),
            "--origin-dir",
            o.path().to_str().unwrap(),
            "--gzip",
            &d.to_string(),
        ]);
        assert!(!out.status.success());
        let se = text(&out).1;
        assert_readable(&se, "locked");
        eprintln!("locked -> {:?}: {}", out.status.code(), se.trim());
    }
    let (out, _) = fetch(&[
        "--disk-dir",
        disk.path().to_str().unwrap(),
        "--origin-dir",
        o.path().to_str().unwrap(),
        "--gzip",
        &d.to_string(),
    ]);
    assert!(!out.status.success());
    let se = text(&out).1;
    assert_readable(&se, "corrupt gzip");
    eprintln!("corrupt gzip -> {:?}: {}", out.status.code(), se.trim());
}

/// `--help`: "--redis-cluster <REDIS_CLUSTER>  A Redis Cluster: node URLs, comma-separated"; README:
/// "(`--redis-cluster URL,URL`, ...)".
#[test]
fn holds_cli_redis_cluster_accepts_a_comma_separated_list() {
    let cl = Cluster::start();
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put(o.path(), &content(6, 50_000));
    let urls = cl.urls().join(",");
    let (out, _) = fetch(&[
        "--disk-dir",
        disk.path().to_str().unwrap(),
        "--origin-dir",
        o.path().to_str().unwrap(),
        "--redis-cluster",
        &urls,
        &a.to_string(),
    ]);
    let (so, se) = text(&out);
    assert!(out.status.success(), "--redis-cluster {urls}: exit {:?}: {so}{se}", out.status.code());
    // and the blob went to the cluster
    std::thread::sleep(Duration::from_millis(500));
    let keys = cl.all_keys();
    assert!(keys.iter().any(|(_, k)| k.contains(&a.hex())), "{keys:?}");
}

#[test]
fn holds_cli_redis_cluster_with_a_single_url() {
    let cl = Cluster::start();
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put(o.path(), &content(7, 50_000));
    let url = cl.urls()[0].clone();
    let (out, _) = fetch(&[
        "--disk-dir",
        disk.path().to_str().unwrap(),
        "--origin-dir",
        o.path().to_str().unwrap(),
        "--redis-cluster",
        &url,
        &a.to_string(),
    ]);
    let (so, se) = text(&out);
    assert!(out.status.success(), "{so}{se}");
    eprintln!("single url: {so}{se}");
}

/// `--help`: "prints `<digest> <bytes> <source>` per blob". When one blob of several fails, the others are
/// filled (they are on disk afterwards) but their lines are not printed.
#[test]
fn cli_fetch_reports_filled_blobs_when_another_fails() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put(o.path(), &content(8, 1000));
    let missing = Digest::of(b"missing");
    let (out, _) = fetch(&[
        "--disk-dir",
        disk.path().to_str().unwrap(),
        "--origin-dir",
        o.path().to_str().unwrap(),
        "--parallel",
        "1",
        &a.to_string(),
        &missing.to_string(),
    ]);
    let (so, se) = text(&out);
    assert!(!out.status.success());
    assert!(disk.path().join(a.file_name()).exists(), "the good blob was filled");
    assert!(
        so.contains(&format!("{a} 1000 origin")),
        "the good blob, filled, is not reported on stdout: stdout {so:?}, stderr {se:?}"
    );
}

/// A typo in `--origin-dir` is reported as the blob being absent from every tier.
#[test]
fn cli_names_a_missing_origin_dir() {
    let disk = tempfile::tempdir().unwrap();
    let d = Digest::of(b"x");
    let (out, _) = fetch(&[
        "--disk-dir",
        disk.path().to_str().unwrap(),
        "--origin-dir",
        "/nonexistent/origin/dir",
        &d.to_string(),
    ]);
    let se = text(&out).1;
    assert!(!out.status.success());
    assert!(se.contains("/nonexistent/origin/dir"), "the missing origin directory is not named: {se}");
}
