//! Hostile tests of `cachefs::tier` with a Redis remote tier (real redis-server, a 3-node Cluster, hung
//! and erroring fake servers), written from the public documentation only. See FINDINGS_TIER.md.
#![cfg(all(feature = "tier", feature = "redis"))]

mod hostile_tier_common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use cachefs::tier::{BreakerState, Digest, DirOrigin, Error, RedisTier, Source, TieredStore};
use hostile_tier_common::*;

fn put(origin: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    std::fs::write(origin.join(d.file_name()), bytes).unwrap();
    d
}

fn read_all(s: &TieredStore, d: &Digest) -> Vec<u8> {
    let mut b = s.open(d).unwrap();
    let mut v = Vec::new();
    b.read_to_end(&mut v).unwrap();
    v
}

fn redis_store(disk: &Path, origin: Option<&Path>, url: &str) -> TieredStore {
    let mut b = TieredStore::builder()
        .disk_dir(disk)
        .remote(RedisTier::builder(url).timeout(Duration::from_millis(300)).build().unwrap());
    if let Some(o) = origin {
        b = b.origin(DirOrigin::new(o));
    }
    b.build().unwrap()
}

/// The key layout is not in the docs ("See the module docs for the key layout", which do not give it):
/// this records what an upload writes, which the tampering tests below rely on.
#[test]
fn holds_key_layout_is_chunks_then_manifest_under_the_prefix() {
    let r = Redis::start(&[]);
    let (o, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bytes = content(1, 9 << 20);
    let d = put(o.path(), &bytes);
    let s = redis_store(disk.path(), Some(o.path()), &r.url());
    s.fill(&d).unwrap();
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    let p = format!("cachefs:blob:{}", d.hex());
    assert_eq!(scan(r.port), vec![format!("{p}:0"), format!("{p}:1"), format!("{p}:2"), format!("{p}:manifest")]);
    assert_eq!(r.cli(&["STRLEN", &format!("{p}:0")]).trim(), (4 << 20).to_string());
    assert_eq!(r.cli(&["STRLEN", &format!("{p}:2")]).trim(), (1 << 20).to_string());
    let m = r.cli(&["GET", &format!("{p}:manifest")]);
    assert_eq!(m.trim(), format!("cachefs-blob v1 size={} chunk_size=4194304 chunks=3 digest={d}", 9 << 20));
}

fn fresh(url: &str, origin: Option<&Path>) -> (tempfile::TempDir, TieredStore) {
    let disk = tempfile::tempdir().unwrap();
    let s = redis_store(disk.path(), origin, url);
    (disk, s)
}

fn is_blob_name(n: &str) -> bool {
    n.len() == 71 && n.starts_with("sha256_")
}

#[test]
fn holds_a_second_store_is_served_from_redis_with_zero_origin_fetches() {
    let r = Redis::start(&[]);
    let o = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> =
        vec![content(2, 9 << 20), content(3, 1), vec![], content(4, 4 << 20), content(5, (4 << 20) + 1)];
    let ds: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let (_d1, a) = fresh(&r.url(), Some(o.path()));
    for d in &ds {
        assert_eq!(a.fill(d).unwrap(), Source::Origin);
    }
    assert!(a.wait_for_uploads(Duration::from_secs(20)));
    let sa = a.stats();
    assert_eq!(sa.uploads, ds.len() as u64);
    assert_eq!(sa.upload_bytes, blobs.iter().map(|b| b.len() as u64).sum::<u64>());
    // B has the same origin, to show it is not asked.
    let (_d2, b) = fresh(&r.url(), Some(o.path()));
    for (d, bytes) in ds.iter().zip(&blobs) {
        assert_eq!(b.fill(d).unwrap(), Source::Remote, "{d}");
        assert!(&read_all(&b, d) == bytes);
    }
    let sb = b.stats();
    assert_eq!(sb.origin_fetches, 0);
    assert_eq!(sb.remote_hits, ds.len() as u64);
    assert_eq!(sb.remote_bytes, sa.upload_bytes);
    assert_eq!(sb.uploads, 0, "a remote fill is not uploaded again");
    // C has no origin at all
    let (_d3, c) = fresh(&r.url(), None);
    assert!(read_all(&c, &ds[0]) == blobs[0]);
    assert!(c.fill(&Digest::of(b"nowhere")).unwrap_err().is_not_found());
}

#[test]
fn holds_a_second_store_is_served_from_a_redis_cluster_with_zero_origin_fetches() {
    let cl = Cluster::start();
    let o = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| content(10 + i, (3 << 20) + i as usize * 12345)).collect();
    let ds: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let mk = |origin: Option<&Path>| {
        let disk = tempfile::tempdir().unwrap();
        let mut b = TieredStore::builder().disk_dir(disk.path()).remote(
            RedisTier::cluster_builder(cl.urls()[..1].to_vec())
                .timeout(Duration::from_millis(500))
                .chunk_size(1 << 20)
                .build()
                .unwrap(),
        );
        if let Some(o) = origin {
            b = b.origin(DirOrigin::new(o));
        }
        (disk, b.build().unwrap())
    };
    let (_d1, a) = mk(Some(o.path()));
    for d in &ds {
        a.fill(d).unwrap();
    }
    assert!(a.wait_for_uploads(Duration::from_secs(20)));
    assert_eq!(a.stats().uploads, 4);
    let keys = cl.all_keys();
    let nodes_used: std::collections::BTreeSet<u16> = keys.iter().map(|(p, _)| *p).collect();
    eprintln!("{} keys over {} nodes", keys.len(), nodes_used.len());
    let (_d2, b) = mk(None);
    for (d, bytes) in ds.iter().zip(&blobs) {
        assert_eq!(b.fill(d).unwrap(), Source::Remote);
        assert!(&read_all(&b, d) == bytes);
    }
    assert_eq!(b.stats().origin_fetches, 0);
    assert_eq!(b.stats().remote_hits, 4);
}

