//! A full device fails the open, never a later mapped write: on a 3 MiB tmpfs, a 4 MiB ring in two
//! shards (the first fits) is `StorageFull` at open and leaves only an empty `ring.dat` behind (the
//! lock file; no space is kept), a 2 MiB ring works to the last byte of every slot, and a second one
//! that no longer fits fails without touching the first.
//!
//! Mounting needs root (`mount -t tmpfs`); where it is not permitted the test says so on stderr and
//! passes without checking anything.
#![cfg(feature = "ring")]

mod ring_common;

use std::path::Path;
use std::process::Command;

use cachefs::ring::{Error, IoMode, RingBuffer, RingOptions};
use ring_common::{MODES, payload};

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_ring_larger_than_the_device_fails_at_open_and_leaves_nothing() {
    let fs = match Tmpfs::mount("3M") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_ring_larger_than_the_device_fails_at_open: cannot mount a tmpfs ({why})");
            return;
        }
    };
    for mode in MODES {
        // 4 MiB in two shards: the first fits, the second does not.
        let opts = RingOptions { mode, shard_bytes: 4096 + (2 << 20), ..RingOptions::new(1024, 4096) };
        let e = RingBuffer::open(fs.path().join("big.ring"), opts).unwrap_err();
        assert!(matches!(e, Error::StorageFull { .. }), "{mode:?}: {e}");
        assert!(e.to_string().contains("no space left"), "{e}");
        let left: Vec<_> = std::fs::read_dir(fs.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{mode:?}: a failed creation leaves nothing behind: {left:?}");
    }
    // A ring that fits (2 MiB) works to the last byte of every slot, in either mode.
    let path = fs.path().join("small.ring");
    let ring = RingBuffer::open(&path, RingOptions { mode: IoMode::Mmap, ..RingOptions::new(500, 4096) }).unwrap();
    for id in 0..1000 {
        ring.write(id, &payload(id, 4096 - 24)).unwrap();
    }
    ring.close().unwrap();
    // Another 2 MiB no longer fits; the first ring is untouched.
    let e = RingBuffer::open(fs.path().join("second.ring"), RingOptions::new(500, 4096)).unwrap_err();
    assert!(matches!(e, Error::StorageFull { .. }), "{e}");
    let ring = RingBuffer::open(&path, RingOptions { mode: IoMode::Pread, ..RingOptions::new(500, 4096) }).unwrap();
    let mut buf = Vec::new();
    for id in 500..1000 {
        ring.read(id, &mut buf).unwrap();
        assert!(buf == payload(id, 4096 - 24));
    }
}
