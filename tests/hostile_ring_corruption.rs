//! Hostile corruption tests of `cachefs::ring`, from the public documentation only: bit flips
//! anywhere, truncation, zeroed pages, shards copied between rings or swapped, missing shards, edited
//! geometry, torn records. Every damaged record must be refused (Corrupt, or NotFound when the slot
//! no longer holds it), never served with wrong bytes; opens fail with typed errors, never a panic or
//! a signal. Each sweep runs in a child process so that a SIGBUS or abort is seen as such.
#![cfg(feature = "ring")]

mod hostile_ring_util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cachefs::ring::{Compression, Error, IoMode, ReadBatch, ReadOptions, RingBuffer, RingOptions};
use hostile_ring_util::*;

const CHILD: &str = "HOSTILE_RING_CHILD";
const MODES: [IoMode; 2] = [IoMode::Mmap, IoMode::Pread];

fn parent(child: &str) {
    let out = run_child(child, &[(CHILD, "1".into())], Duration::from_secs(120));
    assert_child_ok(child, &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CHILD-DONE"), "the child did not run its body:\n{text}");
    for l in text.lines().filter(|l| l.starts_with("NOTE")) {
        println!("{l}");
    }
}

fn is_child() -> bool {
    std::env::var(CHILD).is_ok()
}

fn done() {
    println!("CHILD-DONE");
}

/// What each id of a ring holds: id -> payload.
type Expected = BTreeMap<u64, Vec<u8>>;

/// Checks every id of `ids` on a handle: an Ok read must be exactly the expected payload (and an id
/// not in `expected` must never be Ok). Returns the errors seen, by kind.
fn check_handle(
    h: &RingBuffer,
    expected: &Expected,
    ids: impl Iterator<Item = u64>,
    what: &str,
) -> Vec<(u64, &'static str)> {
    let mut errs = Vec::new();
    let mut out = Vec::new();
    for id in ids {
        match h.read(id, &mut out) {
            Ok(n) => {
                assert_eq!(n, out.len());
                match expected.get(&id) {
                    Some(p) => assert!(
                        out == *p,
                        "{what}: id {id} served WRONG BYTES ({} bytes, expected {})",
                        out.len(),
                        p.len()
                    ),
                    None => panic!("{what}: id {id} was never written but was served {} bytes", out.len()),
                }
            }
            Err(e) => errs.push((id, kind(&e))),
        }
        if let Ok(g) = h.get(id) {
            assert_eq!(g.id(), id);
            assert!(expected.get(&id).is_some_and(|p| *p == *g), "{what}: get({id}) served wrong bytes");
        }
    }
    errs
}

fn check_batch(h: &RingBuffer, expected: &Expected, range: std::ops::Range<u64>, what: &str) {
    let mut b = ReadBatch::new();
    if h.read_many(range, &mut b).is_ok() {
        for (id, p) in b.iter() {
            assert!(expected.get(&id).is_some_and(|e| e == p), "{what}: read_many served wrong bytes for {id}");
        }
    }
    let _ = h.verify(|_, _| {});
}

/// A small one-lap ring: records 8 x 64, ids 100..=107, payload lengths 8..=40 (one empty: id 104).
fn small_ring(dir: &Path, compression: Compression) -> (PathBuf, Expected, RingOptions) {
    let path = dir.join("ring.dat");
    let o = RingOptions { compression, ..RingOptions::new(8, 64) };
    let ring = RingBuffer::open(&path, o.clone()).unwrap();
    let mut exp = Expected::new();
    for id in 100..108u64 {
        let p = if id == 104 {
            vec![]
        } else if compression == Compression::Lz4 && id % 2 == 0 {
            vec![id as u8; 200] // compressible, larger than the slot
        } else {
            payload(id, 7, 8 + (id as usize * 5) % 33)
        };
        ring.write(id, &p).unwrap();
        exp.insert(id, p);
    }
    ring.close().unwrap();
    (path, exp, o)
}

fn flip_sweep(compression: Compression) {
    let dir = tempfile::tempdir().unwrap();
    let (path, exp, o) = small_ring(dir.path(), compression);
    let pristine = std::fs::read(&path).unwrap();
    assert_eq!(pristine.len(), 4096 + 8 * 64);
    // Where each record's frame is: the payload found in the file, 24 bytes of header before it.
    let mut frames: BTreeMap<u64, (usize, usize)> = BTreeMap::new(); // id -> (frame start, frame len)
    if compression == Compression::None {
        for (&id, p) in &exp {
            let start = if p.is_empty() {
                4096 + (id % 8) as usize * 64
            } else {
                find(&pristine[4096..], p).expect("payload stored plainly") + 4096 - 24
            };
            assert_eq!((start - 4096) % 64, 0, "frame of {id} at {start}");
            assert_eq!((start - 4096) / 64, (id % 8) as usize, "slot of {id}");
            frames.insert(id, (start, 24 + p.len()));
        }
    }
    let (mut opened, mut refused, mut strict_violations) = (0u64, BTreeMap::<&str, u64>::new(), Vec::new());
    for bit in 0..pristine.len() * 8 {
        let mut bytes = pristine.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).unwrap();
        let mode = MODES[bit % 2];
        let what = format!("bit {bit} (byte {}) {mode:?} {compression:?}", bit / 8);
        match RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }) {
            Ok(ro) => {
                opened += 1;
                let before = ro.stats().crc_failures;
                let errs = check_handle(&ro, &exp, 90..120, &what);
                check_batch(&ro, &exp, 0..200, &what);
                // a flip inside a record's frame must make exactly that record Corrupt
                if bit / 8 >= 4096 {
                    for (&id, &(start, len)) in &frames {
                        let byte = bit / 8;
                        if byte >= start && byte < start + len {
                            let k = errs.iter().find(|(i, _)| *i == id).map(|(_, k)| *k);
                            if k != Some("Corrupt") {
                                strict_violations.push(format!("{what}: frame of {id} damaged, read gave {k:?}"));
                            }
                        }
                    }
                    let corrupt = errs.iter().filter(|(_, k)| *k == "Corrupt").count() as u64;
                    assert!(ro.stats().crc_failures - before >= corrupt, "{what}: Corrupt not counted");
                }
            }
            Err(e) => *refused.entry(kind(&e)).or_default() += 1,
        }
        // the writer's open (recovery) on the damaged file: typed error or a ring that serves no wrong bytes
        if bit % 7 == 0 {
            match RingBuffer::open(&path, RingOptions { mode, ..o.clone() }) {
                Ok(w) => {
                    check_handle(&w, &exp, 90..120, &format!("writer {what}"));
                    check_batch(&w, &exp, 0..200, &what);
                }
                Err(e) => {
                    let k = kind(&e);
                    assert!(
                        ["BadHeader", "GeometryMismatch", "UnsupportedVersion", "FileTooShort"].contains(&k),
                        "{what}: writer open: {e:?}"
                    );
                }
            }
        }
    }
    println!("NOTE {compression:?}: {opened} damaged files opened read-only, refused: {refused:?}");
    assert!(
        strict_violations.is_empty(),
        "{} frame flips not reported Corrupt, e.g.:\n{}",
        strict_violations.len(),
        strict_violations[..strict_violations.len().min(20)].join("\n")
    );
}