#[test]
fn holds_a_dead_cluster_node_falls_back_to_the_origin_within_the_budget() {
    let mut cl = Cluster::start();
    let o = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> = (0..6).map(|i| content(20 + i, 2 << 20)).collect();
    let ds: Vec<Digest> = blobs.iter().map(|b| put(o.path(), b)).collect();
    let urls = cl.urls();
    let mk = || {
        let disk = tempfile::tempdir().unwrap();
        let s = TieredStore::builder()
            .disk_dir(disk.path())
            .remote(
                RedisTier::cluster_builder(urls.clone())
                    .timeout(Duration::from_millis(300))
                    .chunk_size(1 << 20)
                    .build()
                    .unwrap(),
            )
            .origin(DirOrigin::new(o.path()))
            .build()
            .unwrap();
        (disk, s)
    };
    let (_d1, a) = mk();
    for d in &ds {
        a.fill(d).unwrap();
    }
    assert!(a.wait_for_uploads(Duration::from_secs(20)));
    let (_d2, b) = mk();
    b.fill(&ds[0]).unwrap(); // connections established
    cl.nodes[1].kill();
    for (d, bytes) in ds.iter().zip(&blobs).skip(1) {
        let t = Instant::now();
        b.fill(d).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "a fill took {:?} with one node dead (budget 300 ms)",
            t.elapsed()
        );
        assert!(&read_all(&b, d) == bytes);
    }
    let st = b.stats();
    assert!(st.origin_fetches >= 1, "{st:?}");
}

