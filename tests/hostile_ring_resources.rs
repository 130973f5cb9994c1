//! Hostile resource and CLI tests of `cachefs::ring` from its public documentation: a full device
//! (a small tmpfs), the memory of a cold 2 GiB mapped ring, and `cachefs ring inspect`.
#![cfg(feature = "ring")]

mod common;
mod hostile_ring_util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cachefs::ring::{Error, IoMode, ReadOptions, RingBuffer, RingOptions};
use hostile_ring_util::*;

const DIR: &str = "HOSTILE_RING_RES_DIR";

/// A small tmpfs, unmounted when dropped; None (with a loud message) if mounting is not possible.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("!!!!! SKIPPED: cannot mount a tmpfs (not root?); the full-device test did not run !!!!!");
            return None;
        }
        Some(Tmpfs(dir.path().to_path_buf(), dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_bavail as u64 * s.f_frsize as u64
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A full device: opening a ring that does not fit is StorageFull (also when only some shards fit);
/// a ring created before the device filled up keeps working, mapped or not, with no SIGBUS (the child
/// would die by a signal). What a failed open leaves behind: storage_full_at_creation_leaves_nothing_behind.
#[test]
fn holds_full_device() {
    let Some(fs) = Tmpfs::mount("3M") else { return };
    let out = run_child("child_full_device", &[(DIR, fs.0.to_string_lossy().into_owned())], Duration::from_secs(60));
    assert_child_ok("child_full_device", &out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHILD-DONE"));
}

#[test]
#[ignore = "child"]
fn child_full_device() {
    let Ok(dir) = std::env::var(DIR) else { return };
    let dir = PathBuf::from(dir);
    for mode in [IoMode::Mmap, IoMode::Pread] {
        // 4 MiB in one file
        let e = RingBuffer::open(dir.join("big.dat"), RingOptions { mode, ..RingOptions::new(1024, 4096) })
            .expect_err("4 MiB ring on 3 MiB");
        assert!(matches!(e, Error::StorageFull { .. }), "{e:?}");
        clean_leftovers(&dir);
        // 4 MiB in four shards of 1 MiB: the first two fit
        let o = RingOptions { mode, shard_bytes: 4096 + 256 * 4096, ..RingOptions::new(1024, 4096) };
        let e = RingBuffer::open(dir.join("sharded.dat"), o).expect_err("sharded 4 MiB ring on 3 MiB");
        assert!(matches!(e, Error::StorageFull { .. }), "{e:?}");
        clean_leftovers(&dir);
    }
    // a ring that fits, then the device filled up by someone else
    let path = dir.join("ok.dat");
    let o = RingOptions::new(256, 4096); // 1 MiB + 4 KiB
    let ring = RingBuffer::open(&path, o.clone()).unwrap();
    ring.write(0, b"before").unwrap();
    ring.close().unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.join("filler")).unwrap();
        let chunk = vec![0xAAu8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[1]);
    }
    assert!(free_bytes(&dir) < 8192, "the device is not full: {}", free_bytes(&dir));
    for mode in [IoMode::Mmap, IoMode::Pread] {
        let ring = RingBuffer::open(&path, RingOptions { mode, ..o.clone() }).unwrap();
        let start = ring.latest_id().unwrap() + 1;
        for id in start..start + 600 {
            ring.write(id, &payload(id, 0, 4000)).unwrap();
        }
        ring.flush().unwrap();
        for id in start + 600 - 256..start + 600 {
            assert_eq!(read_vec(&ring, id).unwrap(), payload(id, 0, 4000));
        }
        ring.close().unwrap();
        let ro = RingBuffer::open_read_only(&path, ReadOptions { mode, ..Default::default() }).unwrap();
        assert_eq!(read_vec(&ro, start + 599).unwrap(), payload(start + 599, 0, 4000));
        // a new ring on the full device
        let e = RingBuffer::open(dir.join("new.dat"), RingOptions::new(4, 64)).expect_err("opened on a full device");
        assert!(matches!(e, Error::StorageFull { .. }), "{e:?}");
        let _ = std::fs::remove_file(dir.join("new.dat"));
    }
    println!("CHILD-DONE");
}

/// Removes what a failed open left (reported by storage_full_at_creation_leaves_nothing_behind).
fn clean_leftovers(dir: &Path) {
    for name in listing(dir) {
        let p = dir.join(&name);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "a failed open left {name} with data in it");
        std::fs::remove_file(p).unwrap();
    }
}

