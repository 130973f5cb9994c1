//! The tiered blob store as a worker of a fleet uses it: container layers addressed by digest, read
//! through a local disk tier from an origin (here a directory; in production an OCI registry, with a
//! shared Redis in between). Starts no server.
//!
//! `cargo run --release --features tier --example tiered_store`
//! (with `--features redis` and `REDIS_URL=redis://127.0.0.1:6379`, it also shares blobs through Redis)

use std::io::{Read, Seek, SeekFrom, Write};

use cachefs::tier::{Digest, DirOrigin, TieredStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The origin: three layers, the largest stored gzip-compressed (digests name the content).
    let origin = tempfile::tempdir()?;
    let mut layers = Vec::new();
    for (i, size) in [(1u8, 6 << 20), (2, 3 << 20), (3, 12 << 20)] {
        let content: Vec<u8> = (0..size).map(|j: usize| (j % 251) as u8 ^ i).collect();
        let digest = Digest::of(&content);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&content)?;
        std::fs::write(origin.path().join(digest.file_name()), gz.finish()?)?;
        layers.push(digest);
    }

    // A worker's store: 16 MiB of disk, the origin serving gzip.
    let disk = tempfile::tempdir()?;
    let builder = TieredStore::builder()
        .name("layers")
        .disk_dir(disk.path())
        .disk_max_bytes(16 << 20)
        .origin(DirOrigin::new(origin.path()))
        .origin_gzip(true);
    #[cfg(feature = "redis")]
    let builder = match std::env::var("REDIS_URL") {
        Ok(url) => builder.remote(cachefs::tier::RedisTier::builder(&url).build()?),
        Err(_) => builder,
    };
    let store = builder.build()?;

    // Random access without a whole-blob buffer: one pread on the local file.
    let mut header = [0u8; 16];
    store.read_at(&layers[0], 1 << 20, &mut header)?;
    println!("layer 0, 16 bytes at 1 MiB: {header:02x?}");

    // A handle reads like a file (Read + Seek) and keeps its blob from eviction while open.
    let mut blob = store.open(&layers[1])?;
    blob.seek(SeekFrom::End(-4))?;
    let mut tail = Vec::new();
    blob.read_to_end(&mut tail)?;
    println!("layer 1: {} bytes, came from {:?}, last 4 bytes {tail:02x?}", blob.len(), blob.source());
    drop(blob);

    // The third layer does not fit beside the others: the least recently used one is evicted.
    store.fill(&layers[2])?;
    for (i, d) in layers.iter().enumerate() {
        println!("layer {i} {d} on disk: {}", store.contains(d));
    }
    store.fill(&layers[0])?; // evicted, so filled again from the origin

    let stats = store.stats();
    println!(
        "origin fetches {}, disk hits {}, evictions {}, {} bytes on disk (bound {})",
        stats.origin_fetches, stats.disk_hits, stats.evictions, stats.disk_bytes, stats.disk_max_bytes
    );
    let fills = stats.latency.iter().find(|l| l.op == "fill_origin").map_or(0, |l| l.p50_ns);
    println!("median fill from the origin: {:.1} ms", fills as f64 / 1e6);
    let metrics = stats.to_prometheus();
    println!("Prometheus text: {} lines, e.g. {}", metrics.lines().count(), metrics.lines().nth(2).unwrap_or(""));
    assert_eq!(stats.origin_fetches, 4);
    Ok(())
}