/// Every single-bit flip of a whole small ring (header page and all frames): no wrong bytes, no panic;
/// a flip inside a record's frame makes read report Corrupt.
#[test]
fn holds_every_bit_flip_detected() {
    parent("child_every_bit_flip_detected");
}

#[test]
#[ignore = "child"]
fn child_every_bit_flip_detected() {
    if !is_child() {
        return;
    }
    flip_sweep(Compression::None);
    done();
}

#[test]
fn holds_every_bit_flip_detected_lz4() {
    parent("child_every_bit_flip_detected_lz4");
}

#[test]
#[ignore = "child"]
fn child_every_bit_flip_detected_lz4() {
    if !is_child() {
        return;
    }
    flip_sweep(Compression::Lz4);
    done();
}

/// Truncation at every length: FileTooShort (or BadHeader inside the header page), never a signal.
#[test]
fn holds_truncation_every_offset() {
    parent("child_truncation_every_offset");
}

#[test]
#[ignore = "child"]
fn child_truncation_every_offset() {
    if !is_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, _exp, o) = small_ring(dir.path(), Compression::None);
    let pristine = std::fs::read(&path).unwrap();
    let len = pristine.len();
    for cut in 0..len {
        std::fs::write(&path, &pristine[..cut]).unwrap();
        for mode in MODES {
            let r = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() });
            let e = r.err().unwrap_or_else(|| panic!("truncated to {cut} of {len}: opened read-only"));
            if cut >= 4096 {
                assert!(
                    matches!(&e, Error::FileTooShort { expected, found, .. } if *expected == len as u64 && *found == cut as u64),
                    "cut {cut}: {e:?}"
                );
            } else {
                assert!(matches!(e, Error::FileTooShort { .. } | Error::BadHeader { .. }), "cut {cut}: {e:?}");
            }
            let e = match RingBuffer::open(&path, RingOptions { mode, ..o.clone() }) {
                // an empty file may be taken for a ring whose creation never started (no data is lost)
                Ok(_) if cut == 0 => {
                    std::fs::write(&path, b"").unwrap();
                    continue;
                }
                Ok(_) => panic!("truncated to {cut} of {len}: the writer opened it"),
                Err(e) => e,
            };
            if cut >= 4096 {
                assert!(matches!(e, Error::FileTooShort { .. }), "cut {cut}: writer: {e:?}");
            } else {
                assert!(matches!(e, Error::FileTooShort { .. } | Error::BadHeader { .. }), "cut {cut}: writer: {e:?}");
            }
            assert_eq!(std::fs::metadata(&path).unwrap().len(), cut as u64, "a refused open changed the file");
        }
    }
    // a later shard truncated or missing
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let o = RingOptions { shard_bytes: 4096 + 64 * 4, ..RingOptions::new(12, 64) };
    drop(RingBuffer::open(&path, o.clone()).unwrap());
    let s1 = dir.path().join("ring.dat.1");
    let full = std::fs::read(&s1).unwrap();
    for cut in [0, 1, 4095, 4096, full.len() - 64, full.len() - 1] {
        std::fs::write(&s1, &full[..cut]).unwrap();
        for mode in MODES {
            let e = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }).expect_err("opened");
            assert!(matches!(e, Error::FileTooShort { .. } | Error::BadHeader { .. }), "shard 1 cut {cut}: {e:?}");
            let e = RingBuffer::open(&path, RingOptions { mode, ..o.clone() }).expect_err("writer opened");
            assert!(matches!(e, Error::FileTooShort { .. } | Error::BadHeader { .. }), "shard 1 cut {cut}: {e:?}");
        }
    }
    std::fs::remove_file(&s1).unwrap();
    for mode in MODES {
        let e = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }).expect_err("opened");
        assert!(matches!(&e, Error::FileTooShort { found: 0, path, .. } if *path == s1), "missing shard 1: {e:?}");
        let e = RingBuffer::open(&path, RingOptions { mode, ..o.clone() }).expect_err("writer opened without shard 1");
        assert!(
            matches!(&e, Error::FileTooShort { found: 0, path, .. } if *path == s1),
            "missing shard 1, writer: {e:?}"
        );
        assert!(!s1.exists(), "the writer's open recreated a missing shard");
    }
    done();
}

