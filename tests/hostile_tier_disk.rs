//! Hostile tests of `cachefs::tier` (disk tier, directory origin, single flight, bounds, metrics), written
//! from the public documentation only (README, CHANGELOG, rustdoc). `holds_*` tests check a documented
//! promise that held; `defect_*` tests one that did not (see FINDINGS_TIER.md).
#![cfg(feature = "tier")]

mod hostile_tier_common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use cachefs::tier::{BlobSink, Digest, DirOrigin, Error, Origin, Source, TieredStore};
use hostile_tier_common::*;

fn store(disk: &Path, origin: &Path) -> TieredStore {
    TieredStore::builder().disk_dir(disk).origin(DirOrigin::new(origin)).build().unwrap()
}

fn put(origin: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    std::fs::write(origin.join(d.file_name()), bytes).unwrap();
    d
}

fn is_blob_name(n: &str) -> bool {
    n.len() == 71
        && n.starts_with("sha256_")
        && n[7..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn read_all(s: &TieredStore, d: &Digest) -> Vec<u8> {
    let mut b = s.open(d).unwrap();
    let mut v = Vec::new();
    b.read_to_end(&mut v).unwrap();
    v
}

// ---------------------------------------------------------------- digests

#[test]
fn holds_digest_parsing_rejects_every_malformed_shape_with_a_typed_error() {
    let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let mut bad: Vec<String> = vec![
        String::new(),
        "sha256:".into(),
        "sha256".into(),
        good.into(),
        format!("SHA256:{good}"),
        format!("Sha256:{good}"),
        format!("sha256:{}", good.to_uppercase()),
        format!("sha256:{}A", &good[..63]),
        format!("sha256:{}", &good[..63]),
        format!("sha256:{good}0"),
        format!(" sha256:{good}"),
        format!("sha256:{good} "),
        format!("sha256:{good}\n"),
        format!("sha256: {good}"),
        format!("sha256::{good}"),
        format!("sha256-{good}"),
        format!("sha256_{good}"),
        format!("sha512:{good}{good}"),
        format!("sha384:{good}"),
        format!("md5:{good}"),
        format!("sha256:{}g", &good[..63]),
        format!("sha256:{}\u{0}", &good[..63]),
        format!("sha256:+{}", &good[..63]),
        format!("sha256:0x{}", &good[..62]),
        format!("\u{feff}sha256:{good}"),
        format!("sha256\u{ff1a}{good}"),           // fullwidth colon
        format!("sha256:{}\u{0660}", &good[..63]), // Arabic-Indic zero
        format!("sha256:{}é", &good[..62]),        // 64 bytes, 63 chars
        format!("sha256:{}é", &good[..63]),        // 65 bytes
        format!("ｓha256:{good}"),
        "sha256:".to_string() + &"é".repeat(32), // 64 bytes of multibyte
        "sha256:".to_string() + &"€".repeat(40),
        format!("{}:{good}", "x".repeat(300)),
    ];
    // Cut-to-100-characters must not split a multibyte character: try every alignment.
    for pad in 0..8 {
        bad.push(format!("{}{}", "a".repeat(95 + pad), "日本語のテキスト".repeat(4)));
        bad.push(format!("sha256:{}{}", "é".repeat(40 + pad), "💥".repeat(10)));
    }
    for input in &bad {
        let r = std::panic::catch_unwind(|| input.parse::<Digest>());
        let r = r.unwrap_or_else(|_| panic!("parse panicked on {input:?}"));
        match r {
            Err(Error::InvalidDigest { input: shown, reason }) => {
                assert!(!reason.is_empty());
                assert!(
                    shown.chars().count() <= 100,
                    "input not cut to 100 characters: {} chars",
                    shown.chars().count()
                );
                assert!(input.starts_with(shown.trim_end_matches('…')) || shown.len() <= input.len(), "{shown:?}");
                let msg = Error::InvalidDigest { input: shown, reason }.to_string();
                assert!(!msg.is_empty());
            }
            other => panic!("{input:?} gave {other:?}"),
        }
        assert!(Digest::parse(input).is_err());
    }
    let d: Digest = format!("sha256:{good}").parse().unwrap();
    assert_eq!(d, Digest::of(b"hello"));
    assert_eq!(d.file_name(), format!("sha256_{good}"));
    assert_eq!(d.hex(), good);
    assert_eq!(d.to_string(), format!("sha256:{good}"));
}

#[test]
fn holds_disk_layout_is_sha256_hex_and_two_images_sharing_a_layer_share_one_file() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = put(o.path(), &content(1, 300_000));
    let a = put(o.path(), &content(2, 1000));
    let b = put(o.path(), &content(3, 1000));
    let s = store(disk.path(), o.path());
    for d in [a, shared, b, shared] {
        s.fill(&d).unwrap();
    }
    let names: Vec<String> = ls(disk.path()).into_iter().filter(|n| is_blob_name(n)).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&shared.file_name()));
    assert_eq!(std::fs::read(disk.path().join(shared.file_name())).unwrap(), content(1, 300_000));
    let st = s.stats();
    assert_eq!(st.origin_fetches, 3);
    assert_eq!(st.disk_blobs, 3);
    assert_eq!(st.disk_bytes, 302_000);
    assert_eq!(s.fill(&shared).unwrap(), Source::Disk);
}

