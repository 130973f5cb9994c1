//! Datasets, as a model-distribution service keeps them: files stored under `{root}/{dataset}/{path}`,
//! warmed ahead of a job, read through the cache, large files streamed in chunks.
//!
//! `cargo run --release --example datasets`

use std::io::{Read, Write};
use std::sync::Arc;

use cachefs::fs::{CacheFs, OsBackend, WarmOptions, WarmPriority};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = tempfile::tempdir()?;
    let fs = CacheFs::builder(OsBackend::new(root.path())?).max_bytes(64 << 20).build();

    // Publish a model: a config, a tokenizer and a 40 MiB weights file (over the 8 MiB large-file
    // threshold, so it is never held whole in memory).
    fs.store_file("llama-7b", "config.json", br#"{"layers": 32}"#.to_vec())?;
    fs.store_file("llama-7b", "tokenizer.json", vec![b't'; 2 << 20])?;
    let mut w = fs.open_writer("llama-7b", "weights.bin")?;
    for i in 0..40u8 {
        w.write_all(&[i; 1 << 20])?;
    }
    w.close()?;
    println!("layout on disk: {:?}", fs.backend().list("llama-7b")?);
    println!("dataset files: {:?}", fs.dataset_files("llama-7b")?);

    // A job is about to start: warm the small files at high priority (protected from eviction until
    // the warm is done), with progress reports.
    fs.clear();
    let progress = Arc::new(|p: &cachefs::fs::WarmProgress| {
        println!("  warm: {}/{} files, {} bytes", p.files, p.total, p.bytes);
    });
    let report = fs.warm(
        ["llama-7b/config.json", "llama-7b/tokenizer.json"],
        WarmOptions { workers: 2, priority: WarmPriority::High, progress: Some(progress), ..WarmOptions::default() },
    )?;
    println!("warmed {} files, {} bytes in {:?}", report.files, report.bytes, report.elapsed);

    // Reads now come from memory.
    assert!(fs.has_file("llama-7b", "config.json")?);
    println!("config: {}", String::from_utf8_lossy(&fs.get_file("llama-7b", "config.json")?));

    // The weights stream through in 1 MiB chunks.
    let mut r = fs.open_reader("llama-7b", "weights.bin")?;
    let (mut buf, mut sum) = (vec![0u8; 256 << 10], 0u64);
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sum += buf[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
    }
    println!("weights.bin: {} bytes, checksum {sum}", r.len());

    // Invalidate one dataset after an update; the next read goes to disk.
    let dropped = fs.invalidate_prefix("llama-7b")?;
    println!("invalidated {dropped} cache entries of llama-7b");
    let s = fs.stats();
    println!(
        "stats: {} hits, {} misses, {} bytes from cache, {} bytes from disk, {} warmed",
        s.read_hits, s.read_misses, s.bytes_from_cache, s.bytes_from_backend, s.warmed
    );
    print!("{}", s.to_prometheus().lines().filter(|l| l.starts_with("cachefs_fs_read")).collect::<Vec<_>>().join("\n"));
    println!();
    Ok(())
}