/// Torn records: the slot of id 3 holds the first (or last) k bytes of its next-lap record 11 and the
/// rest of the old one, with the header of either state. Every k: no wrong bytes, no panic.
#[test]
fn holds_torn_records_every_offset() {
    parent("child_torn_records_every_offset");
}

#[test]
#[ignore = "child"]
fn child_torn_records_every_offset() {
    if !is_child() {
        return;
    }
    for mode in MODES {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.dat");
        let o = RingOptions { mode, ..RingOptions::new(8, 64) };
        let ring = RingBuffer::open(&path, o.clone()).unwrap();
        let mut old = Expected::new();
        for id in 0..8 {
            old.insert(id, payload(id, 1, 8 + id as usize * 4));
            ring.write(id, &old[&id]).unwrap();
        }
        ring.flush().unwrap();
        let s1 = std::fs::read(&path).unwrap();
        let mut new = Expected::new();
        for id in 8..12 {
            new.insert(id, payload(id, 2, 40 - id as usize));
            ring.write(id, &new[&id]).unwrap();
        }
        ring.close().unwrap();
        let s2 = std::fs::read(&path).unwrap();
        let mut all = old.clone();
        all.extend(new.clone());
        for slot in [2usize, 3] {
            let off = 4096 + slot * 64;
            for k in 0..=64 {
                for (base, other, suffix) in [(&s1, &s2, false), (&s2, &s1, false), (&s1, &s2, true), (&s2, &s1, true)]
                {
                    // torn: the slot holds k bytes (a prefix or a suffix) of the other state, the rest of base
                    let mut bytes = base.clone();
                    if !suffix {
                        bytes[off..off + k].copy_from_slice(&other[off..off + k]);
                    } else {
                        bytes[off + 64 - k..off + 64].copy_from_slice(&other[off + 64 - k..off + 64]);
                    }
                    std::fs::write(&path, &bytes).unwrap();
                    let what = format!("{mode:?} slot {slot} k {k} suffix {suffix}");
                    for m in MODES {
                        let ro =
                            RingBuffer::open_read_only(&path, ReadOptions { mode: m, ..Default::default() }).unwrap();
                        check_handle(&ro, &all, 0..16, &what);
                        check_batch(&ro, &all, 0..16, &what);
                    }
                    let w = RingBuffer::open(&path, o.clone()).unwrap();
                    check_handle(&w, &all, 0..16, &format!("writer {what}"));
                    let latest = w.latest_id().unwrap();
                    // the writer continues after recovery, and then serves what it wrote
                    w.write(latest + 1, b"after").unwrap();
                    assert_eq!(read_vec(&w, latest + 1).unwrap(), b"after");
                }
            }
        }
    }
    done();
}