#[test]
fn holds_dir_origin_reads_oci_image_layout() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(9, 70_000);
    let d = Digest::of(&bytes);
    std::fs::create_dir_all(o.path().join("blobs/sha256")).unwrap();
    std::fs::write(o.path().join("blobs/sha256").join(d.hex()), &bytes).unwrap();
    let s = store(disk.path(), o.path());
    assert_eq!(read_all(&s, &d), bytes);
    let missing = Digest::of(b"nope");
    assert!(matches!(s.fill(&missing), Err(Error::NotFound { .. })), "missing blob is NotFound");
    assert!(s.fill(&missing).unwrap_err().is_not_found());
}

// ---------------------------------------------------------------- integrity

#[test]
fn holds_origin_bytes_that_do_not_match_are_never_stored() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = Digest::of(b"the real content");
    std::fs::write(o.path().join(d.file_name()), b"an impostor content").unwrap();
    let s = store(disk.path(), o.path());
    for _ in 0..3 {
        match s.fill(&d) {
            Err(Error::DigestMismatch { digest, actual }) => {
                assert_eq!(digest, d.to_string());
                assert_eq!(actual, Digest::of(b"an impostor content").to_string());
            }
            other => panic!("{other:?}"),
        }
        let mut buf = [0u8; 4];
        assert!(s.read_at(&d, 0, &mut buf).is_err());
        assert!(s.open(&d).is_err());
        assert!(!s.contains(&d));
    }
    let left: Vec<String> = ls(disk.path()).into_iter().filter(|n| n.contains(&d.hex()[..16])).collect();
    assert!(left.is_empty(), "mismatched bytes left on disk: {left:?}");
    let st = s.stats();
    assert_eq!(st.origin_fetches, 9, "fill, read_at and open each fetch again");
    assert_eq!(st.origin_errors, 9);
    assert_eq!(st.fills, 0);
    assert_eq!(st.disk_blobs, 0);
}

fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

fn set_mtime(path: &Path, t: std::time::SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t)).unwrap();
}

#[test]
fn holds_bytes_flipped_on_disk_are_never_served_while_running_or_after_restart() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(4, 1 << 20);
    let d = put(o.path(), &bytes);
    {
        let s = store(disk.path(), o.path());
        s.fill(&d).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        flip(&disk.path().join(d.file_name()), 12345);
        let mut buf = vec![0u8; 1 << 20];
        let n = s.read_at(&d, 0, &mut buf).unwrap();
        assert_eq!(n, bytes.len());
        assert!(buf == bytes, "flipped bytes served while running");
        assert!(s.stats().corrupt >= 1, "corruption not counted: {:?}", s.stats());
        assert_eq!(read_all(&s, &d), bytes);
    }
    std::thread::sleep(Duration::from_millis(30));
    flip(&disk.path().join(d.file_name()), 777);
    let s = store(disk.path(), o.path());
    assert_eq!(read_all(&s, &d), bytes, "flipped bytes served after restart");
    assert!(s.stats().corrupt >= 1);
}

/// The file is changed (same size) and its mtime put back, as `rsync -t`, `cp -p`, `tar x` or a backup
/// restore would. Its ctime still changed: "its file has not changed since".
#[test]
fn holds_flipped_bytes_with_restored_mtime_are_never_served() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(5, 256 << 10);
    let d = put(o.path(), &bytes);
    let path = disk.path().join(d.file_name());
    let s = store(disk.path(), o.path());
    s.fill(&d).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    flip(&path, 1000);
    set_mtime(&path, mtime);
    let mut buf = vec![0u8; bytes.len()];
    s.read_at(&d, 0, &mut buf).unwrap();
    assert!(
        buf == bytes,
        "running store served a changed file whose mtime was restored (corrupt={})",
        s.stats().corrupt
    );
    drop(s);
    std::thread::sleep(Duration::from_millis(50));
    flip(&path, 2000);
    set_mtime(&path, mtime);
    let s = store(disk.path(), o.path());
    s.read_at(&d, 0, &mut buf).unwrap();
    assert!(buf == bytes, "restarted store served a changed file whose mtime was restored");
}