/// DEFECT. "Error::StorageFull if the device cannot hold a new ring (nothing is left behind)": a
/// failed open leaves an empty shard-0 file (`big.dat`, 0 bytes) behind, in both modes and also
/// when some shards were already allocated (those are removed, shard 0 is not). A later read-only
/// open or `cachefs ring inspect` of the path then says "not a ring file".
#[test]
fn storage_full_at_creation_leaves_nothing_behind() {
    let Some(fs) = Tmpfs::mount("3M") else { return };
    let out = run_child(
        "child_storage_full_leaves_a_file_behind",
        &[(DIR, fs.0.to_string_lossy().into_owned())],
        Duration::from_secs(60),
    );
    assert_child_ok("child_storage_full_leaves_a_file_behind", &out);
}

#[test]
#[ignore = "child"]
fn child_storage_full_leaves_a_file_behind() {
    let Ok(dir) = std::env::var(DIR) else { return };
    let dir = PathBuf::from(dir);
    let mut left = Vec::new();
    for mode in [IoMode::Mmap, IoMode::Pread] {
        for (name, o) in [
            ("big.dat", RingOptions { mode, ..RingOptions::new(1024, 4096) }),
            ("sharded.dat", RingOptions { mode, shard_bytes: 4096 + 256 * 4096, ..RingOptions::new(1024, 4096) }),
        ] {
            let e = RingBuffer::open(dir.join(name), o).expect_err("a 4 MiB ring opened on 3 MiB");
            assert!(matches!(e, Error::StorageFull { .. }), "{e:?}");
            for f in listing(&dir) {
                let len = std::fs::metadata(dir.join(&f)).unwrap().len();
                left.push(format!("{mode:?} {name}: left {f} ({len} bytes)"));
                std::fs::remove_file(dir.join(f)).unwrap();
            }
        }
    }
    assert!(left.is_empty(), "StorageFull left files behind:\n{}", left.join("\n"));
}

fn vm_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap()
}

/// A cold 2 GiB ring, mapped: opening it (writer, with recovery, and a read-only handle) adds little
/// resident memory; reading 2,048 records spread over it adds about their pages, not read-ahead
/// windows. Measured in a fresh child process through /proc/self/status.
#[test]
fn holds_cold_large_ring_memory() {
    let dir = tempfile::tempdir_in(std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "/tmp".into())).unwrap();
    let path = dir.path().join("big.dat");
    {
        let ring =
            RingBuffer::open(&path, RingOptions { mode: IoMode::Pread, ..RingOptions::new(524_288, 4096) }).unwrap();
        for i in 0..2048u64 {
            let id = i * 256;
            ring.write(id, &payload(id, 0, 4000)).unwrap();
        }
        ring.close().unwrap();
    }
    // drop the file's pages from the page cache so that the child really starts cold
    {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&path).unwrap();
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let out = run_child(
        "child_cold_large_ring_memory",
        &[(DIR, dir.path().to_string_lossy().into_owned())],
        Duration::from_secs(60),
    );
    assert_child_ok("child_cold_large_ring_memory", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    for l in text.lines().filter(|l| l.contains("RSS")) {
        eprintln!("{l}");
    }
    assert!(text.contains("CHILD-DONE"));
}