/// A damaged record is refused by every reading call, counted, listed by read_many and verify, in
/// both modes, from the writer and read-only handles, and by a fresh writer open.
#[test]
fn holds_damaged_record_refused_everywhere() {
    parent("child_damaged_record_refused_everywhere");
}

#[test]
#[ignore = "child"]
fn child_damaged_record_refused_everywhere() {
    if !is_child() {
        return;
    }
    for compression in [Compression::None, Compression::Lz4] {
        for mode in MODES {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("ring.dat");
            let o = RingOptions { mode, compression, ..RingOptions::new(16, 4096 * 2) };
            let ring = RingBuffer::open(&path, o.clone()).unwrap();
            let mut exp = Expected::new();
            for id in 0..16u64 {
                let p = if id % 2 == 0 { vec![b'a' + id as u8; 8000] } else { noise(id, 8000) };
                ring.write(id, &p).unwrap();
                exp.insert(id, p);
            }
            ring.flush().unwrap();
            // damage record 5 (flip a payload byte in its second page) and record 6 (zero its second page)
            {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
                let mut b = [0u8; 1];
                let off5 = 4096 + 5 * 8192 + 5000;
                f.read_exact_at(&mut b, off5 as u64).unwrap();
                f.write_all_at(&[b[0] ^ 0x10], off5 as u64).unwrap();
                // plain: its second page zeroed (a lost page write); compressed: its first payload bytes
                let off6 = if compression == Compression::None { 4096 + 6 * 8192 + 4096 } else { 4096 + 6 * 8192 + 24 };
                let n = if compression == Compression::None { 4096 } else { 8 };
                f.write_all_at(&vec![0u8; n], off6 as u64).unwrap();
            }
            let ro = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }).unwrap();
            for (h, name) in [(&ring, "writer"), (&ro, "read-only")] {
                let what = format!("{name} {mode:?} {compression:?}");
                let before = h.stats();
                for id in [5u64, 6] {
                    let r = read_vec(h, id);
                    assert!(
                        matches!(r, Err(Error::Corrupt { id: i }) if i == id),
                        "{what}: read {id}: {:?}",
                        r.map(|v| v.len())
                    );
                    let g = h.get(id);
                    assert!(matches!(g, Err(Error::Corrupt { .. })), "{what}: get {id}: {:?}", g.map(|g| g.len()));
                }
                let mut b = ReadBatch::new();
                assert_eq!(h.read_many(0..16, &mut b).unwrap(), 14, "{what}");
                assert_eq!(b.corrupt(), &[5, 6], "{what}");
                assert!(b.iter().all(|(id, p)| exp[&id] == p));
                let s = h.stats();
                assert_eq!(s.crc_failures - before.crc_failures, 6, "{what}: {s:?}");
                assert_eq!(s.reads - before.reads, 4 + 16, "{what}: {s:?}");
                let r = h.verify(|_, _| {}).unwrap();
                assert_eq!((r.valid, r.corrupt, r.empty), (14, 2, 0), "{what}: {r:?}");
                assert_eq!(r.corrupt_slots, vec![5, 6], "{what}");
                assert!(!r.is_clean());
            }
            drop(ro);
            ring.close().unwrap();
            let w = RingBuffer::open(&path, o.clone()).unwrap();
            assert_eq!(w.latest_id(), Some(15));
            assert!(matches!(read_vec(&w, 5), Err(Error::Corrupt { .. })));
            // the writer laps over the damaged slots and they become good again
            for id in 16..24 {
                w.write(id, b"new").unwrap();
            }
            assert_eq!(read_vec(&w, 21).unwrap(), b"new");
            assert!(matches!(read_vec(&w, 5), Err(Error::NotFound { .. })));
        }
    }
    done();
}