#[test]
fn holds_a_foreign_file_under_a_blob_name_is_verified_before_being_served() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(6, 100_000);
    let d = put(o.path(), &bytes);
    // Planted before the store opens: wrong content under the right name, plus junk names.
    std::fs::write(disk.path().join(d.file_name()), content(7, 100_000)).unwrap();
    std::fs::write(disk.path().join("sha256_zz"), b"junk").unwrap();
    std::fs::write(disk.path().join(format!("sha256_{}", d.hex().to_uppercase())), b"junk").unwrap();
    let good2 = content(8, 5000);
    let d2 = Digest::of(&good2);
    std::fs::write(disk.path().join(d2.file_name()), &good2).unwrap(); // a correct one: adopted
    let s = store(disk.path(), o.path());
    assert_eq!(read_all(&s, &d), bytes);
    assert_eq!(s.fill(&d2).unwrap(), Source::Disk, "a correct blob already on disk is adopted");
    let st = s.stats();
    assert!(st.corrupt >= 1, "{st:?}");
    assert_eq!(st.origin_fetches, 1);
}

// ---------------------------------------------------------------- gzip origins

fn gz_store(disk: &Path, origin: &Path) -> TieredStore {
    TieredStore::builder().disk_dir(disk).origin(DirOrigin::new(origin)).origin_gzip(true).build().unwrap()
}

#[test]
fn holds_corrupt_and_truncated_gzip_is_a_typed_error_and_nothing_is_stored() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(10, 2 << 20);
    let d = Digest::of(&bytes);
    let gz = gzip(&bytes);
    let s = gz_store(disk.path(), o.path());
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("truncated half", gz[..gz.len() / 2].to_vec()),
        ("truncated trailer", gz[..gz.len() - 4].to_vec()),
        ("header only", gz[..10].to_vec()),
        ("empty", vec![]),
        ("not gzip", bytes[..1000].to_vec()),
        ("flipped in the middle", {
            let mut g = gz.clone();
            let i = g.len() / 2;
            g[i] ^= 0x55;
            g
        }),
        ("bad crc", {
            let mut g = gz.clone();
            let i = g.len() - 6;
            g[i] ^= 0xff;
            g
        }),
    ];
    for (what, v) in variants {
        std::fs::write(o.path().join(d.file_name()), &v).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.fill(&d)))
            .unwrap_or_else(|_| panic!("{what}: panic"));
        assert!(r.is_err(), "{what}: served {r:?}");
        let e = r.unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. } | Error::Origin { .. }), "{what}: {e:?}");
        assert!(!s.contains(&d), "{what}");
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(s.stats().disk_blobs, 0);
    let names: Vec<_> = ls(disk.path()).into_iter().filter(|n| n.starts_with("sha256_")).collect();
    assert!(names.is_empty(), "{names:?}");
    // and the good one then works
    std::fs::write(o.path().join(d.file_name()), &gz).unwrap();
    assert_eq!(s.fill(&d).unwrap(), Source::Origin);
    assert_eq!(read_all(&s, &d), bytes);
}

/// RFC 1952 §2.2: "A gzip file consists of a series of members". `gzip -d`, `zcat` and registries'
/// clients decode them all (bgzip and `cat a.gz b.gz` produce such files).
#[test]
fn holds_gzip_origin_with_concatenated_members() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = content(11, 300_000);
    let b = content(12, 200_000);
    let mut whole = a.clone();
    whole.extend_from_slice(&b);
    let d = Digest::of(&whole);
    let mut gz = gzip(&a);
    gz.extend_from_slice(&gzip(&b));
    std::fs::write(o.path().join(d.file_name()), &gz).unwrap();
    let s = gz_store(disk.path(), o.path());
    let r = s.fill(&d);
    assert!(r.is_ok(), "a valid multi-member gzip layer: {r:?}");
    assert_eq!(read_all(&s, &d), whole);
}

#[test]
fn holds_gzip_trailing_garbage_never_changes_what_is_served() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(13, 100_000);
    let d = Digest::of(&bytes);
    let mut gz = gzip(&bytes);
    gz.extend_from_slice(b"TRAILING GARBAGE \x00\x01\x02");
    std::fs::write(o.path().join(d.file_name()), &gz).unwrap();
    let s = gz_store(disk.path(), o.path());
    match s.fill(&d) {
        Ok(_) => assert_eq!(read_all(&s, &d), bytes),
        Err(e) => assert!(!s.contains(&d), "{e}"),
    }
}

/// A gzip bomb: 1 GiB of zeros (1 MiB compressed) against a 16 MiB bound must stop at the bound.
#[test]
fn holds_gzip_bomb_stops_at_the_disk_bound() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let zeros = vec![0u8; 1 << 20];
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..1024 {
        sha2::Digest::update(&mut h, &zeros);
        gz.write_all(&zeros).unwrap();
    }
    let hex: String = sha2::Digest::finalize(h).iter().map(|b| format!("{b:02x}")).collect();
    let d: Digest = format!("sha256:{hex}").parse().unwrap();
    std::fs::write(o.path().join(d.file_name()), gz.finish().unwrap()).unwrap();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .disk_max_bytes(16 << 20)
        .origin(DirOrigin::new(o.path()))
        .origin_gzip(true)
        .build()
        .unwrap();
    let t = Instant::now();
    let r = s.fill(&d);
    assert!(matches!(r, Err(Error::TooLarge { max, .. }) if max == 16 << 20), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "the fill did not stop at the bound: {:?}", t.elapsed());
    let total: u64 =
        std::fs::read_dir(disk.path()).unwrap().filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    assert!(total < 1 << 20, "{total} bytes left on disk");
}

