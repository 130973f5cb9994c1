//! `cachefs mount` for real: a tree copied in and out through the mount, rereads served from memory
//! (the backing directory sees no reads: the mount's own counters and inotify on the backing directory
//! agree), the errno each failure reaches programs as, attributes, and the metrics endpoint.

mod mount_support;

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;

use mount_support::{Mounted, bytes, fuse_available, n, sh};

/// Size of file `i` of the test tree: four large files (64, 32, 16 and 8 MiB), the rest 0 B to 24 KiB.
fn size(i: usize) -> usize {
    match i {
        0 => 64 << 20,
        250 => 32 << 20,
        500 => 16 << 20,
        750 => 8 << 20,
        _ => (i * 7919) % (24 << 10),
    }
}

fn rel(i: usize) -> String {
    format!("d{:02}/s{}/f{i:04}.bin", i % 20, i % 3)
}

/// Counts inotify events (opens and reads) on every directory below `root` while `f` runs.
fn backing_events(root: &Path, f: impl FnOnce()) -> usize {
    // SAFETY: plain syscalls on a descriptor this function owns; buffers are local and sized as passed.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
        assert!(fd >= 0, "inotify_init1");
        // Every directory first (listing one opens it, an event of its own), then the watches.
        let (mut todo, mut dirs) = (vec![root.to_path_buf()], Vec::new());
        while let Some(d) = todo.pop() {
            todo.extend(fs::read_dir(&d).unwrap().flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            dirs.push(d);
        }
        for d in &dirs {
            let c = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
            assert!(libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) >= 0);
        }
        let mut buf = [0u8; 64 << 10];
        while libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
        f();
        let mut events = 0;
        loop {
            let got = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if got <= 0 {
                break;
            }
            let mut off = 0;
            while off < got as usize {
                let ev = buf.as_ptr().add(off).cast::<libc::inotify_event>().read_unaligned();
                events += 1;
                off += std::mem::size_of::<libc::inotify_event>() + ev.len as usize;
            }
        }
        libc::close(fd);
        events
    }
}

#[test]
fn a_tree_of_1000_files_copies_in_and_out_and_rereads_from_memory() {
    if !fuse_available("a_tree_of_1000_files_copies_in_and_out_and_rereads_from_memory") {
        return;
    }
    let m = Mounted::new(&["--max-bytes", "1G"]);
    let src = m.dir.path().join("src");
    for i in 0..1000 {
        let p = src.join(rel(i));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes(i as u64, size(i))).unwrap();
    }
    sh(m.dir.path(), "cp -r src/. mnt/tree && cp -r mnt/tree out");
    for i in 0..1000 {
        let want = fs::read(src.join(rel(i))).unwrap();
        for copy in [m.dir.path().join("out"), m.backing.join("tree")] {
            let got = fs::read(copy.join(rel(i))).unwrap();
            assert!(got == want, "{} differs in {}", rel(i), copy.display());
        }
    }
    // The watch sees reads: one file read straight from the backing directory is noticed.
    assert!(backing_events(&m.backing, || drop(fs::read(m.backing.join("tree").join(rel(1))).unwrap())) > 0);
    let before = m.stats();
    let events = backing_events(&m.backing, || {
        for i in 0..1000 {
            let got = fs::read(m.mnt.join("tree").join(rel(i))).unwrap();
            assert_eq!(got.len(), size(i));
            assert!(got == bytes(i as u64, size(i)), "{} differs on the reread", rel(i));
        }
    });
    let after = m.stats();
    assert_eq!(
        n(&after, &["backing", "reads"]),
        n(&before, &["backing", "reads"]),
        "the reread reached the backing directory"
    );
    assert_eq!(events, 0, "inotify saw the backing directory opened or read during the reread");
    let hits = n(&after, &["fs", "read_hits"]) - n(&before, &["fs", "read_hits"]);
    assert!(hits >= 1000, "{hits} hits for 1000 files");
    assert_eq!(n(&after, &["fs", "read_misses"]), n(&before, &["fs", "read_misses"]));
    let prometheus = cachefs_cli::http::get(&m.metrics, "/metrics").unwrap();
    assert!(prometheus.contains("cachefs_fs_read_hits_total{cache=\"mount\"}"), "{prometheus}");
    assert!(prometheus.contains("cachefs_mount_backing_reads_total"), "{prometheus}");
}

fn code(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or_else(|| panic!("no errno in {e}"))
}

