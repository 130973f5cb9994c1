//! The OCI registry origin against a real CNCF distribution registry (`docker-registry`) on a free
//! loopback port: blobs pushed with the distribution API (POST, then PUT with the digest) and read back
//! through a store. Connection failures the registry cannot produce on demand (a connection cut
//! mid-blob) come from a TCP proxy in front of it; statuses it never sends (500, a redirect loop, a short
//! body) from a minimal HTTP server.
#![cfg(feature = "oci")]

mod tier_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cachefs::tier::{Digest, Error, OciOrigin, Source, TieredStore};
use tier_support::{Registry, bytes, gzip};

fn store(origin: OciOrigin, gzip: bool) -> (TieredStore, tempfile::TempDir) {
    let disk = tempfile::tempdir().unwrap();
    let s = TieredStore::builder().disk_dir(disk.path()).origin(origin).origin_gzip(gzip).build().unwrap();
    (s, disk)
}

fn read_all(store: &TieredStore, d: &Digest) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(d).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn blobs_pushed_to_a_registry_are_read_back_through_the_store() {
    let registry = Registry::start();
    let blob = bytes(1, 3 << 20);
    let d = registry.push("team/app", &blob);
    let origin = OciOrigin::builder(&registry.url(), "team/app").build().unwrap();
    let (s, _disk) = store(origin.clone(), false);
    assert_eq!(read_all(&s, &d), blob);
    assert_eq!(s.fill(&d).unwrap(), Source::Disk);
    assert_eq!((s.stats().origin_fetches, s.stats().origin_bytes), (1, 3 << 20));

    // Absent from the registry: NotFound; another repository does not have it either.
    assert!(s.fill(&Digest::of(b"never pushed")).unwrap_err().is_not_found());
    let other = OciOrigin::builder(&registry.url(), "team/other").build().unwrap();
    let (s2, _d2) = store(other, false);
    assert!(s2.fill(&d).unwrap_err().is_not_found());
}

#[test]
fn a_gzip_layer_is_stored_decompressed_and_verified_against_its_content_digest() {
    let registry = Registry::start();
    let content = bytes(2, 2 << 20);
    let diff_id = Digest::of(&content);
    let layer = registry.push("img", &gzip(&content));
    let origin = OciOrigin::builder(&registry.url(), "img").build().unwrap();
    let (s, disk) = store(origin.clone(), true);
    assert!(s.fill(&diff_id).unwrap_err().is_not_found(), "without the layer map the registry has no such blob");
    origin.layer(diff_id, layer);
    assert_eq!(read_all(&s, &diff_id), content);
    assert_eq!(std::fs::read(disk.path().join(diff_id.file_name())).unwrap(), content);
}

/// A TCP proxy to `target`: the first connection is cut after `cut` bytes of response; the others pass
/// through. Records what clients sent.
struct CuttingProxy {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
}

impl CuttingProxy {
    fn start(target: u16, cut: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (sent2, connections2) = (sent.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let n = connections2.fetch_add(1, SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { return };
                let limit = if n == 0 { cut } else { usize::MAX };
                let (c2, s2, sent) = (client.try_clone().unwrap(), server.try_clone().unwrap(), sent2.clone());
                std::thread::spawn(move || pump(c2, s2, usize::MAX, Some(sent)));
                std::thread::spawn(move || pump(server, client, limit, None));
            }
        });
        CuttingProxy { port, sent, connections }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, limit: usize, record: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 16 << 10];
    let mut done = 0;
    while done < limit {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n.min(limit - done),
        };
        if let Some(r) = &record {
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        done += n;
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[test]
fn a_connection_dropped_mid_blob_is_resumed_with_a_range_request() {
    let registry = Registry::start();
    let blob = bytes(3, 4 << 20);
    let d = registry.push("resume", &blob);
    let proxy = CuttingProxy::start(registry.port, 1 << 20);
    let origin = OciOrigin::builder(&format!("http://127.0.0.1:{}", proxy.port), "resume").build().unwrap();
    let (s, _disk) = store(origin, false);
    assert_eq!(read_all(&s, &d), blob);
    let sent = String::from_utf8_lossy(&proxy.sent.lock().unwrap()).to_lowercase();
    let range = sent.lines().find(|l| l.starts_with("range: bytes=")).expect("a Range request after the cut");
    let from: u64 = range.trim_start_matches("range: bytes=").trim_end_matches('-').trim().parse().unwrap();
    assert!(from > 0 && from < 4 << 20, "resumed from byte {from}");
    assert!(proxy.connections.load(SeqCst) >= 2);
    let st = s.stats();
    assert_eq!((st.origin_fetches, st.origin_bytes), (1, 4 << 20), "resumption does not fetch twice");
}

/// A minimal HTTP server answering every request with `respond(n)` (n = request number).
fn http_server(respond: impl Fn(usize, &str) -> Vec<u8> + Send + 'static) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let count2 = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let n = count2.fetch_add(1, SeqCst);
            let _ = conn.write_all(&respond(n, &String::from_utf8_lossy(&head)));
            let _ = conn.shutdown(Shutdown::Both);
        }
    });
    (port, count)
}