// ---------------------------------------------------------------- single flight

#[derive(Debug)]
struct SlowOrigin {
    dir: DirOrigin,
    calls: AtomicUsize,
    running: Mutex<Vec<Digest>>,
    twice: AtomicBool,
    delay: Duration,
    fail: AtomicBool,
    panic: AtomicBool,
}
impl SlowOrigin {
    fn new(dir: &Path, delay: Duration) -> Arc<SlowOrigin> {
        Arc::new(SlowOrigin {
            dir: DirOrigin::new(dir),
            calls: AtomicUsize::new(0),
            running: Mutex::new(vec![]),
            twice: AtomicBool::new(false),
            delay,
            fail: AtomicBool::new(false),
            panic: AtomicBool::new(false),
        })
    }
}
#[derive(Debug, Clone)]
struct Shared(Arc<SlowOrigin>);
impl Origin for Shared {
    fn fetch(&self, digest: &Digest, sink: &mut BlobSink<'_>) -> Result<(), Error> {
        let o = &self.0;
        o.calls.fetch_add(1, SeqCst);
        {
            let mut r = o.running.lock().unwrap();
            if r.contains(digest) {
                o.twice.store(true, SeqCst);
            }
            r.push(*digest);
        }
        std::thread::sleep(o.delay);
        let res = if o.panic.load(SeqCst) {
            o.running.lock().unwrap().retain(|x| x != digest);
            panic!("origin panics on purpose");
        } else if o.fail.load(SeqCst) {
            Err(Error::Origin { digest: digest.to_string(), reason: "injected".into() })
        } else {
            o.dir.fetch(digest, sink)
        };
        o.running.lock().unwrap().retain(|x| x != digest);
        res
    }
}

#[test]
fn holds_fifty_threads_on_one_cold_digest_fetch_once() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(20, 3 << 20);
    let d = put(o.path(), &bytes);
    let origin = SlowOrigin::new(o.path(), Duration::from_millis(300));
    let s = TieredStore::builder().disk_dir(disk.path()).origin(Shared(origin.clone())).build().unwrap();
    let barrier = Barrier::new(50);
    std::thread::scope(|sc| {
        for i in 0..50 {
            let (s, b, d, bytes, barrier) = (&s, &bytes, &d, &bytes, &barrier);
            let _ = b;
            sc.spawn(move || {
                barrier.wait();
                let mut buf = vec![0u8; 4096];
                let off = (i * 60_000) as u64;
                let n = s.read_at(d, off, &mut buf).unwrap();
                assert_eq!(&buf[..n], &bytes[off as usize..off as usize + n]);
            });
        }
    });
    assert_eq!(origin.calls.load(SeqCst), 1);
    let st = s.stats();
    assert_eq!(st.origin_fetches, 1);
    assert_eq!(st.fills, 1);
    assert_eq!(st.disk_hits, 49, "waiters count as disk hits: {st:?}");
    assert_eq!(st.bytes_read, 50 * 4096);
}

#[test]
fn holds_many_digests_at_once_one_fetch_each_never_two_at_once() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blobs: Vec<Vec<u8>> = (0..20).map(|i| content(100 + i, 50_000 + i as usize * 1000)).collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let origin = SlowOrigin::new(o.path(), Duration::from_millis(50));
    let s = TieredStore::builder().disk_dir(disk.path()).origin(Shared(origin.clone())).build().unwrap();
    std::thread::scope(|sc| {
        for t in 0..40 {
            let (s, digests, blobs) = (&s, &digests, &blobs);
            sc.spawn(move || {
                for k in 0..20 {
                    let i = (t * 7 + k * 3) % 20;
                    let mut buf = vec![0u8; 100];
                    let n = s.read_at(&digests[i], 1000, &mut buf).unwrap();
                    assert_eq!(&buf[..n], &blobs[i][1000..1100]);
                }
            });
        }
    });
    assert!(!origin.twice.load(SeqCst), "the origin was called twice at once for one digest");
    assert_eq!(origin.calls.load(SeqCst), 20);
    assert_eq!(s.stats().origin_fetches, 20);
}

