//! The trace parser of `cachefs replay` (plain or gzip): any bytes give a trace or a typed error, never a
//! panic, and a trace parsed from text holds exactly the numbers of its non-empty lines.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

#[path = "../../cli/src/trace.rs"]
#[allow(dead_code)]
mod trace;

fuzz_target!(|data: &[u8]| {
    // Through the file loader, which tells gzip from plain text by the magic bytes.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("t.keys");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(data)).expect("write the input");
    match trace::load(&path) {
        Ok(t) => {
            assert!(!t.keys.is_empty(), "an empty trace is an error");
            assert!(t.unique >= 1 && t.unique <= t.keys.len());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    // Text straight through the parser: the keys are the lines' numbers.
    if let Ok(text) = std::str::from_utf8(data) {
        let want: Result<Vec<u64>, _> =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::parse::<u64>).collect();
        match (trace::parse_reader(data, "fuzz"), want) {
            (Ok(t), Ok(want)) => assert_eq!(t.keys, want),
            (Err(_), Err(_)) => {}
            (Err(e), Ok(want)) => panic!("refused text of {} good keys: {e}", want.len()),
            (Ok(t), Err(_)) => panic!("accepted {} keys from text with a bad line", t.keys.len()),
        }
    }
});