fn origin_at(port: u16) -> OciOrigin {
    OciOrigin::builder(&format!("http://127.0.0.1:{port}"), "x")
        .max_retries(3)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[test]
fn hostile_registries_get_typed_errors_and_nothing_is_stored() {
    let blob = bytes(4, 100_000);
    let d = Digest::of(&blob);

    // 500 every time: retried (bounded), then an Origin error.
    let (port, count) = http_server(|_, _| b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec());
    let (s, _disk) = store(origin_at(port), false);
    assert!(matches!(s.fill(&d), Err(Error::Origin { .. })));
    assert_eq!(count.load(SeqCst), 4, "one try and three retries");

    // 401: not retried.
    let (port, count) = http_server(|_, _| b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec());
    let (s, _disk) = store(origin_at(port), false);
    let e = s.fill(&d).unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");
    assert_eq!(count.load(SeqCst), 1);

    // A body shorter than its Content-Length, every time: resumed until the retries run out.
    let body = blob.clone();
    let (port, _) = http_server(move |_, _| {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(&body[..1000]);
        r
    });
    let (s, disk) = store(origin_at(port), false);
    assert!(matches!(s.fill(&d), Err(Error::Origin { .. })));
    assert!(!s.contains(&d));
    let temps = std::fs::read_dir(disk.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name() != ".lock").count();
    assert_eq!(temps, 0, "nothing left behind");

    // A server that ignores Range and cuts the first answer: the resumed 200 is skipped to the offset.
    let body = blob.clone();
    let (port, _) = http_server(move |n, _| {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(if n == 0 { &body[..30_000] } else { &body });
        r
    });
    let (s, _disk) = store(origin_at(port), false);
    assert_eq!(read_all(&s, &d), blob);

    // A 206 that starts at the wrong place is refused.
    let body = blob.clone();
    let (port, _) = http_server(move |n, _| {
        if n == 0 {
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            r.extend_from_slice(&body[..500]);
            r
        } else {
            let mut r = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-99999/100000\r\nContent-Length: 100000\r\n\r\n".to_vec();
            r.extend_from_slice(&body);
            r
        }
    });
    let (s, _disk) = store(origin_at(port), false);
    let e = s.fill(&d).unwrap_err();
    assert!(e.to_string().contains("Content-Range"), "{e}");

    // Wrong bytes with a 200: a digest mismatch, never stored.
    let (port, _) = http_server(|_, _| b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec());
    let (s, _disk) = store(origin_at(port), false);
    assert!(matches!(s.fill(&d), Err(Error::DigestMismatch { .. })));
    assert!(!s.contains(&d));

    // Redirects are followed (to the real blob); a redirect loop ends in an error.
    let registry = Registry::start();
    let pushed = registry.push("x", &blob);
    let target = format!("{}/v2/x/blobs/{pushed}", registry.url());
    let (port, _) = http_server(move |_, _| {
        format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    let (s, _disk) = store(origin_at(port), false);
    assert_eq!(read_all(&s, &d), blob);
    let (port, _) = http_server(|_, head| {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        format!("HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    let (s, _disk) = store(origin_at(port), false);
    assert!(s.fill(&d).is_err());

    // Nobody listening.
    let dead = tier_support::free_port();
    let (s, _disk) = store(origin_at(dead), false);
    assert!(matches!(s.fill(&d), Err(Error::Origin { .. })));
}

/// A registry that streams an endless body without a `Content-Length` (and a gzip one that inflates
/// without end): the fill stops at the disk tier's bound with `TooLarge`, and leaves nothing on disk.
#[test]
fn an_endless_body_stops_at_the_disk_bound_and_leaves_nothing() {
    for gzip_origin in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                // Zeros until the client hangs up (bounded, so a broken client cannot keep this running).
                let chunk = if gzip_origin { gzip(&vec![0u8; 64 << 20]) } else { vec![0u8; 64 << 10] };
                let chunk = if gzip_origin { chunk[..chunk.len() / 2].to_vec() } else { chunk };
                let mut total = 0;
                while total < 1 << 30 && conn.write_all(&chunk).is_ok() {
                    total += chunk.len();
                    if gzip_origin {
                        break; // one long gzip member's first half: inflates to 32 MiB of zeros
                    }
                }
            }
        });
        let disk = tempfile::tempdir().unwrap();
        let s = TieredStore::builder()
            .disk_dir(disk.path())
            .disk_max_bytes(4 << 20)
            .origin(origin_at(port))
            .origin_gzip(gzip_origin)
            .build()
            .unwrap();
        let d = Digest::of(b"whatever");
        let r = s.fill(&d);
        assert!(matches!(r, Err(Error::TooLarge { max, .. }) if max == 4 << 20), "gzip {gzip_origin}: {r:?}");
        assert!(!s.contains(&d));
        let left: Vec<_> =
            std::fs::read_dir(disk.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != ".lock").collect();
        assert!(left.is_empty(), "nothing left behind: {left:?}");
    }
}