/// Tamper with A's upload in Redis in one way; a fresh store must never serve it.
fn tamper_case(name: &str, tamper: impl Fn(u16, &str, &Digest, &Digest)) {
    let r = Redis::start(&[]);
    let o = tempfile::tempdir().unwrap();
    let bytes = content(30, (8 << 20) + 777);
    let other = content(31, (8 << 20) + 777);
    let d = put(o.path(), &bytes);
    let d_other = put(o.path(), &other);
    let (_d1, a) = fresh(&r.url(), Some(o.path()));
    a.fill(&d).unwrap();
    a.fill(&d_other).unwrap();
    assert!(a.wait_for_uploads(Duration::from_secs(20)));
    let prefix = format!("cachefs:blob:{}", d.hex());
    assert!(
        !r.cli(&["EXISTS", &format!("{prefix}:manifest")]).contains('0'),
        "key layout guessed wrong: {:?}",
        scan(r.port)
    );
    tamper(r.port, &prefix, &d, &d_other);
    // with no origin: never served
    let (disk2, b) = fresh(&r.url(), None);
    let t = Instant::now();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.fill(&d)))
        .unwrap_or_else(|_| panic!("{name}: panic"));
    assert!(res.is_err(), "{name}: a tampered remote copy was served: {res:?}");
    assert!(!b.contains(&d), "{name}");
    assert!(
        ls(disk2.path()).iter().all(|n| !(is_blob_name(n) && n.contains(&d.hex()))),
        "{name}: {:?}",
        ls(disk2.path())
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{name}: took {:?}", t.elapsed());
    let st = b.stats();
    assert!(st.remote_invalid + st.remote_misses >= 1, "{name}: {st:?}");
    assert_eq!(st.remote_hits, 0, "{name}");
    // with the origin: the right bytes
    let (_d3, c) = fresh(&r.url(), Some(o.path()));
    assert_eq!(c.fill(&d).unwrap(), Source::Origin, "{name}");
    assert!(read_all(&c, &d) == bytes, "{name}");
}

fn flip_chunk_byte(port: u16, key: &str, at: u64) {
    let cur = cli(port, &["GETRANGE", key, &at.to_string(), &at.to_string()]);
    let ch = cur.trim_end_matches('\n').bytes().next().unwrap_or(b'a');
    let new = if ch == b'A' { "B" } else { "A" };
    cli(port, &["SETRANGE", key, &at.to_string(), new]);
}