#[test]
fn failures_reach_programs_as_their_errno() {
    if !fuse_available("failures_reach_programs_as_their_errno") {
        return;
    }
    let m = Mounted::new(&[]);
    let mnt = &m.mnt;
    fs::create_dir(mnt.join("d")).unwrap();
    fs::write(mnt.join("d/f"), b"x").unwrap();
    assert_eq!(fs::read(mnt.join("missing")).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(code(&fs::create_dir(mnt.join("d")).unwrap_err()), libc::EEXIST);
    let excl = fs::File::options().write(true).create_new(true).open(mnt.join("d/f"));
    assert_eq!(code(&excl.unwrap_err()), libc::EEXIST);
    assert_eq!(code(&fs::remove_dir(mnt.join("d")).unwrap_err()), libc::ENOTEMPTY);
    assert_eq!(code(&fs::remove_file(mnt.join("d")).unwrap_err()), libc::EISDIR);
    assert_eq!(code(&fs::File::options().write(true).open(mnt.join("d")).unwrap_err()), libc::EISDIR);
    assert_eq!(code(&fs::read_dir(mnt.join("d/f")).unwrap_err()), libc::ENOTDIR);
    assert_eq!(code(&fs::rename(mnt.join("d"), mnt.join("d/sub")).unwrap_err()), libc::EINVAL);
    assert_eq!(code(&fs::write(mnt.join("d/f/under-a-file"), b"x").unwrap_err()), libc::ENOTDIR);
    assert_eq!(fs::read(m.backing.join("d/f")).unwrap(), b"x", "failed calls changed nothing");

    // The budget for files being written: a write past it is ENOSPC; what was written before it stays
    // (as on a full disk), and the budget is whole again once the file is closed.
    let small = Mounted::new(&["--max-bytes", "1M"]);
    fs::write(small.mnt.join("kept"), b"old").unwrap();
    let mut f = fs::File::options().write(true).truncate(false).open(small.mnt.join("kept")).unwrap();
    let err = f.write_all(&vec![7u8; 2 << 20]).unwrap_err();
    assert_eq!(code(&err), libc::ENOSPC);
    drop(f);
    let kept = fs::read(small.backing.join("kept")).unwrap();
    assert!(kept.len() <= 1 << 20 && kept.iter().all(|&b| b == 7), "{} bytes kept", kept.len());
    fs::write(small.mnt.join("after"), vec![1u8; 512 << 10]).unwrap();
    assert_eq!(fs::read(small.backing.join("after")).unwrap().len(), 512 << 10);

    // Read-only: every change is refused by the kernel.
    fs::write(m.backing.join("ro.txt"), b"r").unwrap();
    let ro = Mounted::over(tempfile::tempdir().unwrap(), m.backing.clone(), &["--read-only"]);
    assert_eq!(fs::read(ro.mnt.join("ro.txt")).unwrap(), b"r");
    assert_eq!(code(&fs::write(ro.mnt.join("new"), b"x").unwrap_err()), libc::EROFS);
    assert_eq!(code(&fs::remove_file(ro.mnt.join("ro.txt")).unwrap_err()), libc::EROFS);
}

#[test]
fn attributes_truncation_renames_and_listing_match_a_local_disk() {
    use std::os::unix::fs::PermissionsExt;
    if !fuse_available("attributes_truncation_renames_and_listing_match_a_local_disk") {
        return;
    }
    let m = Mounted::new(&[]);
    let (mnt, backing) = (&m.mnt, &m.backing);
    fs::write(mnt.join("a"), b"hello world").unwrap();
    fs::File::options().write(true).open(mnt.join("a")).unwrap().set_len(5).unwrap();
    assert_eq!(fs::read(mnt.join("a")).unwrap(), b"hello");
    assert_eq!(fs::read(backing.join("a")).unwrap(), b"hello");
    sh(mnt, "truncate -s 8 a");
    assert_eq!(fs::read(mnt.join("a")).unwrap(), b"hello\0\0\0");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options().write(true).open(mnt.join("a")).unwrap().set_modified(when).unwrap();
    assert_eq!(fs::metadata(backing.join("a")).unwrap().modified().unwrap(), when);
    assert_eq!(fs::metadata(mnt.join("a")).unwrap().modified().unwrap(), when);
    fs::set_permissions(mnt.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(fs::metadata(mnt.join("a")).unwrap().permissions().mode() & 0o7777, 0o750);
    assert_eq!(fs::metadata(backing.join("a")).unwrap().permissions().mode() & 0o7777, 0o750);
    // Writes at offsets through two handles: each sees the other's.
    let mut one = fs::File::options().read(true).write(true).open(mnt.join("a")).unwrap();
    let two = fs::File::options().read(true).write(true).open(mnt.join("a")).unwrap();
    use std::os::unix::fs::FileExt;
    one.write_all_at(b"HE", 0).unwrap();
    two.write_all_at(b"LO", 3).unwrap();
    let mut seen = [0u8; 5];
    one.read_exact_at(&mut seen, 0).unwrap();
    assert_eq!(&seen, b"HElLO");
    one.flush().unwrap();
    drop((one, two));
    assert_eq!(fs::read(backing.join("a")).unwrap(), b"HElLO\0\0\0");
    // Renames of files and directories, and what listings show.
    fs::create_dir_all(mnt.join("x/y")).unwrap();
    fs::write(mnt.join("x/y/z"), b"z").unwrap();
    fs::rename(mnt.join("x"), mnt.join("w")).unwrap();
    assert_eq!(fs::read(mnt.join("w/y/z")).unwrap(), b"z");
    assert!(!mnt.join("x").exists());
    fs::rename(mnt.join("a"), mnt.join("w/a2")).unwrap();
    let mut names: Vec<String> =
        fs::read_dir(mnt.join("w")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a2", "y"]);
    assert_eq!(fs::read(backing.join("w/a2")).unwrap(), b"HElLO\0\0\0");
    // A file removed while open stays readable and writable through its handle, and is not brought back.
    let open = fs::File::options().read(true).write(true).open(mnt.join("w/a2")).unwrap();
    fs::remove_file(mnt.join("w/a2")).unwrap();
    open.write_all_at(b"!", 0).unwrap();
    let mut first = [0u8; 1];
    open.read_exact_at(&mut first, 0).unwrap();
    assert_eq!(&first, b"!");
    drop(open);
    assert!(!backing.join("w/a2").exists() && !mnt.join("w/a2").exists());
    // Renaming over an open file: its handle keeps the old content; renaming to itself changes nothing.
    fs::write(mnt.join("old"), b"old content").unwrap();
    fs::write(mnt.join("new"), b"new content").unwrap();
    let held = fs::File::open(mnt.join("old")).unwrap();
    fs::rename(mnt.join("new"), mnt.join("old")).unwrap();
    let mut seen = [0u8; 11];
    held.read_exact_at(&mut seen, 0).unwrap();
    assert_eq!(&seen, b"old content");
    drop(held);
    fs::rename(mnt.join("old"), mnt.join("old")).unwrap();
    assert_eq!(fs::read(mnt.join("old")).unwrap(), b"new content");
    assert_eq!(fs::read(backing.join("old")).unwrap(), b"new content");
    assert!(!backing.join("new").exists());
    let stat = sh(mnt, "df -P . | tail -1");
    assert!(stat.split_whitespace().nth(1).is_some_and(|b| b.parse::<u64>().is_ok_and(|b| b > 0)), "{stat}");
}

#[test]
fn a_removed_directory_or_file_still_open_answers_like_a_local_disk() {
    use std::os::unix::fs::PermissionsExt;
    if !fuse_available("a_removed_directory_or_file_still_open_answers_like_a_local_disk") {
        return;
    }
    // TTL 0: the kernel asks the mount for every attribute, so the stale inode is really asked about.
    let m = Mounted::new(&["--metadata-ttl", "0s"]);
    fs::create_dir(m.mnt.join("gone")).unwrap();
    let dir = fs::File::open(m.mnt.join("gone")).unwrap();
    fs::remove_dir(m.mnt.join("gone")).unwrap();
    assert!(dir.metadata().unwrap().is_dir(), "fstat of a removed directory");
    assert_eq!(code(&fs::File::create(m.mnt.join("gone/x")).unwrap_err()), libc::ENOENT);
    // A removed file still open: fchmod, ftruncate and fstat work on it, and nothing reaches the backing.
    fs::write(m.mnt.join("f"), b"content").unwrap();
    let f = fs::File::options().read(true).write(true).open(m.mnt.join("f")).unwrap();
    fs::remove_file(m.mnt.join("f")).unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o600)).unwrap();
    f.set_len(3).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 3);
    drop(f);
    assert!(!m.backing.join("f").exists());
}