#[test]
fn holds_a_failed_fill_gives_every_waiter_its_error_and_the_next_call_retries() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(21, 10_000);
    let d = put(o.path(), &bytes);
    let origin = SlowOrigin::new(o.path(), Duration::from_millis(300));
    origin.fail.store(true, SeqCst);
    let s = TieredStore::builder().disk_dir(disk.path()).origin(Shared(origin.clone())).build().unwrap();
    let errs = AtomicUsize::new(0);
    let barrier = Barrier::new(10);
    std::thread::scope(|sc| {
        for _ in 0..10 {
            sc.spawn(|| {
                barrier.wait();
                if let Err(e) = s.fill(&d) {
                    assert!(matches!(e, Error::Origin { .. }), "{e:?}");
                    errs.fetch_add(1, SeqCst);
                }
            });
        }
    });
    assert_eq!(errs.load(SeqCst), 10);
    assert_eq!(origin.calls.load(SeqCst), 1);
    origin.fail.store(false, SeqCst);
    assert_eq!(s.fill(&d).unwrap(), Source::Origin);
    assert_eq!(origin.calls.load(SeqCst), 2);
}

#[test]
fn holds_a_panicking_origin_gives_fill_abandoned_and_the_store_recovers() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(22, 10_000);
    let d = put(o.path(), &bytes);
    let origin = SlowOrigin::new(o.path(), Duration::from_millis(300));
    origin.panic.store(true, SeqCst);
    let s = TieredStore::builder().disk_dir(disk.path()).origin(Shared(origin.clone())).build().unwrap();
    let barrier = Barrier::new(6);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..6 {
            sc.spawn(|| {
                barrier.wait();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.fill(&d)));
                results.lock().unwrap().push(match r {
                    Err(_) => "panicked".to_string(),
                    Ok(Err(Error::FillAbandoned { .. })) => "abandoned".to_string(),
                    Ok(other) => format!("{other:?}"),
                });
            });
        }
    });
    let r = results.into_inner().unwrap();
    assert_eq!(r.iter().filter(|x| *x == "panicked").count(), 1, "{r:?}");
    assert_eq!(r.iter().filter(|x| *x == "abandoned").count(), 5, "{r:?}");
    origin.panic.store(false, SeqCst);
    assert_eq!(s.fill(&d).unwrap(), Source::Origin);
    assert_eq!(read_all(&s, &d), bytes);
}

#[test]
fn holds_evict_while_handles_are_open_and_while_a_fill_runs() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(23, 2 << 20);
    let d = put(o.path(), &bytes);
    let origin = SlowOrigin::new(o.path(), Duration::from_millis(400));
    let s = TieredStore::builder().disk_dir(disk.path()).origin(Shared(origin.clone())).build().unwrap();
    let mut h1 = s.open(&d).unwrap();
    let h2 = s.open(&d).unwrap();
    assert_eq!(s.stats().open_blobs, 1, "open_blobs counts blobs");
    assert!(s.evict(&d));
    assert!(!s.contains(&d));
    assert!(!s.evict(&d));
    // handles keep reading the deleted file
    let mut v = Vec::new();
    h1.read_to_end(&mut v).unwrap();
    assert!(v == bytes);
    let mut buf = vec![0u8; 1000];
    assert_eq!(h2.read_at(bytes.len() as u64 - 10, &mut buf).unwrap(), 10);
    assert_eq!(&buf[..10], &bytes[bytes.len() - 10..]);
    drop((h1, h2));
    // next read fills again
    assert_eq!(s.fill(&d).unwrap(), Source::Origin);
    // evict while a fill runs
    assert!(s.evict(&d));
    std::thread::scope(|sc| {
        let f = sc.spawn(|| s.open(&d));
        std::thread::sleep(Duration::from_millis(150));
        let _ = s.evict(&d);
        let h = f.join().unwrap().expect("a fill racing an evict still yields a readable handle");
        let mut v = Vec::new();
        let mut h = h;
        h.read_to_end(&mut v).unwrap();
        assert!(v == bytes);
    });
    let mut buf = vec![0u8; 64];
    s.read_at(&d, 100, &mut buf).unwrap();
    assert_eq!(&buf[..], &bytes[100..164]);
    let st = s.stats();
    assert_eq!(st.open_blobs, 0);
    assert!(st.disk_bytes <= bytes.len() as u64);
}

// ---------------------------------------------------------------- bounds

#[test]
fn holds_disk_bound_is_lru_over_blobs_not_open() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mb = 1 << 20;
    let blobs: Vec<Vec<u8>> = (0..6).map(|i| content(200 + i, mb)).collect();
    let ds: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .disk_max_bytes(3 * mb as u64)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    s.fill(&ds[0]).unwrap();
    s.fill(&ds[1]).unwrap();
    s.fill(&ds[2]).unwrap();
    let mut b = [0u8; 1];
    s.read_at(&ds[0], 0, &mut b).unwrap(); // 0 is now more recent than 1
    s.fill(&ds[3]).unwrap(); // evicts 1
    assert!(s.contains(&ds[0]) && !s.contains(&ds[1]) && s.contains(&ds[2]) && s.contains(&ds[3]));
    assert!(s.stats().disk_bytes <= 3 * mb as u64);
    // open handles are exempt: hold 0, 2, 3 and fill 4 and 5
    let hs: Vec<_> = [0, 2, 3].iter().map(|&i| s.open(&ds[i]).unwrap()).collect();
    s.fill(&ds[4]).unwrap();
    s.fill(&ds[5]).unwrap();
    assert!(s.contains(&ds[0]) && s.contains(&ds[2]) && s.contains(&ds[3]));
    drop(hs);
    let st = s.stats();
    assert!(st.disk_bytes <= 3 * mb as u64, "after handles closed: {} > bound", st.disk_bytes);
    let on_disk: u64 = ls(disk.path())
        .iter()
        .filter(|n| is_blob_name(n))
        .map(|n| std::fs::metadata(disk.path().join(n)).unwrap().len())
        .sum();
    assert_eq!(on_disk, st.disk_bytes);
    assert_eq!(st.evicted_bytes, st.evictions * mb as u64);
}

