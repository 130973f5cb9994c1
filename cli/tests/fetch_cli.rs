//! `cachefs fetch` end to end over a directory origin: output per blob, the second run served from
//! disk, and a clear error (exit code 2, no panic, no Debug dump) for each kind of bad input.

use std::process::{Command, Output};

use cachefs::tier::Digest;

fn cachefs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefs")).args(args).output().expect("run cachefs")
}

fn fails_with(args: &[&str], needle: &str) {
    let out = cachefs(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
    assert!(!err.contains("panicked") && !err.contains("{ "), "{err}");
}

#[test]
fn fetches_through_the_tiers_and_reports_each_blob() {
    let (origin, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blobs: Vec<Vec<u8>> = vec![vec![7u8; 3 << 20], b"small".to_vec()];
    let digests: Vec<String> = blobs
        .iter()
        .map(|b| {
            let d = Digest::of(b);
            std::fs::write(origin.path().join(d.file_name()), b).unwrap();
            d.to_string()
        })
        .collect();
    let (o, d) = (origin.path().to_str().unwrap(), disk.path().to_str().unwrap());
    let mut args = vec!["fetch", "--disk-dir", d, "--origin-dir", o];
    args.extend(digests.iter().map(String::as_str));
    let out = cachefs(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("{} 3145728 origin\n{} 5 origin\n", digests[0], digests[1]));
    let again = cachefs(&args);
    assert!(String::from_utf8(again.stdout).unwrap().ends_with("5 disk\n"));
    assert_eq!(std::fs::read(disk.path().join(Digest::of(b"small").file_name())).unwrap(), b"small");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (origin, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (o, d) = (origin.path().to_str().unwrap(), disk.path().to_str().unwrap());
    let absent = Digest::of(b"absent").to_string();
    fails_with(&["fetch", "--disk-dir", d, "--origin-dir", o, "sha256:xyz"], "invalid digest \"sha256:xyz\"");
    fails_with(&["fetch", "--disk-dir", d, "--origin-dir", o, &absent], "not found in any tier");
    fails_with(&["fetch", "--disk-dir", d, "--redis", "nonsense", &absent], "cannot open the store");
    fails_with(&["fetch", "--disk-dir", d, "--registry", "ftp://x", "--repo", "a", &absent], "registry URL");
    fails_with(&["fetch", "--disk-dir", d, "--disk-max-bytes", "lots", &absent], "not a byte count");
    fails_with(
        &["fetch", "--disk-dir", d, "--redis", "redis://a", "--redis-cluster", "redis://b", &absent],
        "cannot be used with",
    );
    fails_with(&["fetch", "--disk-dir", d, "--registry", "http://x", &absent], "--repo");
}
