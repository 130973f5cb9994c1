//! Hostile black-box tests of `cachefs mount`, `cachefs warm` and `cachefs status`, written from the
//! documented promises only (the `//!` docs of `src/mount/mod.rs` and `src/fs/mod.rs`, and `--help`).
//! Where it makes sense the same operations run on a plain temporary directory as the reference.
//! Tests that failed because of a defect in cachefs are kept as regression tests and marked `// Was DEFECT`.

mod mount_support;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mount_support::{Mounted, bytes, fuse_available, n};

const BIN: &str = env!("CARGO_BIN_EXE_cachefs");

/// The errno of a failed call, `None` if it succeeded.
fn errno<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// Runs a python3 script in `dir`; panics with its output if it fails. Returns stdout.
fn py(dir: &Path, script: &str) -> String {
    let out = Command::new("python3").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cachefs ARGS` with a hard time limit.
fn cachefs(args: &[&str], cwd: &Path, limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "cachefs {args:?} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw HTTP GET with a timeout; returns (status line, body).
fn http_get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((head.lines().next().unwrap_or("").to_string(), body.to_string()))
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn tree(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<(String, Vec<u8>)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert((format!("{rel}/"), Vec::new()));
                walk(root, &e.path(), out);
            } else {
                out.insert((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------------
// POSIX semantics against a local reference directory
// ---------------------------------------------------------------------------------------------------

/// Errors of common failing operations, compared errno for errno with a local directory.
fn error_ops(root: &Path) -> Vec<(&'static str, Option<i32>)> {
    let p = |s: &str| root.join(s);
    fs::create_dir(p("d")).unwrap();
    fs::write(p("d/x"), b"1").unwrap();
    fs::write(p("f"), b"file").unwrap();
    let long = "n".repeat(256);
    vec![
        ("rmdir non-empty", errno(fs::remove_dir(p("d")))),
        ("mkdir existing", errno(fs::create_dir(p("d")))),
        ("mkdir over file", errno(fs::create_dir(p("f")))),
        ("open dir for write", errno(OpenOptions::new().write(true).open(p("d")))),
        ("stat below a file", errno(fs::metadata(p("f/x")))),
        ("create below a file", errno(fs::write(p("f/x"), b"1"))),
        ("open missing", errno(File::open(p("missing")))),
        ("create in missing dir", errno(fs::write(p("nodir/x"), b"1"))),
        ("unlink dir", errno(fs::remove_file(p("d")))),
        ("rmdir file", errno(fs::remove_dir(p("f")))),
        ("rename file over dir", errno(fs::rename(p("f"), p("d")))),
        ("rename dir over file", errno(fs::rename(p("d"), p("f")))),
        ("rename dir into itself", errno(fs::rename(p("d"), p("d/sub")))),
        ("rename missing", errno(fs::rename(p("missing"), p("z")))),
        ("O_EXCL on existing", errno(OpenOptions::new().write(true).create_new(true).open(p("f")))),
        ("name of 256 bytes", errno(fs::write(p(&long), b"1"))),
        ("readdir on a file", errno(fs::read_dir(p("f")))),
        ("rename onto non-empty dir", {
            fs::create_dir(p("e")).unwrap();
            fs::create_dir(p("full")).unwrap();
            File::create(p("full/y")).unwrap().sync_all().unwrap();
            errno(fs::rename(p("e"), p("full")))
        }),
    ]
}

#[test]
fn error_codes_match_local_disk() {
    if !fuse_available("error_codes_match_local_disk") {
        return;
    }
    let reference = tempfile::tempdir().unwrap();
    let expected = error_ops(reference.path());
    for mode in ["write-through", "write-back"] {
        let mut m = Mounted::new(&["--mode", mode]);
        let got = error_ops(&m.mnt);
        for ((what, want), (_, have)) in expected.iter().zip(got.iter()) {
            assert_eq!(want, have, "{mode}: {what}: local disk errno {want:?}, cachefs errno {have:?}");
        }
        assert!(m.unmount().success(), "{}", m.log());
    }
}

#[test]
fn rename_over_an_open_file_keeps_the_old_file_readable() {
    // (Failed with EINVAL on the binary built before commit 92d3d62; passes since.)
    if !fuse_available("rename_over_an_open_file_keeps_the_old_file_readable") {
        return;
    }
    fn scenario(dir: &Path) -> (std::io::Result<Vec<u8>>, Vec<u8>) {
        fs::write(dir.join("r1"), b"one").unwrap();
        fs::write(dir.join("r2"), b"two").unwrap();
        let old = File::open(dir.join("r2")).unwrap();
        fs::rename(dir.join("r1"), dir.join("r2")).unwrap();
        let mut buf = vec![0; 16];
        let read = old.read_at(&mut buf, 0).map(|n| buf[..n].to_vec());
        (read, fs::read(dir.join("r2")).unwrap())
    }
    let reference = tempfile::tempdir().unwrap();
    let (want_old, want_new) = scenario(reference.path());
    assert_eq!(want_old.as_ref().unwrap(), b"two");
    for mode in ["write-through", "write-back"] {
        let mut m = Mounted::new(&["--mode", mode]);
        let (old, new) = scenario(&m.mnt);
        assert_eq!(new, want_new, "{mode}: the new r2");
        match old {
            Ok(data) => assert_eq!(data, b"two", "{mode}: the old handle reads the replaced file"),
            Err(e) => panic!("{mode}: reading the handle of a file renamed over fails: {e} (local disk: \"two\")"),
        }
        assert!(m.unmount().success());
    }
}

#[test]
fn write_back_rename_dir_over_dir_holding_only_dirty_files_fails_enotempty() {
    // Was DEFECT (found by this suite, fixed since): in write-back, renaming directory `e` over directory `d` whose only entries are files
    // not yet written out succeeds (the backing `d` is still empty) and the two directories are
    // merged: `d` then lists `x` (d's dirty file) and `y` (e's file). A local disk (and write-through)
    // fails with ENOTEMPTY. By hand (write-back, flush-delay 30s): mkdir e d; echo 1 > e/y; wait for
    // e/y to be written out (or fsync it); echo 2 > d/x; mv -T e d  -> succeeds; ls d -> x y.
    if !fuse_available("write_back_rename_dir_over_dir_holding_only_dirty_files_fails_enotempty") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "60s"]);
    let p = |s: &str| m.mnt.join(s);
    fs::create_dir(p("e")).unwrap();
    let mut y = File::create(p("e/y")).unwrap();
    y.write_all(b"from e").unwrap();
    y.sync_all().unwrap();
    drop(y);
    fs::create_dir(p("d")).unwrap();
    fs::write(p("d/x"), b"precious").unwrap();
    let r = fs::rename(p("e"), p("d"));
    let listing = names(&p("d"));
    assert_eq!(
        errno(r),
        Some(libc::ENOTEMPTY),
        "renaming a directory over a non-empty one succeeded; d now lists {listing:?}"
    );
    assert!(m.unmount().success());
    assert_eq!(names(&m.backing.join("d")), BTreeSet::from(["x".to_string()]));
    assert_eq!(names(&m.backing.join("e")), BTreeSet::from(["y".to_string()]));
}

#[test]
fn unlink_and_recreate_while_old_handle_writes() {
    if !fuse_available("unlink_and_recreate_while_old_handle_writes") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "200ms"]);
    let p = m.mnt.join("z");
    let mut old = File::create(&p).unwrap();
    old.write_all(b"OLD").unwrap();
    fs::remove_file(&p).unwrap();
    fs::write(&p, b"NEW").unwrap();
    old.write_all(b"MORE").unwrap();
    drop(old);
    assert_eq!(fs::read(&p).unwrap(), b"NEW");
    // An unlinked file still open for reading keeps its content.
    fs::write(m.mnt.join("u"), b"unlinked content").unwrap();
    let reader = File::open(m.mnt.join("u")).unwrap();
    fs::remove_file(m.mnt.join("u")).unwrap();
    let mut buf = vec![0; 64];
    let k = reader.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..k], b"unlinked content");
    drop(reader);
    assert!(m.unmount().success(), "{}", m.log());
    assert_eq!(names(&m.backing), BTreeSet::from(["z".to_string()]));
    assert_eq!(fs::read(m.backing.join("z")).unwrap(), b"NEW");
}

#[test]
fn truncate_while_another_handle_reads() {
    if !fuse_available("truncate_while_another_handle_reads") {
        return;
    }
    fn scenario(dir: &Path) -> (usize, u64, Vec<u8>) {
        let p = dir.join("tr");
        fs::write(&p, bytes(7, 100_000)).unwrap();
        let r = File::open(&p).unwrap();
        let mut first = vec![0; 10];
        r.read_exact_at(&mut first, 0).unwrap();
        fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(10).unwrap();
        let mut buf = vec![0; 200_000];
        let got = r.read_at(&mut buf, 0).unwrap();
        let w = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        w.set_len(50).unwrap();
        let len = w.metadata().unwrap().len();
        drop(w);
        (got, len, fs::read(&p).unwrap())
    }
    let reference = tempfile::tempdir().unwrap();
    let want = scenario(reference.path());
    for mode in ["write-through", "write-back", "write-around"] {
        let mut m = Mounted::new(&["--mode", mode, "--flush-delay", "200ms"]);
        assert_eq!(scenario(&m.mnt), want, "{mode}");
        assert!(m.unmount().success());
        assert_eq!(fs::read(m.backing.join("tr")).unwrap(), want.2, "{mode}: backing after unmount");
    }
}

#[test]
fn sparse_and_huge_offsets_fail_cleanly() {
    if !fuse_available("sparse_and_huge_offsets_fail_cleanly") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--max-bytes", "8M", "--flush-delay", "200ms"]);
    // A sparse file inside the budget reads back as zeros plus the byte written.
    let p = m.mnt.join("sparse");
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&p).unwrap();
    f.write_all_at(b"X", 3_000_000).unwrap();
    drop(f);
    let data = fs::read(&p).unwrap();
    assert_eq!(data.len(), 3_000_001);
    assert!(data[..3_000_000].iter().all(|&b| b == 0) && data[3_000_000] == b'X');
    // Far past the budget: ENOSPC, the file unchanged, the mount alive.
    fs::write(m.mnt.join("small"), b"abc").unwrap();
    let f = OpenOptions::new().read(true).write(true).open(m.mnt.join("small")).unwrap();
    assert_eq!(errno(f.write_all_at(b"x", 1 << 62)), Some(libc::ENOSPC));
    assert_eq!(errno(f.set_len(100 << 30)), Some(libc::ENOSPC));
    drop(f);
    assert_eq!(fs::read(m.mnt.join("small")).unwrap(), b"abc");
    assert!(m.unmount().success(), "{}", m.log());
    assert_eq!(fs::read(m.backing.join("sparse")).unwrap(), data);
    assert_eq!(fs::read(m.backing.join("small")).unwrap(), b"abc");
}

#[test]
fn odd_names_round_trip_to_the_backing_dir() {
    if !fuse_available("odd_names_round_trip_to_the_backing_dir") {
        return;
    }
    let odd: Vec<String> = vec![
        "with space".into(),
        " leading space".into(),
        "ünïcødé-名前-🦀".into(),
        "new\nline".into(),
        "tab\there".into(),
        "n".repeat(255),
        "é".repeat(127), // 254 bytes
        "-dash".into(),
        ".hidden".into(),
        "back\\slash".into(),
        "%41percent".into(),
        "*?[glob]".into(),
        "file.tmp".into(),
        ".file.swp".into(),
        "~lock".into(),
        "a.part".into(),
    ];
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "200ms"]);
    fs::create_dir(m.mnt.join("dir with space")).unwrap();
    for (i, name) in odd.iter().enumerate() {
        fs::write(m.mnt.join(name), bytes(i as u64, 100 + i)).unwrap();
        fs::write(m.mnt.join("dir with space").join(name), name.as_bytes()).unwrap();
    }
    let want: BTreeSet<String> = odd.iter().cloned().chain(["dir with space".to_string()]).collect();
    assert_eq!(names(&m.mnt), want);
    for (i, name) in odd.iter().enumerate() {
        assert_eq!(fs::read(m.mnt.join(name)).unwrap(), bytes(i as u64, 100 + i), "{name:?}");
    }
    assert!(m.unmount().success(), "{}", m.log());
    assert_eq!(names(&m.backing), want, "backing after unmount");
    for (i, name) in odd.iter().enumerate() {
        assert_eq!(fs::read(m.backing.join(name)).unwrap(), bytes(i as u64, 100 + i), "{name:?}");
        assert_eq!(fs::read(m.backing.join("dir with space").join(name)).unwrap(), name.as_bytes());
    }
}

#[test]
fn names_with_the_temp_marker_are_reserved_and_crash_leftovers_are_cleaned() {
    // Was DEFECT (found by this suite): such names were refused and hidden without the docs saying so,
    // and temporaries a kill -9 left on the backing dir stayed there. Now documented (the mount docs:
    // names containing `.cachefs-tmp.` are the backend's temporaries, refused with EINVAL, not shown,
    // and leftovers are removed when the mount starts); this checks the documented behaviour literally.
    if !fuse_available("names_with_the_temp_marker_are_reserved_and_crash_leftovers_are_cleaned") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    fs::create_dir_all(backing.join("sub")).unwrap();
    fs::write(backing.join(".pre.cachefs-tmp.Zx81Qa0Lmn2B"), b"left by a crash").unwrap();
    fs::write(backing.join("sub/.f.cachefs-tmp.Qq81Qa0Lmn2B"), b"left by a crash").unwrap();
    fs::write(backing.join("kept"), b"kept").unwrap();
    let mut m = Mounted::over(dir, backing, &["--mode", "write-through"]);
    assert!(!m.backing.join(".pre.cachefs-tmp.Zx81Qa0Lmn2B").exists(), "a leftover temporary stays");
    assert!(!m.backing.join("sub/.f.cachefs-tmp.Qq81Qa0Lmn2B").exists(), "a leftover temporary stays");
    let r = fs::write(m.mnt.join(".x.cachefs-tmp.abcdef"), b"user data");
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    assert_eq!(names(&m.mnt), ["kept", "sub"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    assert!(m.unmount().success());
}

// ---------------------------------------------------------------------------------------------------
// Concurrency through several processes
// ---------------------------------------------------------------------------------------------------

#[test]
fn o_append_from_several_processes_loses_nothing() {
    if !fuse_available("o_append_from_several_processes_loses_nothing") {
        return;
    }
    for mode in ["write-through", "write-back"] {
        let mut m = Mounted::new(&["--mode", mode, "--flush-delay", "300ms"]);
        let script = |p: usize, reopen: bool| {
            format!(
                "import os\nfd=os.open('log',os.O_CREAT|os.O_WRONLY|os.O_APPEND,0o644)\n\
                 for i in range(150):\n    os.write(fd,b'p{p} line %04d ..........................\\n'%i)\n    \
                 if {r}: os.close(fd); fd=os.open('log',os.O_WRONLY|os.O_APPEND)\nos.close(fd)\n",
                r = if reopen { "True" } else { "False" }
            )
        };
        let children: Vec<_> = (0..4)
            .map(|p| Command::new("python3").arg("-c").arg(script(p, p % 2 == 1)).current_dir(&m.mnt).spawn().unwrap())
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let check = |data: &str, where_: &str| {
            let lines: Vec<&str> = data.lines().collect();
            assert_eq!(lines.len(), 600, "{mode} {where_}: lines");
            let distinct: BTreeSet<&str> = lines.iter().copied().collect();
            assert_eq!(distinct.len(), 600, "{mode} {where_}: distinct lines");
            for p in 0..4 {
                let mine: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(&format!("p{p} "))).collect();
                let mut sorted = mine.clone();
                sorted.sort();
                assert_eq!(mine, sorted, "{mode} {where_}: p{p}'s lines out of order");
            }
        };
        check(&fs::read_to_string(m.mnt.join("log")).unwrap(), "mount");
        assert!(m.unmount().success());
        check(&fs::read_to_string(m.backing.join("log")).unwrap(), "backing");
    }
}

#[test]
fn disjoint_pwrites_from_several_processes_all_land() {
    if !fuse_available("disjoint_pwrites_from_several_processes_all_land") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "100ms"]);
    let children: Vec<_> = (0..4)
        .map(|p| {
            let script = format!(
                "import os\nfor i in range(40):\n    fd=os.open('blk',os.O_CREAT|os.O_WRONLY,0o644)\n    \
                 os.pwrite(fd,bytes([65+{p}])*4096,({p}*40+i)*4096)\n    os.close(fd)\n"
            );
            Command::new("python3").arg("-c").arg(script).current_dir(&m.mnt).spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let check = |d: Vec<u8>, where_: &str| {
        assert_eq!(d.len(), 160 * 4096, "{where_}");
        for k in 0..160 {
            assert!(d[k * 4096..(k + 1) * 4096].iter().all(|&b| b == 65 + (k / 40) as u8), "{where_}: block {k}");
        }
    };
    check(fs::read(m.mnt.join("blk")).unwrap(), "mount");
    assert!(m.unmount().success());
    check(fs::read(m.backing.join("blk")).unwrap(), "backing");
}

#[test]
fn mkdir_rmdir_races_keep_mount_and_backing_consistent() {
    if !fuse_available("mkdir_rmdir_races_keep_mount_and_backing_consistent") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "100ms", "--metadata-ttl", "100ms"]);
    let script = "import os, errno\nbad=[]\nfor i in range(150):\n    \
        for f in (lambda: os.mkdir('d'), lambda: open('d/f%d'%os.getpid(),'w').write('x'), \
        lambda: os.unlink('d/f%d'%os.getpid()), lambda: os.rmdir('d')):\n        \
        try: f()\n        except OSError as e:\n            \
        if e.errno not in (errno.EEXIST, errno.ENOENT, errno.ENOTEMPTY): bad.append(errno.errorcode[e.errno])\n\
        print(','.join(sorted(set(bad))))\n";
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new("python3").arg("-c").arg(script).current_dir(&m.mnt).stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "unexpected errors");
    }
    // Clean up what is left, then the mount and the backing agree.
    let _ = py(&m.mnt, "import os, shutil\nshutil.rmtree('d', ignore_errors=True)\nos.mkdir('final')\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(names(&m.mnt), BTreeSet::from(["final".to_string()]));
    assert!(m.unmount().success(), "{}", m.log());
    assert_eq!(names(&m.backing), BTreeSet::from(["final".to_string()]));
}

// ---------------------------------------------------------------------------------------------------
// Write-back: directory operations before the flush, unmount, signals, crashes
// ---------------------------------------------------------------------------------------------------

#[test]
fn write_back_readdir_and_renames_before_flush_then_unmount() {
    if !fuse_available("write_back_readdir_and_renames_before_flush_then_unmount") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "60s"]);
    let mnt = m.mnt.clone();
    fs::create_dir_all(mnt.join("p/q")).unwrap();
    for i in 0..5 {
        fs::write(mnt.join(format!("p/q/f{i}")), bytes(i, 1000 * (i as usize + 1))).unwrap();
    }
    assert_eq!(names(&mnt.join("p/q")), (0..5).map(|i| format!("f{i}")).collect());
    fs::remove_file(mnt.join("p/q/f1")).unwrap();
    fs::rename(mnt.join("p/q/f2"), mnt.join("p/f2-moved")).unwrap();
    // A file open for writing while its directory is renamed twice.
    fs::create_dir_all(mnt.join("x/y")).unwrap();
    let mut open = File::create(mnt.join("x/y/open")).unwrap();
    open.write_all(b"first;").unwrap();
    fs::rename(mnt.join("x"), mnt.join("x2")).unwrap();
    open.write_all(b"second;").unwrap();
    fs::rename(mnt.join("p"), mnt.join("p2")).unwrap();
    fs::rename(mnt.join("x2"), mnt.join("p2/x3")).unwrap();
    open.write_all(b"third").unwrap();
    assert_eq!(names(&mnt.join("p2/q")), BTreeSet::from(["f0".into(), "f3".into(), "f4".into()]));
    assert_eq!(fs::read(mnt.join("p2/f2-moved")).unwrap(), bytes(2, 3000));
    assert!(!mnt.join("p").exists() && !mnt.join("x").exists());
    // A directory emptied of dirty files can be removed.
    fs::create_dir(mnt.join("tmpdir")).unwrap();
    fs::write(mnt.join("tmpdir/a"), b"a").unwrap();
    assert_eq!(errno(fs::remove_dir(mnt.join("tmpdir"))), Some(libc::ENOTEMPTY));
    fs::remove_file(mnt.join("tmpdir/a")).unwrap();
    fs::remove_dir(mnt.join("tmpdir")).unwrap();
    let expected = {
        let mut t = tree(&mnt);
        // The open file is still being written: its content is what it will be after close.
        t.retain(|(p, _)| p != "p2/x3/y/open");
        t.insert(("p2/x3/y/open".into(), b"first;second;third".to_vec()));
        t
    };
    drop(open);
    assert_eq!(tree(&mnt), expected);
    let status = m.unmount();
    assert!(status.success(), "{}", m.log());
    assert_eq!(tree(&m.backing), expected, "backing after unmount");
}

#[test]
fn fsynced_files_survive_kill_9_and_nothing_is_torn() {
    if !fuse_available("fsynced_files_survive_kill_9_and_nothing_is_torn") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "60s"]);
    let mnt = m.mnt.clone();
    fs::create_dir(mnt.join("d")).unwrap();
    for i in 0..12u64 {
        let p = mnt.join(format!("d/f{i}"));
        let len = 50_000 + 7919 * i as usize;
        match i % 3 {
            // write + fsync on the writing handle
            0 => {
                let mut f = File::create(&p).unwrap();
                f.write_all(&bytes(i, len)).unwrap();
                f.sync_all().unwrap();
            }
            // write + close, then fsync on a read-only handle (POSIX: fsync flushes the file)
            1 => {
                fs::write(&p, bytes(i, len)).unwrap();
                File::open(&p).unwrap().sync_all().unwrap();
            }
            // write + close, no fsync
            _ => fs::write(&p, bytes(i, len)).unwrap(),
        }
    }
    // An fsynced file overwritten afterwards (not fsynced): either version, never a torn one.
    let mut f = File::create(mnt.join("ow")).unwrap();
    f.write_all(&bytes(100, 300_000)).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::write(mnt.join("ow"), bytes(101, 200_000)).unwrap();
    m.kill9();
    for i in 0..12u64 {
        let p = m.backing.join(format!("d/f{i}"));
        let want = bytes(i, 50_000 + 7919 * i as usize);
        let got = fs::read(&p).ok();
        if i % 3 != 2 {
            assert_eq!(got.as_ref().map(|g| g.len()), Some(want.len()), "fsynced d/f{i} lost after kill -9");
            assert!(got.unwrap() == want, "fsynced d/f{i} corrupted after kill -9");
        } else if let Some(g) = got {
            assert!(g.is_empty() || g == want, "d/f{i} torn after kill -9: {} bytes", g.len());
        }
    }
    let ow = fs::read(m.backing.join("ow")).unwrap_or_default();
    assert!(
        ow == bytes(100, 300_000) || ow == bytes(101, 200_000) || ow.is_empty(),
        "ow torn after kill -9: {} bytes",
        ow.len()
    );
}

#[test]
fn sigterm_during_a_large_write_keeps_every_acknowledged_byte() {
    if !fuse_available("sigterm_during_a_large_write_keeps_every_acknowledged_byte") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "60s"]);
    fs::write(m.mnt.join("done"), b"closed before the signal").unwrap();
    let script = "import os, time, errno, sys\nfd=os.open('big',os.O_CREAT|os.O_WRONLY,0o644)\nn=0\n\
        try:\n    for i in range(2000):\n        os.write(fd,bytes([i%251])*65536); n+=1\n        \
        print(n, flush=True); time.sleep(0.004)\nexcept OSError as e:\n    pass\n\
        try: os.close(fd)\nexcept OSError: pass\n";
    let writer = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(&m.mnt)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let status = m.signal(libc::SIGTERM);
    let out = writer.wait_with_output().unwrap();
    let acked: usize = String::from_utf8_lossy(&out.stdout).lines().last().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(status.success(), "exit after SIGTERM: {status}\n{}", m.log());
    assert!(acked > 0 && acked < 2000, "the writer was not interrupted ({acked} writes)");
    assert_eq!(fs::read(m.backing.join("done")).unwrap(), b"closed before the signal");
    let big = fs::read(m.backing.join("big")).unwrap();
    assert!(
        big.len() >= acked * 65536,
        "{} bytes on the backing dir, {} acknowledged\n{}",
        big.len(),
        acked * 65536,
        m.log()
    );
    for (k, chunk) in big.chunks(65536).enumerate() {
        assert!(chunk.iter().all(|&b| b == (k % 251) as u8), "chunk {k} of big is wrong");
    }
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn new(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn flush_failure_fails_fsync_and_the_exit() {
    if !fuse_available("flush_failure_fails_fsync_and_the_exit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::new(&dir.path().join("small"), "1m") else {
        eprintln!("SKIPPED flush_failure_fails_fsync_and_the_exit: cannot mount a tmpfs");
        return;
    };
    let backing = tmpfs.0.join("backing");
    fs::create_dir(&backing).unwrap();
    let mut m = Mounted::over(dir, backing, &["--mode", "write-back", "--flush-delay", "60s"]);
    fs::write(m.mnt.join("small"), b"fits").unwrap();
    fs::write(m.mnt.join("too-big"), bytes(1, 2_000_000)).unwrap(); // acknowledged, cannot be flushed
    let mut f = File::create(m.mnt.join("fsynced")).unwrap();
    f.write_all(&bytes(2, 1_500_000)).unwrap();
    let e = f.sync_all();
    assert!(e.is_err(), "fsync of a file that cannot reach the backing dir succeeded");
    drop(f);
    let status = m.unmount();
    assert!(!status.success(), "exit status {status} although files could not be written\n{}", m.log());
    assert!(m.log().contains("failed"), "the failure is not reported:\n{}", m.log());
    assert_eq!(fs::read(m.backing.join("small")).unwrap(), b"fits");
    // Was DEFECT (found by this suite, fixed since): the exit report names only the first file that could not be written ("2 file(s) failed
    // to flush; first: fsynced: ..."); `MountHandle::shutdown` documents that "a failure lists the
    // files that could not be written", so a user cannot tell that `too-big` was lost too.
    let log = m.log();
    assert!(
        log.contains("too-big") && log.contains("fsynced"),
        "the report does not list every file that was lost:\n{log}"
    );
    drop(m);
    drop(tmpfs);
}

#[test]
fn write_back_mtime_does_not_change_when_the_file_is_flushed() {
    // Was DEFECT (found by this suite, fixed since): in write-back, a file's mtime as seen through the mount jumps from the time of the
    // write to the time of the flush (about flush-delay later) without anyone modifying it; a local
    // disk keeps the mtime of the last write. Breaks make, rsync -u and any mtime-based cache check.
    // By hand: mount --mode write-back --flush-delay 1s; echo a > m/f; stat -c %y m/f; sleep 2;
    // stat -c %y m/f  -> differs by ~1 s.
    if !fuse_available("write_back_mtime_does_not_change_when_the_file_is_flushed") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "1s", "--metadata-ttl", "100ms"]);
    let p = m.mnt.join("f");
    fs::write(&p, b"abc").unwrap();
    let before = fs::metadata(&p).unwrap().mtime_nanos_total();
    std::thread::sleep(Duration::from_millis(2500));
    let after = fs::metadata(&p).unwrap().mtime_nanos_total();
    let drift = (after - before).abs() as f64 / 1e9;
    assert!(drift < 0.3, "mtime changed by {drift:.3} s when the file was written out (no modification)");
    assert!(m.unmount().success());
}

trait MtimeNanos {
    fn mtime_nanos_total(&self) -> i128;
}
impl MtimeNanos for fs::Metadata {
    fn mtime_nanos_total(&self) -> i128 {
        self.mtime() as i128 * 1_000_000_000 + self.mtime_nsec() as i128
    }
}

#[test]
fn utimes_and_chmod_after_write_back_reach_the_backing_dir() {
    if !fuse_available("utimes_and_chmod_after_write_back_reach_the_backing_dir") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--flush-delay", "60s"]);
    fs::write(m.mnt.join("t"), b"abc").unwrap();
    let t = std::fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH + Duration::from_secs(946_684_800));
    File::options().write(true).open(m.mnt.join("t")).unwrap().set_times(t).unwrap();
    // Documented: attribute changes reach the backing dir before they are acknowledged.
    assert_eq!(fs::metadata(m.backing.join("t")).unwrap().mtime(), 946_684_800);
    assert_eq!(fs::read(m.backing.join("t")).unwrap(), b"abc");
    fs::write(m.mnt.join("c"), b"abc").unwrap();
    fs::set_permissions(m.mnt.join("c"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(m.backing.join("c")).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(m.mnt.join("c")).unwrap().mode() & 0o777, 0o600);
    assert!(m.unmount().success());
    assert_eq!(fs::metadata(m.backing.join("t")).unwrap().mtime(), 946_684_800, "mtime kept after unmount");
}

// ---------------------------------------------------------------------------------------------------
// Budget, read-only, metadata TTL
// ---------------------------------------------------------------------------------------------------

#[test]
fn enospc_budget_and_recovery() {
    if !fuse_available("enospc_budget_and_recovery") {
        return;
    }
    let mut m = Mounted::new(&["--mode", "write-back", "--max-bytes", "1M", "--flush-delay", "100ms"]);
    let mut a = File::create(m.mnt.join("a")).unwrap();
    a.write_all(&bytes(1, 700_000)).unwrap();
    let b = File::create(m.mnt.join("b")).unwrap();
    assert_eq!(errno(b.write_all_at(&bytes(2, 400_000), 0)), Some(libc::ENOSPC), "past --max-bytes");
    let stats = m.stats();
    assert!(n(&stats, &["open_bytes"]) <= 1 << 20, "open_bytes {} over the budget", n(&stats, &["open_bytes"]));
    a.flush().unwrap();
    drop(a); // the budget is free again
    b.write_all_at(&bytes(2, 400_000), 0).unwrap();
    drop(b);
    let mut c = File::create(m.mnt.join("c")).unwrap();
    c.write_all(&bytes(3, 900_000)).unwrap();
    drop(c);
    assert_eq!(fs::read(m.mnt.join("a")).unwrap(), bytes(1, 700_000));
    assert_eq!(fs::read(m.mnt.join("b")).unwrap(), bytes(2, 400_000));
    assert!(m.unmount().success(), "{}", m.log());
    assert_eq!(fs::read(m.backing.join("a")).unwrap(), bytes(1, 700_000));
    assert_eq!(fs::read(m.backing.join("b")).unwrap(), bytes(2, 400_000));
    assert_eq!(fs::read(m.backing.join("c")).unwrap(), bytes(3, 900_000));
}

#[test]
fn read_only_refuses_every_change_with_erofs() {
    if !fuse_available("read_only_refuses_every_change_with_erofs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    fs::create_dir_all(backing.join("d")).unwrap();
    fs::write(backing.join("f"), b"hi").unwrap();
    let before = tree(&backing);
    let mtime = fs::metadata(backing.join("f")).unwrap().mtime();
    let mut m = Mounted::over(dir, backing, &["--read-only"]);
    let p = |s: &str| m.mnt.join(s);
    assert_eq!(fs::read(p("f")).unwrap(), b"hi");
    let ro = Some(libc::EROFS);
    assert_eq!(errno(OpenOptions::new().write(true).open(p("f"))), ro, "open for write");
    assert_eq!(errno(OpenOptions::new().append(true).open(p("f"))), ro, "open append");
    assert_eq!(errno(OpenOptions::new().write(true).truncate(true).open(p("f"))), ro, "O_TRUNC");
    assert_eq!(errno(fs::write(p("new"), b"x")), ro, "create");
    assert_eq!(errno(OpenOptions::new().write(true).create_new(true).mode(0o600).open(p("new"))), ro);
    assert_eq!(errno(fs::create_dir(p("e"))), ro, "mkdir");
    assert_eq!(errno(fs::remove_dir(p("d"))), ro, "rmdir");
    assert_eq!(errno(fs::remove_file(p("f"))), ro, "unlink");
    assert_eq!(errno(fs::rename(p("f"), p("g"))), ro, "rename");
    assert_eq!(errno(fs::set_permissions(p("f"), fs::Permissions::from_mode(0o777))), ro, "chmod");
    let t = std::fs::FileTimes::new().set_modified(std::time::UNIX_EPOCH);
    assert_eq!(errno(File::open(p("f")).unwrap().set_times(t)), ro, "utimes");
    assert_eq!(errno(File::open(p("f")).and_then(|f| f.sync_all())), None, "fsync of a read-only file");
    assert!(m.unmount().success());
    assert_eq!(tree(&m.backing), before);
    assert_eq!(fs::metadata(m.backing.join("f")).unwrap().mtime(), mtime);
}

#[test]
fn backing_changes_are_seen_after_the_metadata_ttl() {
    if !fuse_available("backing_changes_are_seen_after_the_metadata_ttl") {
        return;
    }
    let mut m = Mounted::new(&["--metadata-ttl", "300ms"]);
    fs::write(m.mnt.join("keep"), b"k").unwrap();
    assert_eq!(names(&m.mnt), BTreeSet::from(["keep".to_string()]));
    assert!(!m.mnt.join("ext").exists());
    fs::write(m.backing.join("ext"), b"from outside").unwrap();
    fs::create_dir(m.backing.join("extdir")).unwrap();
    fs::write(m.backing.join("extdir/x"), b"x").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(names(&m.mnt), BTreeSet::from(["keep".into(), "ext".into(), "extdir".into()]));
    assert_eq!(fs::read(m.mnt.join("ext")).unwrap(), b"from outside");
    assert_eq!(fs::read(m.mnt.join("extdir/x")).unwrap(), b"x");
    fs::remove_file(m.backing.join("ext")).unwrap();
    fs::remove_dir_all(m.backing.join("extdir")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(names(&m.mnt), BTreeSet::from(["keep".to_string()]));
    assert_eq!(errno(fs::read(m.mnt.join("ext"))), Some(libc::ENOENT));
    // Symlinks and special files of the backing dir are not shown (documented).
    std::os::unix::fs::symlink("keep", m.backing.join("link")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(!names(&m.mnt).contains("link"));
    assert!(m.unmount().success());
}

#[test]
fn unsupported_operations_fail_as_documented() {
    if !fuse_available("unsupported_operations_fail_as_documented") {
        return;
    }
    let mut m = Mounted::new(&[]);
    fs::write(m.mnt.join("f"), b"x").unwrap();
    assert_eq!(errno(std::os::unix::fs::symlink("f", m.mnt.join("l"))), Some(libc::EPERM), "symlink");
    assert_eq!(errno(fs::hard_link(m.mnt.join("f"), m.mnt.join("h"))), Some(libc::EPERM), "link");
    assert_eq!(errno(std::os::unix::fs::chown(m.mnt.join("f"), Some(12345), None)), Some(libc::EPERM), "chown");
    assert_eq!(errno(std::os::unix::fs::chown(m.mnt.join("f"), Some(0), Some(0))), None, "chown to self");
    assert_eq!(names(&m.mnt), BTreeSet::from(["f".to_string()]));
    assert!(m.unmount().success());
    assert_eq!(names(&m.backing), BTreeSet::from(["f".to_string()]));
}

// ---------------------------------------------------------------------------------------------------
// Metrics, status, warm
// ---------------------------------------------------------------------------------------------------

#[test]
fn metrics_concurrent_scrapes_and_garbage_requests() {
    if !fuse_available("metrics_concurrent_scrapes_and_garbage_requests") {
        return;
    }
    let mut m = Mounted::new(&[]);
    let addr = m.metrics.clone();
    // Garbage first: binary junk, an enormous path, a bad method.
    for junk in [
        b"\x00\xff\xfe GARBAGE\r\n\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        b"BREW /metrics HTCPCP/1.0\r\n\r\n".to_vec(),
    ] {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let _ = s.write_all(&junk);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    let (status, _) = http_get(&addr, "/no-such-page", Duration::from_secs(5)).unwrap();
    assert!(status.contains("404"), "{status}");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let path = if (t + i) % 2 == 0 { "/metrics" } else { "/stats.json" };
                    let (status, body) = http_get(&addr, path, Duration::from_secs(10)).unwrap();
                    assert!(status.contains("200"), "{path}: {status}");
                    if path == "/stats.json" {
                        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                        assert!(v["backing"]["reads"].is_u64() && v["fs"]["read_hits"].is_u64());
                    } else {
                        assert!(body.contains("# TYPE"), "{body}");
                    }
                }
            })
        })
        .collect();
    // Meanwhile the file system works.
    for i in 0..50 {
        fs::write(m.mnt.join(format!("f{i}")), bytes(i, 1000)).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(m.unmount().success(), "{}", m.log());
}

#[test]
fn metrics_idle_connections_do_not_block_scrapes() {
    // Was DEFECT (found by this suite, fixed since): the metrics server answers one connection at a time and waits ~2 s for a request on
    // each: one idle TCP connection delays every scrape by ~2 s, three idle ones (or one with an
    // unfinished request) by > 5 s, so a single stuck client makes Prometheus scrapes time out.
    // By hand: python3 -c "import socket,time; s=socket.create_connection(('127.0.0.1',PORT));
    // time.sleep(30)" & then time curl http://127.0.0.1:PORT/stats.json  -> ~2 s.
    if !fuse_available("metrics_idle_connections_do_not_block_scrapes") {
        return;
    }
    let m = Mounted::new(&[]);
    let mut idle: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&m.metrics).unwrap()).collect();
    let mut partial = TcpStream::connect(&m.metrics).unwrap();
    partial.write_all(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n").unwrap();
    idle.push(partial);
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let got = http_get(&m.metrics, "/stats.json", Duration::from_secs(15));
    let took = start.elapsed();
    drop(idle);
    let (status, _) = got.expect("a scrape");
    assert!(status.contains("200"));
    assert!(took < Duration::from_millis(1500), "a scrape took {took:?} while 4 other clients were idle");
}

#[test]
fn status_once_against_foreign_and_dead_ports() {
    let tmp = tempfile::tempdir().unwrap();
    // A web server that is not cachefs: 200 with HTML for every path.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming().take(10) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>");
        }
    });
    let out = cachefs(&["status", &addr, "--once"], tmp.path(), Duration::from_secs(20));
    assert!(!out.status.success(), "status against a non-cachefs server succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&addr), "{}", String::from_utf8_lossy(&out.stderr));
    // A server that accepts and never answers: the command still ends.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let out = cachefs(&["status", &silent_addr, "--once"], tmp.path(), Duration::from_secs(30));
    assert!(!out.status.success());
    drop(silent);
    // Nothing listening.
    let dead = mount_support::free_port();
    let out = cachefs(&["status", &format!("127.0.0.1:{dead}"), "--once"], tmp.path(), Duration::from_secs(20));
    assert!(!out.status.success());
    let out = cachefs(&["status", "not an address", "--once"], tmp.path(), Duration::from_secs(20));
    assert!(!out.status.success());
}

fn warm_fixture() -> Mounted {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    fs::create_dir_all(backing.join("sub/deep")).unwrap();
    for (i, f) in
        ["a.txt", "b.bin", "sub/c.txt", "sub/sp ace.txt", "sub/deep/d.txt", "sub/deep/e.bin"].iter().enumerate()
    {
        fs::write(backing.join(f), bytes(i as u64, 1000)).unwrap();
    }
    Mounted::over(dir, backing, &[])
}

fn reads(m: &Mounted) -> u64 {
    n(&m.stats(), &["backing", "reads"])
}

#[test]
fn warm_glob_star_stays_within_one_component() {
    // Was DEFECT (found by this suite, fixed since): `--glob` documents "`*` within a component, `**` across", but `*` also matches `/`:
    // `cachefs warm MNT --glob '*.txt'` warms a.txt AND sub/c.txt, sub/sp ace.txt, sub/deep/d.txt
    // ("warmed 4 of 4 files"), and `--glob '*/d.txt'` matches sub/deep/d.txt.
    if !fuse_available("warm_glob_star_stays_within_one_component") {
        return;
    }
    let mut m = warm_fixture();
    let mnt = m.mnt.to_string_lossy().into_owned();
    let out = cachefs(&["warm", &mnt, "--glob", "*.txt"], &m.mnt, Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reads(&m), 1, "--glob '*.txt' read {} files from the backing dir; only a.txt matches", reads(&m));
    let out = cachefs(&["warm", &mnt, "--glob", "*/d.txt"], &m.mnt, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(reads(&m), 1, "--glob '*/d.txt' matched sub/deep/d.txt");
    let out = cachefs(&["warm", &mnt, "--glob", "**/d.txt"], &m.mnt, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(reads(&m), 2, "--glob '**/d.txt' must match sub/deep/d.txt");
    assert!(m.unmount().success());
}

#[test]
fn warm_backing_paths_then_reads_never_touch_the_backing_dir() {
    if !fuse_available("warm_backing_paths_then_reads_never_touch_the_backing_dir") {
        return;
    }
    let mut m = warm_fixture();
    let backing = m.backing.to_string_lossy().into_owned();
    // A backing directory path, relative paths from inside the backing dir, `..` components.
    let out =
        cachefs(&["warm", &format!("{backing}/sub/../sub"), "--priority", "low"], &m.mnt, Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reads(&m), 4, "the 4 files below sub/ were read once each");
    let out = cachefs(&["warm", "a.txt", "./b.bin"], &m.backing, Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reads(&m), 6);
    // Every file is now cached: reading them all through the mount reaches the backing dir 0 times.
    for f in ["a.txt", "b.bin", "sub/c.txt", "sub/sp ace.txt", "sub/deep/d.txt", "sub/deep/e.bin"] {
        assert_eq!(fs::read(m.mnt.join(f)).unwrap().len(), 1000);
    }
    assert_eq!(reads(&m), 6, "reads of warmed files reached the backing dir");
    // Warming again reads nothing.
    let out = cachefs(&["warm", &m.mnt.to_string_lossy()], &m.mnt, Duration::from_secs(30));
    assert!(out.status.success());
    assert_eq!(reads(&m), 6, "warming cached files read them again");
    assert!(m.unmount().success());
}

#[test]
fn warm_missing_paths_bad_lists_and_foreign_paths_fail() {
    if !fuse_available("warm_missing_paths_bad_lists_and_foreign_paths_fail") {
        return;
    }
    let mut m = warm_fixture();
    let mnt = m.mnt.to_string_lossy().into_owned();
    let missing = format!("{mnt}/nope");
    let out = cachefs(&["warm", &missing], &m.mnt, Duration::from_secs(30));
    assert!(!out.status.success(), "warming a missing path succeeded");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    let out = cachefs(&["warm", "/etc/hostname"], &m.mnt, Duration::from_secs(30));
    assert!(!out.status.success(), "warming a path outside any mount succeeded");
    // A list with blank lines, trailing spaces and CRLF is fine when every named file exists.
    let list = m.dir.path().join("list");
    fs::write(&list, format!("{mnt}/a.txt\n\n{mnt}/sub/c.txt\n\n")).unwrap();
    let out = cachefs(&["warm", "--list", &list.to_string_lossy()], &m.mnt, Duration::from_secs(30));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(reads(&m), 2);
    // A list naming a missing file fails and names it.
    fs::write(&list, format!("{mnt}/a.txt\n{mnt}/missing-in-list\n")).unwrap();
    let out = cachefs(&["warm", "--list", &list.to_string_lossy()], &m.mnt, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing-in-list"));
    let out = cachefs(&["warm", "--list", "/no/such/list"], &m.mnt, Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(m.unmount().success());
}