/// Zero the header page: a typed error for read-only handles (the writer: see
/// writer_open_refuses_a_ring_whose_header_page_is_blank); a zeroed record page reads as absent.
#[test]
fn holds_zeroed_header_page() {
    parent("child_zeroed_header_page");
}

#[test]
#[ignore = "child"]
fn child_zeroed_header_page() {
    if !is_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, _exp, _o) = small_ring(dir.path(), Compression::None);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    for mode in MODES {
        let e = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }).expect_err("opened");
        assert!(matches!(e, Error::BadHeader { .. }), "{e:?}");
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "refused opens changed the file");
    // zero a record's page instead: its records read as absent, never as records
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let ring = RingBuffer::open(&path, RingOptions::new(8, 4096)).unwrap();
    for id in 0..8 {
        ring.write(id, &payload(id, 3, 4000)).unwrap();
    }
    ring.close().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4096 + 3 * 4096..4096 + 4 * 4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    for mode in MODES {
        let ro = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }).unwrap();
        let r = read_vec(&ro, 3);
        assert!(matches!(r, Err(Error::NotFound { .. }) | Err(Error::Corrupt { .. })), "{r:?}");
        assert_eq!(read_vec(&ro, 4).unwrap(), payload(4, 3, 4000));
    }
    done();
}

