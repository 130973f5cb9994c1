//! Hostile tests of `cachefs::tier` in child processes: SIGKILL during fills (50 kills, alternating the
//! origin and Redis), and peak memory (VmHWM) of a 512 MiB gzip blob. From the public docs only.
#![cfg(all(feature = "tier", feature = "redis"))]

mod hostile_tier_common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use cachefs::tier::{Digest, DirOrigin, RedisTier, Source, TieredStore};
use hostile_tier_common::*;

const ENV_MODE: &str = "HOSTILE_TIER_MODE";
const ENV_DISK: &str = "HOSTILE_TIER_DISK";
const ENV_ORIGIN: &str = "HOSTILE_TIER_ORIGIN";
const ENV_REDIS: &str = "HOSTILE_TIER_REDIS";
const ENV_SEED: &str = "HOSTILE_TIER_SEED";
const ENV_DIGEST: &str = "HOSTILE_TIER_DIGEST";

fn blob_files(dir: &Path) -> Vec<(String, PathBuf)> {
    ls(dir)
        .into_iter()
        .filter(|n| n.len() == 71 && n.starts_with("sha256_"))
        .map(|n| (n[7..].to_string(), dir.join(&n)))
        .collect()
}

fn file_sha(p: &Path) -> String {
    use sha2::Digest as _;
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The child of the crash test: fills blobs forever through one tier, evicting as it goes.
#[test]
#[ignore = "child of holds_sigkill_during_fills_never_leaves_a_partial_blob"]
fn crash_child() {
    let (Ok(mode), Ok(disk), Ok(origin), Ok(seed)) =
        (std::env::var(ENV_MODE), std::env::var(ENV_DISK), std::env::var(ENV_ORIGIN), std::env::var(ENV_SEED))
    else {
        return;
    };
    let digests: Vec<Digest> = ls(Path::new(&origin))
        .iter()
        .filter(|n| n.starts_with("sha256_"))
        .map(|n| format!("sha256:{}", &n[7..]).parse().unwrap())
        .collect();
    let mut b = TieredStore::builder().disk_dir(&disk).disk_max_bytes(24 << 20);
    if mode == "redis" {
        b = b.remote(
            RedisTier::builder(&std::env::var(ENV_REDIS).unwrap()).timeout(Duration::from_secs(2)).build().unwrap(),
        );
    } else {
        b = b.origin(DirOrigin::new(&origin)).origin_gzip(true);
    }
    let s = b.build().unwrap();
    println!("STARTED");
    std::io::stdout().flush().unwrap();
    let mut x: u64 = seed.parse::<u64>().unwrap() * 2654435761 + 1;
    std::thread::scope(|sc| {
        for t in 0..3u64 {
            let (s, digests) = (&s, &digests);
            let mut x = x ^ (t * 0x9E37);
            sc.spawn(move || {
                loop {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let d = &digests[(x % digests.len() as u64) as usize];
                    if x.is_multiple_of(3) {
                        s.evict(d);
                    }
                    let src = s.fill(d).unwrap();
                    let mut buf = [0u8; 4096];
                    s.read_at(d, 0, &mut buf).unwrap();
                    let _ = src;
                }
            });
        }
        x += 1;
    });
}

#[test]
fn holds_sigkill_during_fills_never_leaves_a_partial_blob() {
    let redis = Redis::start(&[]);
    let origin = tempfile::tempdir().unwrap(); // gzip files named by the content's digest
    let plain = tempfile::tempdir().unwrap(); // the same content, plain, for the Redis upload
    let mut all = Vec::new();
    for i in 0..16u64 {
        let size = 256 * 1024 + (i as usize * 997_331) % (6 << 20);
        let bytes = content(1000 + i, size);
        let d = Digest::of(&bytes);
        std::fs::write(origin.path().join(d.file_name()), gzip(&bytes)).unwrap();
        std::fs::write(plain.path().join(d.file_name()), &bytes).unwrap();
        all.push(d);
    }
    {
        let d = tempfile::tempdir().unwrap();
        let s = TieredStore::builder()
            .disk_dir(d.path())
            .remote(RedisTier::builder(&redis.url()).build().unwrap())
            .origin(DirOrigin::new(plain.path()))
            .build()
            .unwrap();
        for x in &all {
            s.fill(x).unwrap();
        }
        assert!(s.wait_for_uploads(Duration::from_secs(30)));
        assert_eq!(s.stats().uploads, 16);
    }
    let disk = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut x = nanos | 1;
    let started = Instant::now();
    let (mut checked_files, mut temps_seen) = (0usize, 0usize);
    for kill in 0..50 {
        let mode = if kill % 2 == 0 { "origin" } else { "redis" };
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ENV_MODE, mode)
            .env(ENV_DISK, disk.path())
            .env(ENV_ORIGIN, origin.path())
            .env(ENV_REDIS, redis.url())
            .env(ENV_SEED, (kill + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // wait for STARTED, then a random delay
        let mut out = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut b = [0u8; 64];
        let t = Instant::now();
        while !String::from_utf8_lossy(&seen).contains("STARTED") && t.elapsed() < Duration::from_secs(20) {
            let n = out.read(&mut b).unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&b[..n]);
        }
        if !String::from_utf8_lossy(&seen).contains("STARTED") {
            let _ = child.kill();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("kill {kill} ({mode}): the child did not start: {err}");
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_millis(10 + x % 300));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            panic!("kill {kill}: child finished");
        }
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(!err.contains("panicked"), "kill {kill} ({mode}): the child panicked before the kill: {err}");
        // 1. no partial blob under a blob's name, before any store touches the directory
        temps_seen += ls(disk.path())
            .iter()
            .filter(|n| !n.starts_with("sha256_") || n.len() > 71 && !n.ends_with(".verified"))
            .count();
        for (hex, path) in blob_files(disk.path()) {
            assert_eq!(file_sha(&path), hex, "kill {kill} ({mode}): {} is partial or corrupt", path.display());
            checked_files += 1;
        }
        // 2. every few kills, a store opened on the directory serves every blob it has, right
        if kill % 5 == 4 {
            let s = TieredStore::builder().disk_dir(disk.path()).disk_max_bytes(24 << 20).build().unwrap();
            for d in &all {
                if s.contains(d) {
                    let mut h = s.open(d).unwrap();
                    assert_eq!(h.source(), Source::Disk);
                    let mut v = Vec::new();
                    h.read_to_end(&mut v).unwrap();
                    assert_eq!(Digest::of(&v), *d, "kill {kill}: served wrong bytes");
                }
            }
            assert!(s.stats().disk_bytes <= 24 << 20);
        }
    }
    // final restart: no stray temporaries remain
    let s = TieredStore::builder().disk_dir(disk.path()).disk_max_bytes(24 << 20).build().unwrap();
    let left: Vec<String> = ls(disk.path())
        .into_iter()
        .filter(|n| (n.len() != 71 || !n.starts_with("sha256_")) && !n.ends_with(".verified"))
        .collect();
    eprintln!(
        "50 kills in {:.1} s, {checked_files} blob files checked, {temps_seen} other names seen; after restart: {left:?}",
        started.elapsed().as_secs_f64()
    );
    for d in &all {
        if s.contains(d) {
            s.verify(d).unwrap();
        }
    }
    assert!(left.len() <= 2, "stray files after restart: {left:?}");
}