#[test]
fn holds_a_flipped_byte_in_a_chunk_is_never_served() {
    tamper_case("flip", |p, k, _, _| flip_chunk_byte(p, &format!("{k}:1"), 4000));
}
#[test]
fn holds_a_missing_chunk_is_never_served() {
    tamper_case("missing", |p, k, _, _| {
        cli(p, &["DEL", &format!("{k}:2")]);
    });
}
#[test]
fn holds_a_short_chunk_is_never_served() {
    tamper_case("short", |p, k, _, _| {
        cli(p, &["SET", &format!("{k}:0"), "short"]);
    });
}
#[test]
fn holds_a_long_chunk_is_never_served() {
    tamper_case("long", |p, k, _, _| {
        cli(p, &["APPEND", &format!("{k}:2"), "extra bytes"]);
    });
}
#[test]
fn holds_an_extra_chunk_and_a_manifest_claiming_fewer_bytes_is_never_served() {
    tamper_case("fewer", |p, k, d, _| {
        let m = format!("cachefs-blob v1 size={} chunk_size=4194304 chunks=2 digest={d}", 8 << 20);
        cli(p, &["SET", &format!("{k}:manifest"), &m]);
    });
}
#[test]
fn holds_a_chunk_of_the_wrong_type_is_never_served() {
    tamper_case("wrong type", |p, k, _, _| {
        cli(p, &["DEL", &format!("{k}:1")]);
        cli(p, &["RPUSH", &format!("{k}:1"), "a", "b"]);
    });
}
#[test]
fn holds_a_manifest_of_the_wrong_type_is_never_served() {
    tamper_case("manifest type", |p, k, _, _| {
        cli(p, &["DEL", &format!("{k}:manifest")]);
        cli(p, &["HSET", &format!("{k}:manifest"), "size", "1"]);
    });
}
#[test]
fn holds_garbage_manifests_are_never_served() {
    let garbage = [
        "",
        "garbage",
        "cachefs-blob v2 size=8389385 chunk_size=4194304 chunks=3",
        "cachefs-blob v1 size=18446744073709551615 chunk_size=4194304 chunks=4398046511104",
        "cachefs-blob v1 size=8389385 chunk_size=0 chunks=3",
        "cachefs-blob v1 size=8389385 chunk_size=18446744073709551615 chunks=1",
        "cachefs-blob v1 size=-1 chunk_size=4194304 chunks=3",
        "cachefs-blob v1 size=8389385 chunk_size=4194304 chunks=18446744073709551615",
        "cachefs-blob v1 size=0 chunk_size=4194304 chunks=0",
        "cachefs-blob v1 size=8389385 size=1 chunk_size=4194304 chunks=3",
        "cachefs-blob v1 size=8389385 chunk_size=4194304 chunks=3 digest=sha256:zz",
        "\u{ff}\u{fe}",
    ];
    for g in garbage {
        tamper_case(&format!("manifest {g:?}"), |p, k, _, _| {
            cli(p, &["SET", &format!("{k}:manifest"), g]);
        });
    }
}
#[test]
fn holds_a_foreign_manifest_and_chunks_are_never_served() {
    // The other blob's manifest and chunks (same sizes) put under this digest's keys.
    tamper_case("foreign", |p, k, d, other| {
        let ok = format!("cachefs:blob:{}", other.hex());
        for suffix in ["0", "1", "2", "manifest"] {
            cli(p, &["COPY", &format!("{ok}:{suffix}"), &format!("{k}:{suffix}"), "REPLACE"]);
        }
        let m = cli(p, &["GET", &format!("{k}:manifest")]);
        let m = m.trim().replace(&other.hex(), &d.hex());
        cli(p, &["SET", &format!("{k}:manifest"), &m]);
    });
}
#[test]
fn holds_chunks_without_a_manifest_are_a_miss() {
    tamper_case("no manifest", |p, k, _, _| {
        cli(p, &["DEL", &format!("{k}:manifest")]);
    });
}

#[test]
fn holds_ttl_applies_to_every_key_and_the_manifest_expires_last() {
    let r = Redis::start(&[]);
    let o = tempfile::tempdir().unwrap();
    let d = put(o.path(), &content(40, 9 << 20));
    let disk = tempfile::tempdir().unwrap();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .remote(RedisTier::builder(&r.url()).ttl(Some(Duration::from_secs(1000))).key_prefix("pfx").build().unwrap())
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    s.fill(&d).unwrap();
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    let keys = scan(r.port);
    assert_eq!(keys.len(), 4, "{keys:?}");
    let mut chunk_max = 0i64;
    let mut manifest = 0i64;
    for k in &keys {
        assert!(k.starts_with("pfx:"), "{k}");
        // PEXPIRETIME (absolute, ms): comparable across keys read one after another
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let pttl: i64 = r.cli(&["PEXPIRETIME", k]).trim().parse::<i64>().unwrap() - now_ms;
        assert!(pttl > 900_000 && pttl <= 1_000_000, "{k} pttl {pttl}");
        let pttl: i64 = r.cli(&["PEXPIRETIME", k]).trim().parse().unwrap();
        if k.ends_with(":manifest") {
            manifest = pttl;
        } else {
            chunk_max = chunk_max.max(pttl);
        }
    }
    assert!(manifest >= chunk_max, "manifest {manifest} expires before a chunk {chunk_max}");
}

