//! Hostile tests of `cachefs::tier::OciOrigin` against a real docker-registry (distribution 2.8) behind a
//! fault-injecting proxy, written from the public documentation only. See FINDINGS_TIER.md.
#![cfg(all(feature = "tier", feature = "oci"))]

mod hostile_tier_common;

use std::io::Read;
use std::time::{Duration, Instant};

use cachefs::tier::{Digest, Error, OciOrigin, Source, TieredStore};
use hostile_tier_common::*;

const REPO: &str = "team/app";

fn read_all(s: &TieredStore, d: &Digest) -> Vec<u8> {
    let mut b = s.open(d).unwrap();
    let mut v = Vec::new();
    b.read_to_end(&mut v).unwrap();
    v
}

struct Env {
    _reg: Registry,
    proxy: Proxy,
    disk: tempfile::TempDir,
}

fn env() -> Env {
    let reg = Registry::start();
    let proxy = Proxy::start(reg.port);
    Env { _reg: reg, proxy, disk: tempfile::tempdir().unwrap() }
}

impl Env {
    fn push(&self, bytes: &[u8]) -> Digest {
        self._reg.push(REPO, bytes).parse().unwrap()
    }
    fn store(&self, origin: OciOrigin, gzip: bool) -> TieredStore {
        TieredStore::builder().disk_dir(self.disk.path()).origin(origin).origin_gzip(gzip).build().unwrap()
    }
    fn origin(&self) -> OciOrigin {
        OciOrigin::builder(&self.proxy.base(), REPO).timeout(Duration::from_secs(2)).build().unwrap()
    }
}

#[test]
fn holds_plain_and_gzip_layers_from_a_real_registry() {
    let e = env();
    let plain = content(1, 5 << 20);
    let d = e.push(&plain);
    let layer = content(2, 7 << 20);
    let diff_id = Digest::of(&layer);
    let blob = e.push(&gzip(&layer));
    let origin = e.origin();
    origin.layer(diff_id, blob);
    let s = e.store(origin.clone(), true);
    assert_eq!(s.fill(&diff_id).unwrap(), Source::Origin);
    assert!(read_all(&s, &diff_id) == layer);
    assert_eq!(s.stats().origin_bytes, gzip(&layer).len() as u64);
    drop(s);
    // without gzip, the plain blob by its own digest
    let disk2 = tempfile::tempdir().unwrap();
    let s = TieredStore::builder().disk_dir(disk2.path()).origin(e.origin()).build().unwrap();
    assert!(read_all(&s, &d) == plain);
    // missing blob: NotFound; missing repository: NotFound
    assert!(s.fill(&Digest::of(b"absent")).unwrap_err().is_not_found());
    let disk3 = tempfile::tempdir().unwrap();
    let s3 = TieredStore::builder()
        .disk_dir(disk3.path())
        .origin(OciOrigin::builder(&e.proxy.base(), "no/such").build().unwrap())
        .build()
        .unwrap();
    assert!(s3.fill(&d).unwrap_err().is_not_found());
}

#[test]
fn holds_registry_500_and_404_are_typed_and_nothing_is_stored() {
    let e = env();
    let d = e.push(&content(3, 100_000));
    let s = e.store(e.origin(), false);
    for code in [500u16, 502, 503, 401, 403, 429] {
        e.proxy.set(ProxyMode { status: Some(code), ..Default::default() });
        let t = Instant::now();
        let r = s.fill(&d);
        assert!(matches!(r, Err(Error::Origin { .. })), "{code}: {r:?}");
        assert!(!r.unwrap_err().to_string().is_empty());
        assert!(t.elapsed() < Duration::from_secs(20), "{code}: {:?}", t.elapsed());
        assert!(!s.contains(&d));
    }
    e.proxy.set(ProxyMode { status: Some(404), ..Default::default() });
    assert!(s.fill(&d).unwrap_err().is_not_found());
    e.proxy.set(ProxyMode::default());
    assert_eq!(s.fill(&d).unwrap(), Source::Origin);
}

#[test]
fn holds_a_connection_cut_mid_blob_is_resumed_with_range() {
    let e = env();
    let bytes = content(4, 16 << 20);
    let d = e.push(&bytes);
    let s = e.store(e.origin(), false);
    e.proxy.set(ProxyMode { cut_after: Some(5 << 20), cuts: 1, ..Default::default() });
    assert_eq!(s.fill(&d).unwrap(), Source::Origin);
    assert!(read_all(&s, &d) == bytes);
    let gets = e.proxy.blob_gets();
    eprintln!("blob GETs: {gets:?}");
    assert!(gets.len() >= 2, "{gets:?}");
    let resumed = gets[1].1.as_deref().unwrap_or("");
    assert!(resumed.starts_with("bytes=") && resumed != "bytes=0-", "second GET had Range {resumed:?}");
    let from: u64 =
        resumed.trim_start_matches("bytes=").trim_end_matches('-').split('-').next().unwrap().parse().unwrap();
    assert!(from > 0 && from <= 5 << 20, "{from}");
    assert_eq!(s.stats().origin_bytes, 16 << 20, "bytes received, once each");
}

