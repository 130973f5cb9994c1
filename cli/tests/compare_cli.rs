//! `cachefs compare` end to end on a tiny workload (the README's main command, in smoke form).

use std::process::Command;

#[test]
fn compare_smoke_prints_every_table_and_writes_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("charts/compare.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_cachefs"))
        .args(["compare", "--smoke", "--plot", svg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", text, String::from_utf8_lossy(&out.stderr));
    for needle in [
        "## Throughput, million operations per second",
        "| read-only hits, 2k keys all resident | 1 | **",
        "| 50% get / 50% insert | 2 | **",
        "## Memory",
        "| quick_cache |",
        "### lirs_sprite (133996 accesses",
        "### cache2k_web07 (76118 accesses",
        "Chart: ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

#[test]
fn compare_refuses_bad_settings() {
    for (args, needle) in [
        (vec!["compare", "--smoke", "--threads", "0"], "--threads takes whole numbers"),
        (vec!["compare", "--smoke", "--threads", "two"], "--threads takes whole numbers"),
        (vec!["compare", "--seconds-per-cell", "0"], "--seconds-per-cell must be a positive"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cachefs")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{args:?}");
    }
}