#[test]
fn holds_a_blob_bigger_than_the_bound_is_too_large_and_exactly_the_bound_fits() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let big = put(o.path(), &content(30, 1_000_001));
    let exact = put(o.path(), &content(31, 1_000_000));
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .disk_max_bytes(1_000_000)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    assert!(matches!(s.fill(&big), Err(Error::TooLarge { max: 1_000_000, .. })));
    assert!(!s.contains(&big));
    assert_eq!(s.fill(&exact).unwrap(), Source::Origin);
    assert!(s.contains(&exact));
    assert!(matches!(
        TieredStore::builder().disk_dir(tempfile::tempdir().unwrap().path()).disk_max_bytes(0).build(),
        Err(Error::Config { .. })
    ));
}

/// An origin that never ends: the fill must stop "as soon as it passes the bound".
#[derive(Debug)]
struct Endless(AtomicU64);
impl Origin for Endless {
    fn fetch(&self, _d: &Digest, sink: &mut BlobSink<'_>) -> Result<(), Error> {
        let buf = vec![7u8; 64 << 10];
        loop {
            if let Err(e) = sink.write_all(&buf) {
                let _ = e;
                return Err(Error::Origin { digest: String::new(), reason: "sink refused".into() });
            }
            if self.0.fetch_add(buf.len() as u64, SeqCst) > 1 << 30 {
                return Ok(());
            }
        }
    }
}

#[test]
fn holds_an_endless_origin_stops_at_the_bound() {
    let disk = tempfile::tempdir().unwrap();
    let e = Arc::new(Endless(AtomicU64::new(0)));
    #[derive(Debug)]
    struct E(Arc<Endless>);
    impl Origin for E {
        fn fetch(&self, d: &Digest, s: &mut BlobSink<'_>) -> Result<(), Error> {
            self.0.fetch(d, s)
        }
    }
    let s = TieredStore::builder().disk_dir(disk.path()).disk_max_bytes(4 << 20).origin(E(e.clone())).build().unwrap();
    let r = s.fill(&Digest::of(b"x"));
    assert!(matches!(r, Err(Error::TooLarge { .. })), "the store reports its own cause: {r:?}");
    assert!(e.0.load(SeqCst) <= (4 << 20) + (1 << 20), "origin kept writing: {}", e.0.load(SeqCst));
}

#[test]
fn holds_restart_adopts_blobs_deletes_stray_temporaries_and_locks_the_directory() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| content(300 + i, 100_000)).collect();
    let ds: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let s = store(disk.path(), o.path());
    for d in &ds {
        s.fill(d).unwrap();
    }
    // a second store on the same directory is refused
    match TieredStore::builder().disk_dir(disk.path()).build() {
        Err(Error::Locked { path }) => assert!(!path.is_empty()),
        other => panic!("second store on one dir: {other:?}"),
    }
    let names_before = ls(disk.path());
    drop(s);
    // plant temporaries that look like what a crash leaves (any name not a blob and not the lock)
    let extra: Vec<String> = names_before.iter().filter(|n| !n.starts_with("sha256_")).cloned().collect();
    eprintln!("non-blob names in a live disk dir: {extra:?}");
    let s = store(disk.path(), o.path());
    for (d, b) in ds.iter().zip(&blobs) {
        assert!(s.contains(d));
        assert_eq!(s.fill(d).unwrap(), Source::Disk);
        assert_eq!(&read_all(&s, d), b);
    }
    let st = s.stats();
    assert_eq!(st.origin_fetches, 0);
    assert_eq!(st.disk_blobs, 4);
    assert_eq!(st.disk_bytes, 400_000);
    // restart with a smaller bound: eviction on open
    drop(s);
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .disk_max_bytes(250_000)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    assert!(
        s.stats().disk_bytes <= 250_000,
        "bound applied when a store opens a directory: {:?}",
        s.stats().disk_bytes
    );
}