#[test]
fn holds_config_errors_are_typed() {
    for url in [
        "",
        "redis:/x",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
        "redis://[::1",
        "redis://127.0.0.1:6379/notadb",
    ] {
        let r =
            std::panic::catch_unwind(|| RedisTier::builder(url).build()).unwrap_or_else(|_| panic!("panic on {url:?}"));
        assert!(matches!(r, Err(Error::Config { .. })), "{url:?}: {r:?}");
    }
    assert!(matches!(RedisTier::cluster_builder(Vec::<String>::new()).build(), Err(Error::Config { .. })));
    for cs in [0u64, (64 << 20) + 1, u64::MAX] {
        assert!(
            matches!(RedisTier::builder("redis://127.0.0.1:1").chunk_size(cs).build(), Err(Error::Config { .. })),
            "chunk {cs}"
        );
    }
    assert!(RedisTier::builder("redis://127.0.0.1:1").chunk_size(1).build().is_ok());
    assert!(RedisTier::builder("redis://127.0.0.1:1").chunk_size(64 << 20).build().is_ok());
}

// ---------------------------------------------------------------- failures

fn timed_fills(s: &TieredStore, ds: &[Digest], limit: Duration) -> Vec<Duration> {
    ds.iter()
        .map(|d| {
            let t = Instant::now();
            s.fill(d).unwrap();
            let e = t.elapsed();
            assert!(e < limit, "a fill took {e:?} (limit {limit:?}), stats {:?}", s.stats());
            e
        })
        .collect()
}

#[test]
fn holds_a_redis_that_accepts_and_never_answers_costs_one_budget_and_opens_the_breaker() {
    let silent = Silent::start();
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..10).map(|i| put(o.path(), &content(50 + i, 100_000))).collect();
    let disk = tempfile::tempdir().unwrap();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .remote(RedisTier::builder(&silent.url()).timeout(Duration::from_millis(300)).build().unwrap())
        .origin(DirOrigin::new(o.path()))
        .breaker(3, Duration::from_secs(60))
        .build()
        .unwrap();
    let times = timed_fills(&s, &ds, Duration::from_millis(1500));
    eprintln!("fill times against a silent Redis: {times:?}");
    let st = s.stats();
    assert_eq!(st.origin_fetches, 10);
    assert!(st.breaker_opened >= 1, "{st:?}");
    assert_eq!(st.breaker, BreakerState::Open);
    assert!(st.remote_skipped >= 5, "{st:?}");
    assert!(times[5..].iter().all(|t| *t < Duration::from_millis(200)), "breaker open, yet slow: {times:?}");
    let t = Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_secs(3), "drop took {:?}", t.elapsed());
}

/// "remote_errors: Remote calls that failed (connection, time budget, protocol): each also counts towards
/// the breaker." A Redis answering every command with an error reply (here -NOAUTH: a real Redis whose
/// password the store does not know, as after a password rotation) is a failing tier, not a store of
/// invalid copies.
#[test]
fn redis_error_replies_are_failures_and_open_the_breaker() {
    let r = Redis::start(&["--requirepass", "sekrit"]);
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..8).map(|i| put(o.path(), &content(60 + i, 50_000))).collect();
    let (_disk, s) = fresh(&r.url(), Some(o.path()));
    timed_fills(&s, &ds, Duration::from_millis(1000));
    let st = s.stats();
    assert_eq!(st.origin_fetches, 8);
    eprintln!(
        "NOAUTH: remote_errors {} remote_invalid {} breaker_opened {} upload_errors {}",
        st.remote_errors, st.remote_invalid, st.breaker_opened, st.upload_errors
    );
    // Failures, not invalid copies; reads and uploads both count towards the breaker, which opens at 5.
    assert!(
        st.remote_invalid == 0 && st.remote_errors + st.upload_errors >= 5 && st.breaker_opened >= 1,
        "8 reads against a Redis answering -NOAUTH: {st:?}"
    );
}

