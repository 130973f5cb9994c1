//! The Redis remote tier against real servers: one `redis-server`, and a 3-node Redis Cluster made with
//! `redis-cli --cluster create`, each started on free loopback ports and stopped when the test ends.
#![cfg(feature = "redis")]

mod tier_support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use cachefs::tier::{BlobSink, BreakerState, Digest, DirOrigin, RedisTier, RemoteGet, RemoteTier, TieredStore};
use tier_support::{RedisCluster, RedisServer, bytes, put_origin};

const BUDGET: Duration = Duration::from_millis(200);

fn redis(url: &str) -> RedisTier {
    RedisTier::builder(url).timeout(BUDGET).chunk_size(256 << 10).build().unwrap()
}

fn store(disk: &Path, remote: RedisTier, origin: &Path) -> TieredStore {
    TieredStore::builder()
        .disk_dir(disk)
        .remote(remote)
        .origin(DirOrigin::new(origin))
        .breaker(3, Duration::from_millis(300))
        .build()
        .unwrap()
}

fn read_all(store: &TieredStore, d: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(d).unwrap().read_to_end(&mut out).unwrap();
    out
}

/// The first store fills from the origin and uploads; a second store with an empty disk is served from
/// the remote tier and never asks the origin.
fn second_store_is_served_from_the_remote_tier(make: impl Fn() -> RedisTier) {
    let origin = tempfile::tempdir().unwrap();
    let blobs: Vec<Vec<u8>> = vec![bytes(1, 1_000_000), bytes(2, 256 << 10), bytes(3, 10), Vec::new()];
    let digests: Vec<Digest> = blobs.iter().map(|b| put_origin(origin.path(), b)).collect();
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = store(disk_a.path(), make(), origin.path());
    for d in &digests {
        a.fill(d).unwrap();
    }
    assert!(a.wait_for_uploads(Duration::from_secs(30)));
    let sa = a.stats();
    assert_eq!((sa.origin_fetches, sa.uploads, sa.upload_errors), (4, 4, 0), "{sa:?}");

    let b = store(disk_b.path(), make(), tempfile::tempdir().unwrap().path());
    for (d, blob) in digests.iter().zip(&blobs) {
        assert_eq!(&read_all(&b, d), blob);
    }
    let sb = b.stats();
    assert_eq!(sb.origin_fetches, 0, "served from the remote tier without touching the origin: {sb:?}");
    assert_eq!((sb.remote_hits, sb.remote_bytes), (4, blobs.iter().map(|b| b.len() as u64).sum()));
    assert_eq!(sb.uploads, 0, "what came from the remote tier is not uploaded back");
}

#[test]
fn a_second_store_is_served_from_redis_without_touching_the_origin() {
    let server = RedisServer::start();
    second_store_is_served_from_the_remote_tier(|| redis(&server.url()));
    assert!(server.command("DBSIZE").starts_with(":1"), "keys were written"); // :10 or more
}

#[test]
fn the_same_against_a_three_node_redis_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    second_store_is_served_from_the_remote_tier(|| {
        RedisTier::cluster_builder(&urls).timeout(Duration::from_secs(2)).chunk_size(64 << 10).build().unwrap()
    });
    let per_node = cluster.keys_per_node();
    assert!(per_node.iter().all(|&n| n > 0), "one blob's keys spread over every node: {per_node:?}");
}

/// Writes raw values into Redis the way a broken or hostile writer would.
fn set(server: &RedisServer, key: &str, value: &str) {
    let r = server.command(&format!("SET {key} \"{value}\""));
    assert!(r.starts_with("+OK"), "{r}");
}