#[test]
#[ignore = "child"]
fn child_cold_large_ring_memory() {
    let Ok(dir) = std::env::var(DIR) else { return };
    let path = PathBuf::from(dir).join("big.dat");
    let base = vm_rss_kib();
    let ring = RingBuffer::open(&path, RingOptions::new(524_288, 4096)).unwrap();
    let after_open = vm_rss_kib();
    let ro = RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap();
    let after_ro = vm_rss_kib();
    assert_eq!(ring.latest_id(), Some(2047 * 256));
    let mut out = Vec::new();
    for i in 0..2048u64 {
        let id = i * 256;
        ring.read(id, &mut out).unwrap();
        assert_eq!(out.len(), 4000);
    }
    let after_reads = vm_rss_kib();
    for i in 0..2048u64 {
        ro.read(i * 256, &mut out).unwrap();
    }
    let after_ro_reads = vm_rss_kib();
    println!(
        "RSS KiB: base {base}, writer open +{}, read-only open +{}, 2048 reads +{}, 2048 read-only reads +{}",
        after_open - base,
        after_ro - after_open,
        after_reads - after_ro,
        after_ro_reads - after_reads
    );
    assert!(after_open - base < 16 * 1024, "opening a cold 2 GiB ring made {} KiB resident", after_open - base);
    assert!(after_ro - after_open < 16 * 1024, "read-only open made {} KiB resident", after_ro - after_open);
    // 2,048 records of one page (plus a neighbour at most) each: about 8-16 MiB, not gigabytes
    assert!(after_reads - after_ro < 48 * 1024, "2048 reads made {} KiB resident", after_reads - after_ro);
    assert!(
        after_ro_reads - after_reads < 48 * 1024,
        "2048 read-only reads made {} KiB resident",
        after_ro_reads - after_reads
    );
    println!("CHILD-DONE");
}

// ---- CLI ----

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn inspect(path: &Path, mode: Option<&str>) -> Run {
    let mut cmd = Command::new(common::cli_binary());
    cmd.args(["ring", "inspect"]);
    if let Some(m) = mode {
        cmd.args(["--mode", m]);
    }
    let out = cmd.arg(path).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(out.status.signal().is_none(), "inspect {path:?} died by signal {:?}", out.status.signal());
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// No Rust Debug dump in a message meant for people.
fn assert_readable(r: &Run, what: &str) {
    let all = format!("{}\n{}", r.stdout, r.stderr);
    for bad in [
        " { ",
        "Os {",
        "kind:",
        "code:",
        "Custom {",
        "path: \"",
        "BadHeader",
        "FileTooShort",
        "Io {",
        "panicked",
        "RUST_BACKTRACE",
    ] {
        assert!(!all.contains(bad), "{what}: output contains {bad:?}:\n{all}");
    }
}

fn sample_ring(dir: &Path) -> PathBuf {
    let path = dir.join("ring.dat");
    let ring =
        RingBuffer::open(&path, RingOptions { shard_bytes: 4096 + 64 * 10, ..RingOptions::new(25, 64) }).unwrap();
    for id in 0..40 {
        ring.write(id, &payload(id, 0, 30)).unwrap();
    }
    ring.close().unwrap();
    path
}

/// inspect on a good ring: exit 0, the geometry and latest id printed, files unchanged, both modes.
#[test]
fn holds_cli_inspect_good_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_ring(dir.path());
    let snap = snapshot(dir.path());
    for mode in [None, Some("mmap"), Some("pread")] {
        let r = inspect(&path, mode);
        assert_eq!(r.code, Some(0), "{mode:?}:\n{}\n{}", r.stdout, r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("25") && all.contains("64") && all.contains("39"),
            "geometry or latest id missing:\n{all}"
        );
        assert_readable(&r, "good ring");
        assert_eq!(snapshot(dir.path()), snap, "inspect changed the files");
    }
    // while a writer holds the ring
    let ring =
        RingBuffer::open(&path, RingOptions { shard_bytes: 4096 + 64 * 10, ..RingOptions::new(25, 64) }).unwrap();
    ring.write(40, b"live").unwrap();
    let r = inspect(&path, None);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(format!("{}{}", r.stdout, r.stderr).contains("40"));
}