#[test]
fn redis_err_replies_open_the_breaker() {
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..8).map(|i| put(o.path(), &content(60 + i, 50_000))).collect();
    let e = ErrServer::start("-ERR injected failure\r\n");
    let (_disk, s) = fresh(&e.url(), Some(o.path()));
    timed_fills(&s, &ds, Duration::from_millis(1000));
    let st = s.stats();
    eprintln!(
        "-ERR: remote_errors {} remote_invalid {} breaker_opened {}",
        st.remote_errors, st.remote_invalid, st.breaker_opened
    );
    assert!(st.remote_invalid == 0 && st.remote_errors + st.upload_errors >= 5 && st.breaker_opened >= 1, "{st:?}");
}

#[test]
fn holds_a_redis_answering_garbage_falls_back_to_the_origin_in_time() {
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..8).map(|i| put(o.path(), &content(60 + i, 50_000))).collect();
    for reply in [
        "%%%garbage\r\n",
        "$9999999999999\r\n",
        "+OK\r\n",
        ":1\r\n",
        "$-1\r\n",
        "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
        "$5\r\nab",
    ] {
        let g = ErrServer::start(reply);
        let (_disk, s) = fresh(&g.url(), Some(o.path()));
        let mut fills = Vec::new();
        for d in &ds {
            let t = Instant::now();
            let r = s.fill(d);
            fills.push(t.elapsed());
            assert_eq!(r.unwrap_or_else(|e| panic!("reply {reply:?}: {e}")), Source::Origin, "reply {reply:?}");
        }
        assert!(fills.iter().all(|t| *t < Duration::from_millis(1500)), "reply {reply:?}: {fills:?}");
        let st = s.stats();
        eprintln!(
            "reply {reply:?}: errors {} invalid {} misses {} breaker_opened {} fills {fills:?}",
            st.remote_errors, st.remote_invalid, st.remote_misses, st.breaker_opened
        );
        drop(s);
    }
}

#[test]
fn holds_redis_killed_mid_read_completes_from_the_origin() {
    let r = Redis::start(&[]);
    let o = tempfile::tempdir().unwrap();
    let bytes = content(70, 64 << 20);
    let d = put(o.path(), &bytes);
    let mk = || {
        let disk = tempfile::tempdir().unwrap();
        let s = TieredStore::builder()
            .disk_dir(disk.path())
            .remote(
                RedisTier::builder(&r.url()).timeout(Duration::from_millis(300)).chunk_size(1 << 20).build().unwrap(),
            )
            .origin(DirOrigin::new(o.path()))
            .build()
            .unwrap();
        (disk, s)
    };
    let (_d1, a) = mk();
    a.fill(&d).unwrap();
    assert!(a.wait_for_uploads(Duration::from_secs(30)));
    let (_d2, b) = mk();
    let redis = std::sync::Mutex::new(Some(r));
    let killed_at = std::sync::Mutex::new(None);
    let t = Instant::now();
    let src = b
        .fill_with_progress(&d, &|p| {
            if p.source == Source::Remote
                && p.received >= 16 << 20
                && let Some(mut r) = redis.lock().unwrap().take()
            {
                r.kill();
                *killed_at.lock().unwrap() = Some(p.received);
            }
        })
        .unwrap();
    let took = t.elapsed();
    assert!(killed_at.lock().unwrap().is_some(), "redis never killed: progress not reported from Remote");
    assert_eq!(src, Source::Origin);
    assert!(read_all(&b, &d) == bytes);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let st = b.stats();
    assert_eq!(st.origin_fetches, 1);
    assert!(st.remote_errors >= 1, "{st:?}");
}

