//! Write-back through a real mount: what `fsync` acknowledged survives SIGKILL of the mount process
//! (20 cycles); unmounting, SIGTERM and SIGINT write every dirty file before the process exits; a file
//! that cannot be written at exit is reported and the exit code says so.

mod mount_support;

use std::fs;
use std::io::Write;

use mount_support::{Mounted, bytes, fuse_available, n};

const LONG_DELAY: &[&str] = &["--mode", "write-back", "--flush-delay", "1h"];

#[test]
fn fsync_then_sigkill_loses_nothing_fsync_acknowledged() {
    if !fuse_available("fsync_then_sigkill_loses_nothing_fsync_acknowledged") {
        return;
    }
    let mut m = Mounted::new(LONG_DELAY);
    for cycle in 0..20u64 {
        let dir = m.mnt.join(format!("c{}", cycle % 4));
        fs::create_dir_all(&dir).unwrap();
        // Acknowledged: written and fsynced (a new file, and an overwrite of an older one).
        let mut f = fs::File::create(dir.join(format!("synced{cycle}"))).unwrap();
        f.write_all(&bytes(cycle, 10_000 + cycle as usize * 997)).unwrap();
        f.sync_all().unwrap();
        drop(f);
        if cycle > 0 {
            let mut f = fs::File::options().write(true).truncate(true).open(m.mnt.join("c0/synced0")).unwrap();
            f.write_all(&bytes(1000 + cycle, 5000)).unwrap();
            f.sync_data().unwrap();
        }
        // Not acknowledged: written and closed only (may or may not survive; must not be torn).
        fs::write(dir.join(format!("unsynced{cycle}")), bytes(500 + cycle, 20_000)).unwrap();
        assert!(n(&m.stats(), &["fs", "dirty_entries"]) >= 1, "the unsynced file is held dirty");
        m.kill9();
        for c in 0..=cycle {
            let path = m.backing.join(format!("c{}/synced{c}", c % 4));
            let want =
                if c == 0 && cycle > 0 { bytes(1000 + cycle, 5000) } else { bytes(c, 10_000 + c as usize * 997) };
            assert!(fs::read(&path).is_ok_and(|got| got == want), "cycle {cycle}: {} lost or wrong", path.display());
            let unsynced = m.backing.join(format!("c{}/unsynced{c}", c % 4));
            if let Ok(got) = fs::read(&unsynced) {
                assert!(got == bytes(500 + c, 20_000), "{} is torn", unsynced.display());
            }
        }
        m.start(LONG_DELAY);
    }
}

#[test]
fn unmount_sigterm_and_sigint_write_every_dirty_file_first() {
    if !fuse_available("unmount_sigterm_and_sigint_write_every_dirty_file_first") {
        return;
    }
    let mut m = Mounted::new(LONG_DELAY);
    for (round, how) in ["fusermount3 -u", "SIGTERM", "SIGINT"].into_iter().enumerate() {
        for i in 0..50 {
            fs::write(m.mnt.join(format!("{round}-{i}")), bytes(i, 3000 + i as usize)).unwrap();
        }
        // Still open at the end: stored and flushed too.
        let mut open = Some(fs::File::create(m.mnt.join(format!("{round}-open"))).unwrap());
        open.as_mut().unwrap().write_all(b"open at exit").unwrap();
        assert!(!m.backing.join(format!("{round}-0")).exists(), "{how}: written out before the delay");
        let status = match how {
            "SIGTERM" => m.signal(libc::SIGTERM),
            "SIGINT" => m.signal(libc::SIGINT),
            _ => {
                open = None;
                m.unmount()
            }
        };
        assert!(status.success(), "{how}: exit {status}\n{}", m.log());
        if let Some(mut f) = open {
            // The file still open when the mount went away: later changes fail, they are not lost quietly.
            assert!(f.write_all(b" and more").and_then(|()| f.sync_all()).is_err(), "{how}");
        }
        for i in 0..50 {
            let got = fs::read(m.backing.join(format!("{round}-{i}"))).unwrap();
            assert!(got == bytes(i, 3000 + i as usize), "{how}: {round}-{i} wrong");
        }
        m.start(LONG_DELAY);
    }
    // The open files of the signal rounds: their handles were still open when the mount went away.
    for round in 0..3 {
        assert_eq!(fs::read(m.backing.join(format!("{round}-open"))).unwrap(), b"open at exit", "round {round}");
    }
}

#[test]
fn a_file_that_cannot_be_written_at_exit_is_reported_and_the_exit_code_says_so() {
    if !fuse_available("a_file_that_cannot_be_written_at_exit_is_reported_and_the_exit_code_says_so") {
        return;
    }
    let mut m = Mounted::new(LONG_DELAY);
    fs::create_dir(m.mnt.join("d")).unwrap();
    fs::write(m.mnt.join("d/x"), b"never lands").unwrap();
    fs::write(m.mnt.join("fine"), b"lands").unwrap();
    // Someone else replaces the directory with a file: d/x can no longer be written.
    fs::remove_dir(m.backing.join("d")).unwrap();
    fs::write(m.backing.join("d"), b"a file now").unwrap();
    let status = m.unmount();
    assert!(!status.success(), "exit {status} despite an unwritten file\n{}", m.log());
    let log = m.log();
    assert!(log.contains("d/x") && log.contains("error"), "{log}");
    assert_eq!(fs::read(m.backing.join("fine")).unwrap(), b"lands", "the rest is written");
    assert_eq!(fs::read(m.backing.join("d")).unwrap(), b"a file now", "the other writer's file stays");
}

#[test]
fn listings_show_files_before_and_after_they_are_written_out() {
    if !fuse_available("listings_show_files_before_and_after_they_are_written_out") {
        return;
    }
    let m = Mounted::new(&["--mode", "write-back", "--flush-delay", "300ms", "--metadata-ttl", "1h"]);
    let names = |dir: &std::path::Path| {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    fs::create_dir(m.mnt.join("d")).unwrap();
    assert!(names(&m.mnt.join("d")).is_empty());
    fs::write(m.mnt.join("d/new"), b"1").unwrap();
    fs::create_dir(m.mnt.join("d/sub")).unwrap();
    assert_eq!(names(&m.mnt.join("d")), ["new", "sub"], "before the flush");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !m.backing.join("d/new").exists() {
        assert!(std::time::Instant::now() < deadline, "never written out");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(names(&m.mnt.join("d")), ["new", "sub"], "after the flush");
    fs::rename(m.mnt.join("d/new"), m.mnt.join("d/sub/moved")).unwrap();
    assert_eq!(names(&m.mnt.join("d")), ["sub"]);
    assert_eq!(names(&m.mnt.join("d/sub")), ["moved"]);
    fs::remove_file(m.mnt.join("d/sub/moved")).unwrap();
    fs::remove_dir(m.mnt.join("d/sub")).unwrap();
    assert!(names(&m.mnt.join("d")).is_empty());
}
