//! The `cachefs replay` command end to end: output on a small trace, and a clear error (exit code 2,
//! naming the file and line) for each kind of bad input.

use std::path::Path;
use std::process::{Command, Output};

fn cachefs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefs")).args(args).output().expect("run cachefs")
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn replays_a_trace_into_markdown_json_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = (0..5_000u64).map(|i| format!("{}\n", (i * 7) % 300 + (i % 5) * (i % 7))).collect();
    let trace = write(dir.path(), "small.txt", &body);
    let svg = dir.path().join("chart.svg");
    let out = cachefs(&["replay", &trace, "--capacity", "5%,50", "--plot", svg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.contains("### small (5000 accesses"), "{md}");
    assert!(md.contains("| capacity | entries | lru | lfu | ttl | hybrid | moka | quick_cache | lru-crate | opt |"));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));

    let out = cachefs(&["replay", &trace, "--capacity", "10%", "--policy", "lru,opt", "--json", "--shards", "1"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["contenders"], serde_json::json!(["lru", "opt"]));
    let row = &json[0]["rows"][0];
    assert!(row["hit_ratio"][0].as_f64().unwrap() <= row["hit_ratio"][1].as_f64().unwrap());
}

fn fails_with(args: &[&str], needle: &str) {
    let out = cachefs(args);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.txt", "1\n2\n1\n");
    let bad = write(dir.path(), "bad.txt", "1\n2\nthree\n");
    let missing = dir.path().join("missing.keys.gz").to_string_lossy().into_owned();
    fails_with(&["replay", &missing], "missing.keys.gz");
    fails_with(&["replay", &bad], "bad.txt:3: not an unsigned 64-bit key: \"three\"");
    fails_with(&["replay", &good, "--capacity", "0"], "is zero");
    fails_with(&["replay", &good, "--capacity", "0%"], "is zero");
    fails_with(&["replay", &good, "--capacity", "150%"], "over 100%");
    fails_with(&["replay", &good, "--capacity", "lots"], "neither a percentage");
    fails_with(&["replay", &good, "--policy", "arc"], "unknown policy \"arc\"");
    fails_with(&["replay", &good, "--shards", "0"], "--shards must be at least 1");
    let no_dir = dir.path().join("no/such/dir/x.svg").to_string_lossy().into_owned();
    fails_with(&["replay", &good, "--plot", &no_dir], "cannot draw the chart");
}