#[test]
fn holds_the_breaker_closes_when_redis_is_back() {
    let silent = Silent::start();
    let port = silent.port;
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..12).map(|i| put(o.path(), &content(80 + i, 20_000))).collect();
    let disk = tempfile::tempdir().unwrap();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .remote(
            RedisTier::builder(&format!("redis://127.0.0.1:{port}"))
                .timeout(Duration::from_millis(200))
                .build()
                .unwrap(),
        )
        .origin(DirOrigin::new(o.path()))
        .breaker(2, Duration::from_millis(1500))
        .build()
        .unwrap();
    timed_fills(&s, &ds[..4], Duration::from_millis(1000));
    assert_eq!(s.stats().breaker, BreakerState::Open);
    drop(silent);
    let r = Redis::start_on(port, &[]);
    std::thread::sleep(Duration::from_millis(1700));
    timed_fills(&s, &ds[4..8], Duration::from_millis(1000));
    let st = s.stats();
    assert_eq!(st.breaker, BreakerState::Closed, "{st:?}");
    assert!(st.remote_misses >= 1, "{st:?}");
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    assert!(s.stats().uploads >= 3, "{:?}", s.stats());
    // another store now gets them from Redis
    let (_d, b) = fresh(&r.url(), None);
    assert_eq!(b.fill(&ds[7]).unwrap(), Source::Remote);
}

/// A remote whose GETs miss at once and whose PUTs take a second: isolates the upload queue.
#[derive(Debug)]
struct SlowPut(std::sync::atomic::AtomicU64);
impl cachefs::tier::RemoteTier for SlowPut {
    fn get(&self, _d: &Digest, _s: &mut cachefs::tier::BlobSink<'_>) -> Result<cachefs::tier::RemoteGet, Error> {
        Ok(cachefs::tier::RemoteGet::Miss)
    }
    fn put(&self, _d: &Digest, _size: u64, blob: &mut dyn Read) -> Result<(), Error> {
        let mut v = Vec::new();
        blob.read_to_end(&mut v).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn holds_a_full_upload_queue_drops_and_counts_and_never_blocks_a_reader() {
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..20).map(|i| put(o.path(), &content(90 + i, 10_000))).collect();
    let disk = tempfile::tempdir().unwrap();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .remote(SlowPut(Default::default()))
        .upload_queue(2)
        .upload_threads(1)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    let t = Instant::now();
    timed_fills(&s, &ds, Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let st = s.stats();
    assert!(st.upload_queue <= 2, "{st:?}");
    assert!(st.uploads_dropped >= 17, "{st:?}");
    let t = Instant::now();
    assert!(!s.wait_for_uploads(Duration::from_millis(300)));
    assert!(t.elapsed() < Duration::from_millis(800), "wait_for_uploads overran its timeout: {:?}", t.elapsed());
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    let st = s.stats();
    assert_eq!(st.uploads + st.uploads_dropped + st.upload_errors, 20, "{st:?}");
    assert_eq!(st.upload_queue, 0);
}

#[test]
fn holds_redis_paused_for_writes_never_blocks_readers() {
    let r = Redis::start(&[]);
    let o = tempfile::tempdir().unwrap();
    let ds: Vec<Digest> = (0..20).map(|i| put(o.path(), &content(120 + i, 200_000))).collect();
    let disk = tempfile::tempdir().unwrap();
    let s = TieredStore::builder()
        .disk_dir(disk.path())
        .remote(RedisTier::builder(&r.url()).timeout(Duration::from_millis(500)).build().unwrap())
        .upload_queue(2)
        .origin(DirOrigin::new(o.path()))
        .build()
        .unwrap();
    r.cli(&["CLIENT", "PAUSE", "4000", "WRITE"]);
    let t = Instant::now();
    timed_fills(&s, &ds, Duration::from_millis(800));
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(s.wait_for_uploads(Duration::from_secs(15)));
    let st = s.stats();
    assert_eq!(st.uploads + st.uploads_dropped + st.upload_errors, 20, "{st:?}");
    assert!(st.uploads_dropped >= 1, "{st:?}");
    // whatever was uploaded reads back whole
    let (_d, b) = fresh(&r.url(), None);
    for d in &ds {
        if let Ok(src) = b.fill(d) {
            assert_eq!(src, Source::Remote);
        }
    }
    assert_eq!(b.stats().remote_invalid, 0, "{:?}", b.stats());
}