#[test]
fn incomplete_or_inconsistent_remote_copies_are_treated_as_absent() {
    let server = RedisServer::start();
    let tier = RedisTier::builder(&server.url()).timeout(BUDGET).chunk_size(4).build().unwrap();
    let content = b"0123456789".to_vec(); // chunks "0123" "4567" "89"
    let d = Digest::of(&content);
    let key = |part: &str| format!("cachefs:blob:{}:{part}", d.hex());
    let get = |tier: &RedisTier| {
        let mut out = Vec::new();
        let r = tier.get(&d, &mut sink(&mut out)).map_err(|e| e.to_string());
        (r, out)
    };
    assert_eq!(get(&tier).0.unwrap(), RemoteGet::Miss);
    tier.put(&d, 10, &mut &content[..]).unwrap();
    assert_eq!(get(&tier), (Ok(RemoteGet::Hit), content.clone()));

    let manifest = format!("cachefs-blob v1 size=10 chunk_size=4 chunks=3 digest={d}");
    type Breakage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("half-written manifest", Box::new(|| set(&server, &key("manifest"), "cachefs-blob v1 size=10 chu"))),
        (
            "manifest says more chunks",
            Box::new(|| set(&server, &key("manifest"), &manifest.replace("chunks=3", "chunks=4"))),
        ),
        (
            "manifest of the wrong size",
            Box::new(|| set(&server, &key("manifest"), &manifest.replace("size=10", "size=11"))),
        ),
        (
            "manifest of another digest",
            Box::new(|| set(&server, &key("manifest"), &manifest.replace(&d.hex(), &Digest::of(b"x").hex()))),
        ),
        ("missing chunk", Box::new(|| drop(server.command(&format!("DEL {}", key("1")))))),
        ("short chunk", Box::new(|| set(&server, &key("1"), "456"))),
        ("long chunk", Box::new(|| set(&server, &key("2"), "89A"))),
        (
            "manifest of the wrong type",
            Box::new(|| {
                server.command(&format!("DEL {}", key("manifest")));
                server.command(&format!("RPUSH {} a b", key("manifest")));
            }),
        ),
        (
            "chunk of the wrong type",
            Box::new(|| {
                server.command(&format!("DEL {}", key("0")));
                server.command(&format!("HSET {} a b", key("0")));
            }),
        ),
        ("integer-looking manifest", Box::new(|| set(&server, &key("manifest"), "12"))),
    ];
    for (what, break_it) in cases {
        tier.put(&d, 10, &mut &content[..]).unwrap();
        break_it();
        match get(&tier).0 {
            Ok(RemoteGet::Invalid { reason }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }

    // Through a store: the invalid copy is skipped, the origin serves, the upload repairs Redis.
    let origin = tempfile::tempdir().unwrap();
    put_origin(origin.path(), &content);
    tier.put(&d, 10, &mut &content[..]).unwrap();
    set(&server, &key("2"), "8X"); // the right length, the wrong bytes
    let disk = tempfile::tempdir().unwrap();
    let s = store(disk.path(), RedisTier::builder(&server.url()).chunk_size(4).build().unwrap(), origin.path());
    assert_eq!(read_all(&s, &d), content, "a copy whose bytes do not hash to the digest is never kept");
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    let st = s.stats();
    assert_eq!((st.remote_invalid, st.origin_fetches, st.uploads, st.remote_errors), (1, 1, 1, 0), "{st:?}");
    assert_eq!(get(&tier), (Ok(RemoteGet::Hit), content.clone()), "the upload replaced the bad copy");
}

fn sink(out: &mut Vec<u8>) -> BlobSink<'_> {
    BlobSink::new(out)
}