/// inspect on a damaged ring: exit 1, and it says which record.
#[test]
fn holds_cli_inspect_damaged_ring() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample_ring(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let p = payload(35, 0, 30); // id 35: slot 10, the first slot of shard 1
    let p30 = payload(30, 0, 30); // slot 5 of shard 0
    let at = find(&bytes, &p30).unwrap();
    bytes[at + 3] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let _ = p;
    for mode in [None, Some("mmap")] {
        let r = inspect(&path, mode);
        assert_eq!(r.code, Some(1), "{mode:?}:\n{}\n{}", r.stdout, r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr).to_lowercase();
        assert!(all.contains("corrupt"), "{all}");
        assert_readable(&r, "damaged ring");
    }
}

/// inspect on a missing file, a non-ring file, a directory, a truncated ring, a missing shard and a
/// blank header: a failing exit code (not a signal), a readable one-line message, no Debug dump.
#[test]
fn holds_cli_inspect_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello\n".repeat(2000)).unwrap();
    let ring = sample_ring(&dir.path().join("ok").tap_mkdir());
    let trunc = sample_ring(&dir.path().join("trunc").tap_mkdir());
    let len = std::fs::metadata(&trunc).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&trunc).unwrap().set_len(len - 10).unwrap();
    let noshard = sample_ring(&dir.path().join("noshard").tap_mkdir());
    std::fs::remove_file(noshard.with_extension("dat.2")).unwrap();
    let blank = sample_ring(&dir.path().join("blank").tap_mkdir());
    let mut b = std::fs::read(&blank).unwrap();
    b[..4096].fill(0);
    std::fs::write(&blank, &b).unwrap();
    let _ = ring;
    let mut codes = Vec::new();
    for (what, p) in [
        ("missing", dir.path().join("nope.dat")),
        ("text file", text.clone()),
        ("empty file", {
            let e = dir.path().join("empty");
            std::fs::write(&e, b"").unwrap();
            e
        }),
        ("directory", dir.path().to_path_buf()),
        ("truncated", trunc.clone()),
        ("missing shard", noshard.clone()),
        ("blank header", blank.clone()),
    ] {
        for mode in [None, Some("mmap")] {
            let r = inspect(&p, mode);
            assert!(r.code.is_some_and(|c| c != 0), "{what}: exit {:?}\n{}{}", r.code, r.stdout, r.stderr);
            assert_readable(&r, what);
            assert!(!r.stderr.trim().is_empty() || !r.stdout.trim().is_empty(), "{what}: no message");
            codes.push(format!("{what} {mode:?}: exit {:?}: {}", r.code, r.stderr.trim()));
        }
    }
    for c in codes {
        eprintln!("{c}");
    }
    assert_eq!(std::fs::read(&blank).unwrap(), b, "inspect changed the blank-header ring");
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}
impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// A ring left by a crash with intact records past the header's latest id (a stale header): verify
/// reports them as beyond_latest, not corrupt, and inspect exits 0.
#[test]
fn holds_cli_inspect_crash_leftovers_are_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.dat");
    let ring = RingBuffer::open(&path, RingOptions::new(64, 128)).unwrap();
    for id in 0..10 {
        ring.write(id, &payload(id, 1, 50)).unwrap();
    }
    ring.close().unwrap();
    let before = std::fs::read(&path).unwrap();
    let ring = RingBuffer::open(&path, RingOptions::new(64, 128)).unwrap();
    for id in 10..15 {
        ring.write(id, &payload(id, 1, 50)).unwrap();
    }
    ring.close().unwrap();
    let mut after = std::fs::read(&path).unwrap();
    after[..4096].copy_from_slice(&before[..4096]);
    std::fs::write(&path, &after).unwrap();
    let ro = RingBuffer::open_read_only(&path, ReadOptions::default()).unwrap();
    let v = ro.verify(|_, _| {}).unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(ro.latest_id(), Some(9));
    assert_eq!(v.beyond_latest, 5, "{v:?}");
    assert!(matches!(read_vec(&ro, 12), Err(Error::NotFound { .. })), "a record past the latest id was served");
    let r = inspect(&path, None);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_readable(&r, "crash leftovers");
}
