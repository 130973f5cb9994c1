//! The tiered store's fills and hits, beside the tools that move the same bytes without it.
//!
//! `cargo bench --bench tier --all-features` (full run: 64 MiB blobs); under `cargo test` each
//! function runs once on 1 MiB blobs (smoke). Redis groups start their own `redis-server` on a free
//! loopback port, and are skipped (with a message) when it is not installed.
//!
//! - `fill_throughput`: a whole blob into the disk tier from the directory origin (read, sha256,
//!   write, fsync, rename) vs `cp` of the same file (and `cp` + fsync); from Redis (GET of each chunk,
//!   sha256, write, fsync) vs a raw GET loop of the same chunks with the same client, and vs
//!   `redis-cli --pipe` sending the same GETs.
//! - `hit_latency`: a 4 KiB `read_at` of a blob on disk; `open` + 4 KiB read; a 64 KiB blob filled from
//!   Redis; a 64 KiB blob filled from the origin.

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cachefs::tier::{Digest, DirOrigin, TieredStore};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn blob(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn put(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    std::fs::write(dir.join(d.file_name()), bytes).unwrap();
    d
}

/// A `redis-server` on a free port, killed on drop.
struct Redis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = tempfile::tempdir().ok()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis { port, child, _dir: dir };
        for _ in 0..250 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut pong = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut pong).is_ok_and(|n| n > 0) {
                    return Some(redis);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHUNK: u64 = 4 << 20;

fn fills(c: &mut Criterion) {
    let size = if smoke() { 1 << 20 } else { 64 << 20 };
    let origin = tempfile::tempdir().unwrap();
    let bytes = blob(1, size);
    let d = put(origin.path(), &bytes);
    let mut g = c.benchmark_group("fill_throughput");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(if smoke() { 1 } else { 10 }));

    let disk = tempfile::tempdir().unwrap();
    let store = TieredStore::builder().disk_dir(disk.path()).origin(DirOrigin::new(origin.path())).build().unwrap();
    g.bench_function("origin_dir_to_disk", |b| {
        b.iter(|| {
            store.evict(&d);
            black_box(store.fill(&d).unwrap())
        })
    });
    let src = origin.path().join(d.file_name());
    let dst = disk.path().join("cp-copy");
    g.bench_function("cp", |b| b.iter(|| assert!(Command::new("cp").arg(&src).arg(&dst).status().unwrap().success())));
    g.bench_function("cp_then_fsync", |b| {
        b.iter(|| {
            assert!(Command::new("cp").arg(&src).arg(&dst).status().unwrap().success());
            std::fs::File::open(&dst).unwrap().sync_all().unwrap();
        })
    });
    drop(store);

    #[cfg(feature = "redis")]
    redis_fills(&mut g, &d, &bytes, origin.path());
    g.finish();
}

#[cfg(feature = "redis")]
fn redis_fills(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    d: &Digest,
    bytes: &[u8],
    origin: &Path,
) {
    use cachefs::tier::RedisTier;
    let Some(redis) = Redis::start() else {
        eprintln!("redis-server is not installed: skipping the Redis fill benchmarks");
        return;
    };
    let tier = || RedisTier::builder(&redis.url()).chunk_size(CHUNK).build().unwrap();
    let seed_disk = tempfile::tempdir().unwrap();
    let seeder = TieredStore::builder()
        .disk_dir(seed_disk.path())
        .remote(tier())
        .origin(DirOrigin::new(origin))
        .build()
        .unwrap();
    seeder.fill(d).unwrap();
    assert!(seeder.wait_for_uploads(Duration::from_secs(60)));

    let disk = tempfile::tempdir().unwrap();
    let store = TieredStore::builder().disk_dir(disk.path()).remote(tier()).build().unwrap();
    g.bench_function("redis_to_disk", |b| {
        b.iter(|| {
            store.evict(d);
            black_box(store.fill(d).unwrap())
        })
    });
    let chunks = (bytes.len() as u64).div_ceil(CHUNK);
    let keys: Vec<String> = (0..chunks).map(|i| format!("cachefs:blob:{}:{i}", d.hex())).collect();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    g.bench_function("redis_raw_get_loop", |b| {
        b.iter(|| {
            for k in &keys {
                let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut con).unwrap();
                black_box(v);
            }
        })
    });
    let commands: String = keys.iter().map(|k| format!("GET {k}\r\n")).collect();
    g.bench_function("redis_cli_pipe", |b| {
        b.iter(|| {
            let mut child = Command::new("redis-cli")
                .args(["-p", &redis.port.to_string(), "--pipe"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success());
        })
    });
}

fn hits(c: &mut Criterion) {
    let origin = tempfile::tempdir().unwrap();
    let big = put(origin.path(), &blob(2, 8 << 20));
    let small = put(origin.path(), &blob(3, 64 << 10));
    let disk = tempfile::tempdir().unwrap();
    let store = TieredStore::builder().disk_dir(disk.path()).origin(DirOrigin::new(origin.path())).build().unwrap();
    store.fill(&big).unwrap();
    let mut g = c.benchmark_group("hit_latency");
    let mut buf = vec![0u8; 4096];
    let mut offset = 0u64;
    g.bench_function("disk_read_at_4k", |b| {
        b.iter(|| {
            offset = (offset + 1_048_583) % (8 << 20);
            black_box(store.read_at(&big, offset, &mut buf).unwrap())
        })
    });
    g.bench_function("disk_open_read_4k", |b| {
        b.iter(|| {
            let mut h = store.open(&big).unwrap();
            black_box(h.read(&mut buf).unwrap())
        })
    });
    g.bench_function("origin_fill_64k", |b| {
        b.iter(|| {
            store.evict(&small);
            black_box(store.fill(&small).unwrap())
        })
    });
    #[cfg(feature = "redis")]
    if let Some(redis) = Redis::start() {
        use cachefs::tier::RedisTier;
        let tier = || RedisTier::builder(&redis.url()).build().unwrap();
        let seed_disk = tempfile::tempdir().unwrap();
        let seeder = TieredStore::builder()
            .disk_dir(seed_disk.path())
            .remote(tier())
            .origin(DirOrigin::new(origin.path()))
            .build()
            .unwrap();
        seeder.fill(&small).unwrap();
        assert!(seeder.wait_for_uploads(Duration::from_secs(60)));
        let rdisk = tempfile::tempdir().unwrap();
        let rstore = TieredStore::builder().disk_dir(rdisk.path()).remote(tier()).build().unwrap();
        g.bench_function("redis_fill_64k", |b| {
            b.iter(|| {
                rstore.evict(&small);
                black_box(rstore.fill(&small).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fills, hits);
criterion_main!(benches);