#[test]
fn a_dead_redis_and_a_silent_listener_cost_each_read_at_most_its_budget_then_the_breaker_opens_and_recovers() {
    let mut server = RedisServer::start();
    let origin = tempfile::tempdir().unwrap();
    let blobs: Vec<Digest> = (0..12).map(|i| put_origin(origin.path(), &bytes(100 + i, 50_000))).collect();
    let disk = tempfile::tempdir().unwrap();
    let s = store(disk.path(), redis(&server.url()), origin.path());
    s.fill(&blobs[0]).unwrap();
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    assert_eq!(s.stats().uploads, 1);

    server.kill();
    let timed_fill = |d: &Digest| {
        let started = Instant::now();
        let source = s.fill(d).unwrap();
        (source, started.elapsed())
    };
    for d in &blobs[1..6] {
        let (_, took) = timed_fill(d);
        assert!(took <= BUDGET + Duration::from_millis(50), "read took {took:?} with Redis dead");
    }
    let st = s.stats();
    assert_eq!(st.breaker, BreakerState::Open, "{st:?}");
    // Reads and background uploads both count towards the breaker.
    assert!(st.remote_errors + st.upload_errors >= 3, "{st:?}");
    assert!(st.breaker_opened >= 1 && st.remote_skipped >= 1, "{st:?}");

    // Redis returns (empty): after the cool-down a probe closes the breaker; fills use Redis again.
    server.restart();
    std::thread::sleep(Duration::from_millis(350));
    s.fill(&blobs[6]).unwrap();
    assert!(s.wait_for_uploads(Duration::from_secs(10)));
    let st = s.stats();
    assert_eq!(st.breaker, BreakerState::Closed, "{st:?}");
    let disk2 = tempfile::tempdir().unwrap();
    let s2 = store(disk2.path(), redis(&server.url()), tempfile::tempdir().unwrap().path());
    s2.fill(&blobs[6]).unwrap();
    assert_eq!((s2.stats().remote_hits, s2.stats().origin_fetches), (1, 0), "reads recovered");

    // A listener that accepts and never answers (its connections are held open until the test ends).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    let disk3 = tempfile::tempdir().unwrap();
    let s3 = store(disk3.path(), redis(&url), origin.path());
    for d in &blobs[7..12] {
        let started = Instant::now();
        s3.fill(d).unwrap();
        let took = started.elapsed();
        assert!(took <= BUDGET + Duration::from_millis(50), "read took {took:?} against a silent server");
    }
    let st = s3.stats();
    assert_eq!((st.breaker, st.origin_fetches), (BreakerState::Open, 5), "{st:?}");
    assert!(accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1, "the store did connect to the silent listener");
}

/// A "Redis" that answers every command with `reply`, to see what the tier makes of replies a real
/// server would not send to a GET.
fn fake_redis(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 65536];
                while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
                    if n == 0 || std::io::Write::write_all(&mut conn, reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

#[test]
fn replies_of_the_wrong_type_are_invalid_copies_and_error_replies_or_garbage_are_remote_errors() {
    let d = Digest::of(b"x");
    let get = |url: &str| {
        let tier = RedisTier::builder(url).timeout(BUDGET).build().unwrap();
        let mut out = Vec::new();
        tier.get(&d, &mut BlobSink::new(&mut out))
    };
    for reply in [&b":42\r\n"[..], b"*1\r\n$1\r\na\r\n", b"+OK\r\n"] {
        let url = fake_redis(reply);
        assert!(
            matches!(get(&url), Ok(RemoteGet::Invalid { .. })),
            "{:?}: {:?}",
            String::from_utf8_lossy(reply),
            get(&url)
        );
    }
    // An error reply is the server failing (it counts towards the breaker), as is garbage.
    let failing = fake_redis(b"-ERR no such thing\r\n");
    assert!(matches!(get(&failing), Err(cachefs::tier::Error::Remote { .. })), "{:?}", get(&failing));
    let garbage = fake_redis(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    assert!(matches!(get(&garbage), Err(cachefs::tier::Error::Remote { .. })));
    // A store over the garbage server still serves from the origin.
    let origin = tempfile::tempdir().unwrap();
    let content = bytes(7, 1000);
    let d = put_origin(origin.path(), &content);
    let disk = tempfile::tempdir().unwrap();
    let s = store(disk.path(), RedisTier::builder(&garbage).timeout(BUDGET).build().unwrap(), origin.path());
    assert_eq!(read_all(&s, &d), content);
    assert_eq!(s.stats().remote_errors, 1);
}