// ---------------------------------------------------------------- memory

fn big_gzip_origin(dir: &Path, size: u64) -> Digest {
    use sha2::Digest as _;
    let tmp = dir.join("tmp.gz");
    let f = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut h = sha2::Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..(size >> 20) {
        for (j, b) in block.iter_mut().enumerate() {
            *b = ((j % 251) as u8) ^ (i as u8) ^ ((j >> 12) as u8);
        }
        h.update(&block);
        gz.write_all(&block).unwrap();
    }
    gz.finish().unwrap().flush().unwrap();
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let d: Digest = format!("sha256:{hex}").parse().unwrap();
    std::fs::rename(&tmp, dir.join(d.file_name())).unwrap();
    d
}

#[test]
#[ignore = "child of holds_a_512_mib_gzip_blob_fills_and_reads_with_flat_memory"]
fn rss_child() {
    let (Ok(mode), Ok(disk), Ok(digest)) =
        (std::env::var(ENV_MODE), std::env::var(ENV_DISK), std::env::var(ENV_DIGEST))
    else {
        return;
    };
    let d: Digest = digest.parse().unwrap();
    let before = vm_hwm_kib();
    let mut b = TieredStore::builder().disk_dir(&disk);
    if let (Ok(url), false) = (std::env::var(ENV_REDIS), mode == "plain") {
        b = b.remote(RedisTier::builder(&url).timeout(Duration::from_secs(5)).build().unwrap());
    }
    if mode == "origin" || mode == "plain" {
        b = b.origin(DirOrigin::new(std::env::var(ENV_ORIGIN).unwrap())).origin_gzip(true);
    }
    let s = b.build().unwrap();
    let t = Instant::now();
    let src = s.fill(&d).unwrap();
    let fill = t.elapsed();
    let after_fill = vm_hwm_kib();
    let mut h = s.open(&d).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = h.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    drop(h);
    let uploaded = s.wait_for_uploads(Duration::from_secs(60));
    println!(
        "RESULT src={} total={total} before_kib={before} after_fill_kib={after_fill} peak_kib={} fill_s={:.1} uploaded={uploaded} uploads={}",
        src.name(),
        vm_hwm_kib(),
        fill.as_secs_f64(),
        s.stats().uploads
    );
}