#[test]
fn holds_a_gzip_layer_cut_many_times_is_resumed() {
    let e = env();
    let layer = content(5, 24 << 20);
    let diff_id = Digest::of(&layer);
    let gz = gzip(&layer);
    let blob = e.push(&gz);
    let origin = e.origin();
    origin.layer(diff_id, blob);
    let s = e.store(origin, true);
    // every connection gives 3 MiB then dies: progress each time, so it must finish
    e.proxy.set(ProxyMode { cut_after: Some(3 << 20), cuts: u32::MAX, ..Default::default() });
    let t = Instant::now();
    let r = s.fill(&diff_id);
    e.proxy.set(ProxyMode::default());
    assert!(r.is_ok(), "{r:?} after {} GETs", e.proxy.blob_gets().len());
    assert!(read_all(&s, &diff_id) == layer);
    assert!(t.elapsed() < Duration::from_secs(30));
    eprintln!("{} GETs for {} compressed bytes", e.proxy.blob_gets().len(), gz.len());
}

#[test]
fn holds_no_progress_gives_up_after_max_retries() {
    let e = env();
    let d = e.push(&content(6, 1 << 20));
    let s = e.store(
        OciOrigin::builder(&e.proxy.base(), REPO).max_retries(3).timeout(Duration::from_secs(2)).build().unwrap(),
        false,
    );
    e.proxy.set(ProxyMode { cut_after: Some(0), cuts: u32::MAX, ..Default::default() });
    let t = Instant::now();
    let r = s.fill(&d);
    assert!(matches!(r, Err(Error::Origin { .. })), "{r:?}");
    let n = e.proxy.blob_gets().len();
    assert!((3..=4).contains(&n), "{n} GETs with max_retries(3)");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(!s.contains(&d));
}

/// "an OCI registry over the distribution API with `Range` resumption". A server that ignores `Range`
/// answers 200 with the whole blob (RFC 9110 §14.2 allows it); the resumed fill must still be right.
#[test]
fn holds_a_registry_ignoring_range_still_gives_the_right_blob() {
    let e = env();
    let bytes = content(7, 12 << 20);
    let d = e.push(&bytes);
    let s = e.store(e.origin(), false);
    e.proxy.set(ProxyMode { cut_after: Some(5 << 20), cuts: 1, ignore_range: true, ..Default::default() });
    let r = s.fill(&d);
    eprintln!("blob GETs: {:?}", e.proxy.blob_gets());
    assert!(r.is_ok(), "{r:?}");
    assert!(read_all(&s, &d) == bytes);
}

#[test]
fn holds_a_registry_ignoring_range_with_gzip() {
    let e = env();
    let layer = content(8, 12 << 20);
    let diff_id = Digest::of(&layer);
    let blob = e.push(&gzip(&layer));
    let origin = e.origin();
    origin.layer(diff_id, blob);
    let s = e.store(origin, true);
    e.proxy.set(ProxyMode { cut_after: Some(4 << 20), cuts: 1, ignore_range: true, ..Default::default() });
    let r = s.fill(&diff_id);
    assert!(r.is_ok(), "{r:?}");
    assert!(read_all(&s, &diff_id) == layer);
}

#[test]
fn holds_a_registry_that_stalls_mid_blob_is_resumed_after_the_timeout() {
    let e = env();
    let bytes = content(9, 8 << 20);
    let d = e.push(&bytes);
    let s =
        e.store(OciOrigin::builder(&e.proxy.base(), REPO).timeout(Duration::from_millis(800)).build().unwrap(), false);
    e.proxy.set(ProxyMode { hang_after: Some(3 << 20), cuts: 1, ..Default::default() });
    let t = Instant::now();
    let r = s.fill(&d);
    let took = t.elapsed();
    assert!(r.is_ok(), "{r:?}");
    assert!(read_all(&s, &d) == bytes);
    assert!(took < Duration::from_secs(5), "stalled for {took:?} with an 800 ms timeout");
    let gets = e.proxy.blob_gets();
    assert!(gets.len() >= 2 && gets[1].1.is_some(), "{gets:?}");
}

#[test]
fn holds_bearer_token_is_sent_and_bad_urls_are_config_errors() {
    let e = env();
    let d = e.push(&content(10, 1000));
    let s = e.store(OciOrigin::builder(&e.proxy.base(), REPO).bearer_token("tok123").build().unwrap(), false);
    s.fill(&d).unwrap();
    let log = e.proxy.log.lock().unwrap().clone();
    assert!(log.iter().filter(|l| l.1.contains("/blobs/")).all(|l| l.3.as_deref() == Some("Bearer tok123")), "{log:?}");
    for (base, repo) in [
        ("", REPO),
        ("ftp://x", REPO),
        ("registry.internal", REPO),
        ("http://", REPO),
        ("http://h", ""),
        ("http://h", "../x"),
        ("http://h", "UPPER/case"),
        ("http://h", "a b"),
    ] {
        let r = std::panic::catch_unwind(|| OciOrigin::builder(base, repo).build())
            .unwrap_or_else(|_| panic!("panic {base} {repo}"));
        assert!(matches!(r, Err(Error::Config { .. })), "{base:?} {repo:?}: {r:?}");
    }
}