/// Shards copied from another ring of the same geometry, swapped, or an extra file: never the other
/// ring's bytes, never a record in the wrong place.
#[test]
fn holds_foreign_and_swapped_shards() {
    parent("child_foreign_and_swapped_shards");
}

#[test]
#[ignore = "child"]
fn child_foreign_and_swapped_shards() {
    if !is_child() {
        return;
    }
    let o = RingOptions { shard_bytes: 4096 + 64 * 4, ..RingOptions::new(12, 64) };
    let make = |dir: &Path, tag: u64| -> Expected {
        let ring = RingBuffer::open(dir.join("ring.dat"), o.clone()).unwrap();
        let mut exp = Expected::new();
        for id in 0..12 {
            let p = payload(id, tag, 32);
            ring.write(id, &p).unwrap();
            exp.insert(id, p);
        }
        ring.close().unwrap();
        exp
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let exp_a = make(a.path(), 1);
    let exp_b = make(b.path(), 2);
    let snap_b = snapshot(b.path());
    let pb = b.path().join("ring.dat");
    let mut notes = Vec::new();
    let check = |label: &str, notes: &mut Vec<String>| {
        for mode in MODES {
            for writer in [false, true] {
                let h = if writer {
                    RingBuffer::open(&pb, RingOptions { mode, ..o.clone() })
                } else {
                    RingBuffer::open_read_only(&pb, ReadOptions { mode, ..Default::default() })
                };
                match h {
                    Ok(h) => {
                        let errs = check_handle(&h, &exp_b, 0..14, &format!("{label} {mode:?} writer={writer}"));
                        check_batch(&h, &exp_b, 0..14, label);
                        notes.push(format!("{label} {mode:?} writer={writer}: opened, refused {errs:?}"));
                    }
                    Err(e) => notes.push(format!("{label} {mode:?} writer={writer}: {}", kind(&e))),
                }
            }
        }
    };
    // each of B's shards replaced by A's
    for shard in ["ring.dat", "ring.dat.1", "ring.dat.2"] {
        restore(b.path(), &snap_b);
        std::fs::copy(a.path().join(shard), b.path().join(shard)).unwrap();
        check(&format!("A's {shard} in B"), &mut notes);
    }
    // A's record pages (not its header) pasted into B's shard 1
    restore(b.path(), &snap_b);
    let mut s1 = std::fs::read(b.path().join("ring.dat.1")).unwrap();
    s1[4096..].copy_from_slice(&std::fs::read(a.path().join("ring.dat.1")).unwrap()[4096..]);
    std::fs::write(b.path().join("ring.dat.1"), &s1).unwrap();
    check("A's records in B's shard 1", &mut notes);
    // B's shards 1 and 2 swapped
    restore(b.path(), &snap_b);
    std::fs::rename(b.path().join("ring.dat.1"), b.path().join("tmp")).unwrap();
    std::fs::rename(b.path().join("ring.dat.2"), b.path().join("ring.dat.1")).unwrap();
    std::fs::rename(b.path().join("tmp"), b.path().join("ring.dat.2")).unwrap();
    check("B's shards 1 and 2 swapped", &mut notes);
    // records of B's slot 1 copied to slot 2 (same ring, same nonce): misplaced, never served as id 2
    restore(b.path(), &snap_b);
    let mut s0 = std::fs::read(&pb).unwrap();
    let (o1, o2) = (4096 + 64, 4096 + 128);
    let rec: Vec<u8> = s0[o1..o1 + 64].to_vec();
    s0[o2..o2 + 64].copy_from_slice(&rec);
    std::fs::write(&pb, &s0).unwrap();
    check("B's slot 1 copied into slot 2", &mut notes);
    {
        let ro = RingBuffer::open_read_only(&pb, ReadOptions::default()).unwrap();
        let r = ro.verify(|_, _| {}).unwrap();
        notes.push(format!(
            "misplaced record: read(2) = {:?}, verify corrupt={} slots={:?}",
            read_vec(&ro, 2).map(|v| v.len()),
            r.corrupt,
            r.corrupt_slots
        ));
    }
    // an extra shard file and a full copy of the ring elsewhere (a backup) both work
    restore(b.path(), &snap_b);
    std::fs::write(b.path().join("ring.dat.3"), b"stray").unwrap();
    let ro = RingBuffer::open_read_only(&pb, ReadOptions::default()).unwrap();
    assert_eq!(check_handle(&ro, &exp_b, 0..12, "extra shard"), vec![]);
    let c = tempfile::tempdir().unwrap();
    for f in ["ring.dat", "ring.dat.1", "ring.dat.2"] {
        std::fs::copy(a.path().join(f), c.path().join(f)).unwrap();
    }
    let w = RingBuffer::open(c.path().join("ring.dat"), o.clone()).unwrap();
    assert_eq!(check_handle(&w, &exp_a, 0..12, "copied ring"), vec![]);
    for n in notes {
        println!("NOTE {n}");
    }
    done();
}

/// The geometry in the header edited (records, record_size, shard_bytes found by value in the header
/// page): the writer's open with the original options is a typed error, a read-only open either
/// fails or serves no wrong bytes, and nothing panics or faults.
#[test]
fn holds_edited_header_geometry() {
    parent("child_edited_header_geometry");
}

#[test]
#[ignore = "child"]
fn child_edited_header_geometry() {
    if !is_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let o = RingOptions { shard_bytes: 4096 + 72 * 300 + 5, ..RingOptions::new(1001, 72) };
    let ring = RingBuffer::open(&path, o.clone()).unwrap();
    let mut exp = Expected::new();
    for id in 0..1500u64 {
        let p = payload(id, 5, 40);
        ring.write(id, &p).unwrap();
        exp.insert(id, p);
    }
    ring.close().unwrap();
    let snap = snapshot(dir.path());
    let files: Vec<String> = snap.keys().cloned().collect();
    assert_eq!(files.len(), 4, "{files:?}");
    // (field, its true value, edited values to try)
    type Field = (&'static str, Vec<u8>, Vec<Vec<u8>>);
    let fields: [Field; 3] = [
        (
            "records",
            1001u64.to_le_bytes().to_vec(),
            [1000u64, 1002, 2002, 1, 0, u64::MAX].iter().map(|v| v.to_le_bytes().to_vec()).collect(),
        ),
        (
            "record_size",
            72u32.to_le_bytes().to_vec(),
            [64u32, 80, 8, 0, 1 << 30, u32::MAX].iter().map(|v| v.to_le_bytes().to_vec()).collect(),
        ),
        (
            "shard_bytes",
            (4096u64 + 72 * 300 + 5).to_le_bytes().to_vec(),
            [4096u64 + 72 * 300, 4096 + 72 * 600, 4096 + 72, 1 << 40, 0]
                .iter()
                .map(|v| v.to_le_bytes().to_vec())
                .collect(),
        ),
    ];
    let mut edits = 0;
    for file in &files {
        for (field, orig, values) in &fields {
            let header = &snap[file][..4096];
            let at: Vec<usize> = (0..4096 - orig.len()).filter(|&i| header[i..i + orig.len()] == orig[..]).collect();
            if at.len() != 1 {
                println!("NOTE {file}: {field} found at {at:?}, not edited");
                continue;
            }
            for v in values {
                restore(dir.path(), &snap);
                let mut bytes = snap[file].clone();
                bytes[at[0]..at[0] + v.len()].copy_from_slice(v);
                std::fs::write(dir.path().join(file), &bytes).unwrap();
                edits += 1;
                let what = format!("{file} {field} := {v:?}");
                for mode in MODES {
                    let e = RingBuffer::open(&path, RingOptions { mode, ..o.clone() })
                        .err()
                        .unwrap_or_else(|| panic!("{what}: writer opened"));
                    assert!(
                        matches!(e, Error::GeometryMismatch { .. } | Error::BadHeader { .. }),
                        "{what}: writer open: {e:?}"
                    );
                    match RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }) {
                        Ok(ro) => {
                            let g = ro.geometry();
                            let errs = check_handle(&ro, &exp, 0..1600, &what);
                            println!("NOTE {what}: read-only opened as {g:?}, {} ids refused", errs.len());
                        }
                        Err(e) => {
                            let k = kind(&e);
                            assert!(
                                ["BadHeader", "FileTooShort", "GeometryMismatch", "InvalidOptions"].contains(&k),
                                "{what}: {e:?}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(edits > 0, "found no geometry field to edit");
    done();
}

/// DEFECT. A ring whose shard-0 header page is blank (all zeros) but whose records are intact: the
/// writer's open takes it for a ring whose creation never finished and recreates it, wiping every
/// record, instead of reporting Error::BadHeader ("its header is damaged") and changing nothing.
#[test]
fn writer_open_refuses_a_ring_whose_header_page_is_blank() {
    parent("child_writer_open_wipes_ring_whose_header_page_is_blank");
}

#[test]
#[ignore = "child"]
fn child_writer_open_wipes_ring_whose_header_page_is_blank() {
    if !is_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, exp, o) = small_ring(dir.path(), Compression::None);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    // read-only: BadHeader, as documented
    let e = RingBuffer::open_read_only(&path, ReadOptions::default()).expect_err("read-only opened");
    assert!(matches!(e, Error::BadHeader { .. }), "{e:?}");
    let r = RingBuffer::open(&path, o.clone());
    let after = std::fs::read(&path).unwrap();
    let lost = after[4096..] != bytes[4096..];
    match r {
        Err(e) => assert!(matches!(e, Error::BadHeader { .. }), "{e:?}"),
        Ok(w) => {
            let served = exp.keys().filter(|&&id| read_vec(&w, id).is_ok()).count();
            panic!(
                "the writer opened a ring with a blank header page as a new ring (latest {:?}); {served} of {} \
                 intact records still served; record bytes on disk overwritten: {lost}",
                w.latest_id(),
                exp.len()
            );
        }
    }
    assert!(!lost, "a refused open changed the records");
    done();
}

/// DEFECT. The same through a file that is not a ring at all: a user's file whose first 4 KiB are
/// zeros (disk and ISO images, sparse files, many binary formats start so) and that is no longer than
/// the ring would be (here about 31 KiB against a 68 KiB ring) is overwritten by RingBuffer::open, which the
/// docs say fails with Error::BadHeader ("not a ring file") and changes nothing on disk. A longer such
/// file is refused ("the header page is blank"), and so is a text file (holds_bad_paths).
#[test]
fn writer_open_refuses_a_foreign_file_starting_with_zeros() {
    parent("child_writer_open_overwrites_non_ring_file_starting_with_zeros");
}

#[test]
#[ignore = "child"]
fn child_writer_open_overwrites_non_ring_file_starting_with_zeros() {
    if !is_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let mut user = vec![0u8; 4096];
    user.extend((0..1_500u32).flat_map(|i| format!("precious line {i}\n").into_bytes()));
    std::fs::write(&path, &user).unwrap();
    let r = RingBuffer::open(&path, RingOptions::new(1024, 64));
    let after = std::fs::read(&path).unwrap_or_default();
    let kept = after == user;
    match r {
        Err(e) => {
            assert!(
                matches!(e, Error::BadHeader { .. } | Error::GeometryMismatch { .. } | Error::FileTooShort { .. }),
                "{e:?}"
            );
            assert!(kept, "a refused open changed the file");
        }
        Ok(w) => panic!(
            "RingBuffer::open took a {}-byte non-ring file for a new ring (latest {:?}); file now {} bytes, \
             user data intact: {kept}",
            user.len(),
            w.latest_id(),
            after.len()
        ),
    }
    done();
}