#[test]
fn holds_stray_temporaries_of_a_killed_fill_are_deleted_on_restart() {
    // Find what a temporary looks like by watching a slow fill, then leave one behind by leaking the
    // store's process state: we copy the temp file while the fill runs and put it back after.
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(40, 1 << 20);
    let d = put(o.path(), &bytes);
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Stall(DirOrigin, Arc<AtomicBool>);
    impl Origin for Stall {
        fn fetch(&self, d: &Digest, sink: &mut BlobSink<'_>) -> Result<(), Error> {
            sink.write_all(b"partial bytes").unwrap();
            while !self.1.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Error::Origin { digest: d.to_string(), reason: "stalled".into() })
        }
    }
    let go = Arc::new(AtomicBool::new(false));
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .origin(Stall(DirOrigin::new(o.path()), go.clone()))
        .build()
        .unwrap();
    let before = ls(disk.path());
    let mut temps = Vec::new();
    std::thread::scope(|sc| {
        let h = sc.spawn(|| s.fill(&d));
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) && temps.is_empty() {
            temps = ls(disk.path()).into_iter().filter(|n| !before.contains(n)).collect();
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in &temps {
            std::fs::copy(disk.path().join(t), o.path().join(t)).unwrap();
        }
        go.store(true, SeqCst);
        assert!(h.join().unwrap().is_err());
    });
    assert!(!temps.is_empty(), "no temporary file seen during a fill");
    assert!(temps.iter().all(|t| !t.starts_with(&d.file_name()) || t.len() > d.file_name().len()));
    drop(s);
    for t in &temps {
        std::fs::copy(o.path().join(t), disk.path().join(t)).unwrap();
    }
    let s = store(disk.path(), o.path());
    for t in &temps {
        assert!(!disk.path().join(t).exists(), "stray temporary {t} survived a restart");
    }
    assert_eq!(read_all(&s, &d), bytes);
}

#[test]
fn holds_two_processes_on_one_disk_dir_the_second_is_locked() {
    let disk = tempfile::tempdir().unwrap();
    if let Ok(dir) = std::env::var("HOSTILE_TIER_LOCK_CHILD") {
        let _s = TieredStore::builder().disk_dir(&dir).build().unwrap();
        println!("LOCKED");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(&exe)
        .args([
            "holds_two_processes_on_one_disk_dir_the_second_is_locked",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOSTILE_TIER_LOCK_CHILD", disk.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let t = Instant::now();
    let mut buf = [0u8; 256];
    while !seen.contains("LOCKED") && t.elapsed() < Duration::from_secs(20) {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let guard = Guard(child);
    assert!(seen.contains("LOCKED"), "child did not lock: {seen}");
    assert!(matches!(TieredStore::builder().disk_dir(disk.path()).build(), Err(Error::Locked { .. })));
    drop(guard); // SIGKILL: the lock must go with the process
    let s = TieredStore::builder().disk_dir(disk.path()).build();
    assert!(s.is_ok(), "lock of a killed process still held: {:?}", s.err());
}

#[test]
fn holds_disk_full_is_a_typed_error_and_leaves_nothing() {
    let mnt = tempfile::tempdir().unwrap();
    let st =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"]).arg(mnt.path()).status();
    if !matches!(st, Ok(s) if s.success()) {
        eprintln!("SKIPPED: cannot mount tmpfs");
        return;
    }
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(mnt.path().to_path_buf());
    let o = tempfile::tempdir().unwrap();
    let big = put(o.path(), &content(50, 12 << 20));
    let small = put(o.path(), &content(51, 1 << 20));
    let s = TieredStore::builder()
        .disk_dir(mnt.path().join("d"))
        .disk_max_bytes(1 << 30)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    let r = s.fill(&big);
    assert!(matches!(r, Err(Error::DiskFull { .. })), "{r:?}");
    assert!(!s.contains(&big));
    let used: u64 =
        std::fs::read_dir(mnt.path().join("d")).unwrap().filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    assert!(used < 1 << 20, "a failed fill left {used} bytes");
    assert_eq!(s.fill(&small).unwrap(), Source::Origin);
    assert_eq!(read_all(&s, &small), content(51, 1 << 20));
    drop(s);
}

// ---------------------------------------------------------------- handles, metrics

#[test]
fn holds_blob_handle_reads_and_seeks_like_a_file() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(60, 100_003);
    let d = put(o.path(), &bytes);
    let empty = put(o.path(), b"");
    let s = store(disk.path(), o.path());
    let mut h = s.open(&d).unwrap();
    assert_eq!(h.len(), 100_003);
    assert_eq!(h.source(), Source::Origin);
    assert_eq!(*h.digest(), d);
    assert_eq!(h.seek(SeekFrom::End(-3)).unwrap(), 100_000);
    let mut v = Vec::new();
    h.read_to_end(&mut v).unwrap();
    assert_eq!(v, &bytes[100_000..]);
    assert!(h.seek(SeekFrom::Current(-200_000)).is_err());
    assert_eq!(h.seek(SeekFrom::Start(1 << 40)).unwrap(), 1 << 40);
    assert_eq!(h.read(&mut [0u8; 10]).unwrap(), 0);
    let mut buf = [0u8; 10];
    assert_eq!(s.read_at(&d, 100_003, &mut buf).unwrap(), 0);
    assert_eq!(s.read_at(&d, u64::MAX, &mut buf).unwrap(), 0);
    assert_eq!(s.read_at(&d, 100_000, &mut buf).unwrap(), 3);
    assert_eq!(s.read_at(&d, 0, &mut []).unwrap(), 0);
    let e = s.open(&empty).unwrap();
    assert!(e.is_empty());
    assert_eq!(s.open(&d).unwrap().source(), Source::Disk);
}

#[test]
fn holds_stats_are_consistent_and_exports_parse() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = put(o.path(), &content(70, 10_000));
    let b = put(o.path(), &content(71, 20_000));
    let missing = Digest::of(b"missing");
    let s = TieredStore::builder()
        .name("hostile \"q\" \\ name\n")
        .disk_dir(disk.path())
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    let mut buf = vec![0u8; 1000];
    s.read_at(&a, 0, &mut buf).unwrap();
    s.read_at(&a, 500, &mut buf).unwrap();
    s.read_at(&b, 0, &mut buf).unwrap();
    let _ = s.fill(&missing);
    s.verify(&a).unwrap();
    assert!(s.verify(&missing).unwrap_err().is_not_found());
    s.evict(&b);
    let st = s.stats();
    assert_eq!(st.origin_fetches, 3);
    assert_eq!(st.origin_errors, 1);
    assert_eq!(st.origin_bytes, 30_000);
    assert_eq!(st.fills, 2);
    assert_eq!(st.fill_errors, 1);
    assert_eq!(st.disk_hits, 1);
    assert_eq!(st.bytes_read, 3000);
    assert_eq!(st.verified, 1);
    assert_eq!(st.evictions, 1);
    assert_eq!(st.evicted_bytes, 20_000);
    assert_eq!(st.disk_blobs, 1);
    assert_eq!(st.disk_bytes, 10_000);
    assert_eq!(st.remote_hits + st.remote_misses + st.uploads, 0);
    let fo = st.latency.iter().find(|l| l.op == "fill_origin").expect("fill_origin latency");
    let _ = fo;
    let json: serde_json::Value = serde_json::from_str(&st.to_json()).expect("JSON parses");
    assert_eq!(json["origin_fetches"], 3);
    let prom = st.to_prometheus();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.prom");
    std::fs::write(&f, &prom).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&f).unwrap())
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}\n{prom}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(prom.lines().all(|l| l.starts_with('#') || l.starts_with("cachefs_tier_") || l.is_empty()));
}