#[test]
fn holds_a_512_mib_gzip_blob_fills_and_reads_with_flat_memory() {
    let redis = Redis::start(&[]);
    let origin = tempfile::tempdir().unwrap();
    let size = 512u64 << 20;
    let d = big_gzip_origin(origin.path(), size);
    let exe = std::env::current_exe().unwrap();
    let run = |mode: &str, disk: &Path| -> String {
        let out = Command::new(&exe)
            .args(["rss_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(ENV_MODE, mode)
            .env(ENV_DISK, disk)
            .env(ENV_ORIGIN, origin.path())
            .env(ENV_REDIS, redis.url())
            .env(ENV_DIGEST, d.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find_map(|l| l.find("RESULT").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("{mode}: {text}{}", String::from_utf8_lossy(&out.stderr)))
            .to_string();
        eprintln!("{mode}: {line}");
        line
    };
    let field = |line: &str, k: &str| -> String {
        line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{k}="))).unwrap().to_string()
    };
    let d0 = tempfile::tempdir().unwrap();
    let p = run("plain", d0.path());
    assert_eq!(field(&p, "src"), "origin");
    assert_eq!(field(&p, "total"), size.to_string());
    let peak: u64 = field(&p, "peak_kib").parse().unwrap();
    // documented: "a 1 GiB gzip blob fills and reads at 5 MiB peak RSS"; allow the test harness some room
    assert!(peak < 12 << 10, "fill + read of a 512 MiB gzip blob peaked at {peak} KiB: {p}");
    let d1 = tempfile::tempdir().unwrap();
    let a = run("origin", d1.path());
    assert_eq!(field(&a, "src"), "origin");
    assert_eq!(field(&a, "total"), size.to_string());
    assert_eq!(field(&a, "uploads"), "1");
    let d2 = tempfile::tempdir().unwrap();
    let b = run("redis", d2.path());
    assert_eq!(field(&b, "src"), "remote");
    assert_eq!(field(&b, "total"), size.to_string());
    for line in [&a, &b] {
        let peak: u64 = field(line, "peak_kib").parse().unwrap();
        let base: u64 = field(line, "before_kib").parse().unwrap();
        assert!(
            peak < 48 << 10 && peak - base < 32 << 10,
            "peak RSS {peak} KiB (baseline {base} KiB) for a 512 MiB blob: {line}"
        );
    }
}
