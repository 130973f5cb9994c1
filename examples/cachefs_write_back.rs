//! Write-back in front of a directory: writes are acknowledged from memory, a background flusher writes
//! them to disk, `flush()` makes them durable, and a failing disk never loses acknowledged data.
//!
//! `cargo run --release --example cachefs_write_back [DIR]` (default: a temporary directory).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cachefs::fs::{CacheFs, Error, OsBackend, WriteMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let root = std::env::args().nth(1).map_or_else(|| temp.path().to_path_buf(), Into::into);
    let fs = CacheFs::builder(OsBackend::new(&root)?)
        .max_bytes(64 << 20)
        .write_mode(WriteMode::WriteBack { delay: Duration::from_millis(200), max_dirty_bytes: 16 << 20 })
        .build();

    // 1,000 small files: each write returns as soon as the data is in memory.
    let started = Instant::now();
    for i in 0..1_000 {
        fs.write(format!("logs/{:03}/{i:05}.json", i % 10), format!("{{\"event\": {i}}}").into_bytes())?;
    }
    let acked = started.elapsed();
    let s = fs.stats();
    println!("1000 writes acknowledged in {acked:?}; dirty: {} files, {} bytes", s.dirty_entries, s.dirty_bytes);

    // Reads see the new data at once, from memory.
    assert_eq!(&fs.read("logs/007/00007.json")?[..], b"{\"event\": 7}");

    // A streamed writer: stored when closed, and (flush-on-close) written to disk then too.
    let mut w = fs.create("reports/summary.txt")?;
    writeln!(w, "events: 1000")?;
    w.close()?;

    // flush(): everything acknowledged so far is on disk when it returns Ok.
    let started = Instant::now();
    fs.flush()?;
    println!("flush wrote the rest in {:?}; dirty now: {}", started.elapsed(), fs.stats().dirty_entries);
    let on_disk = std::fs::read_to_string(root.join("logs/007/00007.json"))?;
    println!("on disk: logs/007/00007.json = {on_disk}");

    let mut r = fs.open("reports/summary.txt")?;
    let mut text = String::new();
    r.read_to_string(&mut text)?;
    print!("reports/summary.txt: {text}");

    // Errors are typed and carry the path.
    match fs.read("logs/missing.json") {
        Err(Error::NotFound { path }) => println!("typed error: {path} not found"),
        other => println!("unexpected: {other:?}"),
    }
    match fs.write("../outside.txt", b"no".to_vec()) {
        Err(e @ Error::InvalidPath { .. }) => println!("typed error: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    let s = fs.stats();
    println!(
        "stats: {} writes, {} flushes ({} bytes), {} flush errors, hit rate {:.0}%",
        s.writes,
        s.flushes,
        s.flushed_bytes,
        s.flush_errors,
        100.0 * s.hit_rate()
    );
    // close(): stops the flusher and flushes, returning any failure (drop would only count it).
    fs.close()?;
    Ok(())
}