/// The file changes right after the fill returns, within the file system's timestamp granularity, and its
/// mtime is put back: "its file has not changed since (the file's fingerprint is compared on every open".
#[test]
fn holds_a_change_right_after_the_fill_is_never_served() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut served_bad = 0;
    for i in 0..20 {
        let bytes = content(500 + i, 64 << 10);
        let d = put(o.path(), &bytes);
        let s = store(disk.path(), o.path());
        s.fill(&d).unwrap();
        let path = disk.path().join(d.file_name());
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        flip(&path, 100);
        set_mtime(&path, mtime);
        let mut buf = vec![0u8; bytes.len()];
        match s.read_at(&d, 0, &mut buf) {
            Ok(_) if buf != bytes => served_bad += 1,
            _ => {}
        }
        drop(s);
        let s = store(disk.path(), o.path());
        if s.read_at(&d, 0, &mut buf).is_ok() && buf != bytes {
            served_bad += 1;
        }
    }
    assert_eq!(served_bad, 0, "changed bytes served {served_bad} times out of 40 reads");
}

#[test]
fn holds_a_bound_too_small_for_concurrent_readers_gives_right_bytes_or_evicted() {
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blobs: Vec<Vec<u8>> = (0..8).map(|i| content(600 + i, 600 << 10)).collect();
    let ds: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .disk_max_bytes(1 << 20)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    let evicted = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|sc| {
        for th in 0..8 {
            let (s, ds, blobs, evicted) = (&s, &ds, &blobs, &evicted);
            sc.spawn(move || {
                for k in 0..15 {
                    let i = (th + k) % 8;
                    let mut buf = vec![0u8; 1000];
                    match s.read_at(&ds[i], 300_000, &mut buf) {
                        Ok(n) => assert_eq!(&buf[..n], &blobs[i][300_000..300_000 + n]),
                        Err(Error::Evicted { .. }) => {
                            evicted.fetch_add(1, SeqCst);
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
            });
        }
    });
    assert!(t.elapsed() < Duration::from_secs(30));
    let st = s.stats();
    eprintln!("evicted errors {}, fills {}, evictions {}", evicted.load(SeqCst), st.fills, st.evictions);
    assert!(st.disk_bytes <= 1 << 20, "{st:?}");
    assert_eq!(st.open_blobs, 0);
}
