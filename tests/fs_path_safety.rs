//! No `CacheFs` operation, in any write mode, touches a file outside the backend's root, whatever path it
//! is given: `..`, absolute paths, NUL bytes, over-long components, non-UTF-8, or symlinks leading out.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cachefs::fs::{CacheFs, Error, OsBackend, WarmOptions, WriteMode};

/// Every file below `dir` (symlinks not followed) with its content and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), (std::fs::read(e.path()).unwrap_or_default(), m.modified().unwrap()));
            }
        }
    }
    out
}

#[test]
fn nothing_outside_the_root_is_touched() {
    let base = tempfile::tempdir().unwrap();
    let (root, outside) = (base.path().join("root"), base.path().join("outside"));
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
    std::fs::write(outside.join("dir/inner.txt"), b"inner").unwrap();
    std::fs::write(base.path().join("sibling.txt"), b"sibling").unwrap();
    std::fs::create_dir_all(root.join("ok")).unwrap();
    std::fs::write(root.join("ok/file"), b"fine").unwrap();
    symlink(&outside, root.join("escape")).unwrap();
    symlink("../outside", root.join("relative_escape")).unwrap();
    symlink(outside.join("secret.txt"), root.join("file_link")).unwrap();
    symlink(root.join("ok"), root.join("inner_link")).unwrap();
    let before_outside = snapshot(&outside);
    let before_base: Vec<_> = std::fs::read_dir(base.path()).unwrap().map(|e| e.unwrap().file_name()).collect();

    let long = "x".repeat(256);
    let outside_abs = outside.join("secret.txt").display().to_string();
    let evil: Vec<PathBuf> = [
        "../outside/secret.txt",
        "../sibling.txt",
        "ok/../../outside/secret.txt",
        "ok/../../../etc/passwd",
        "/etc/passwd",
        outside_abs.as_str(),
        "a\0b",
        long.as_str(),
        "escape/secret.txt",
        "escape/new.txt",
        "escape/dir/inner.txt",
        "relative_escape/secret.txt",
        "file_link",
        "..",
    ]
    .iter()
    .map(PathBuf::from)
    .chain([PathBuf::from(OsStr::from_bytes(b"bad\xff"))])
    .collect();

    for mode in [
        WriteMode::WriteThrough,
        WriteMode::WriteBack { delay: Duration::from_millis(1), max_dirty_bytes: 1 << 20 },
        WriteMode::WriteAround,
    ] {
        let fs = CacheFs::builder(OsBackend::new(&root).unwrap()).write_mode(mode).build();
        for p in &evil {
            let refused = |r: Result<(), Error>, op: &str| {
                assert!(matches!(r, Err(Error::InvalidPath { .. })), "{mode:?} {op} {p:?}: {r:?}");
            };
            refused(fs.read(p).map(drop), "read");
            refused(fs.read_range(p, 0, 3).map(drop), "read_range");
            refused(fs.write(p, b"pwned".to_vec()), "write");
            refused(fs.stat(p).map(drop), "stat");
            refused(fs.exists(p).map(drop), "exists");
            refused(fs.remove(p), "remove");
            refused(fs.remove_all(p).map(drop), "remove_all");
            // Cache-only: a path the backend would refuse is simply not cached.
            assert!(matches!(fs.invalidate(p), Err(Error::InvalidPath { .. }) | Ok(false)), "{p:?}");
            refused(fs.open(p).map(drop), "open");
            refused(fs.create(p).map(drop), "create");
            // Under a dataset, `escape/..` names a path inside `ds/`: whatever the result, the snapshot
            // below proves nothing outside changed.
            let _ = fs.store_file("ds", p, b"pwned".to_vec());
            let _ = fs.get_file("ds", p);
            refused(
                fs.warm([p], WarmOptions { skip_errors: false, ..WarmOptions::default() })
                    .map(drop)
                    .map_err(|_| Error::InvalidPath { path: String::new(), reason: "warm stopped" }),
                "warm",
            );
            assert!(matches!(fs.batch_flush([p]), Err(Error::Flush { .. }) | Ok(0)));
            assert_eq!(fs.batch_invalidate([p]), 0);
        }
        // The writer handle over a valid name still works; and `ok/file` through the inner link too.
        let mut w = fs.create("ok/new").unwrap();
        w.write_all(b"inside").unwrap();
        w.close().unwrap();
        assert_eq!(&fs.read("inner_link/file").unwrap()[..], b"fine");
        assert!(matches!(fs.warm_dir("escape", WarmOptions::default()), Err(Error::InvalidPath { .. })));
        assert!(matches!(fs.store_file("../outside", "x", vec![1]), Err(Error::InvalidPath { .. })));
        fs.flush().unwrap();
    }
    // Removing everything under the root removes the links, not what they point to.
    let fs = CacheFs::builder(OsBackend::new(&root).unwrap()).build();
    fs.remove_all("").unwrap();
    assert!(root.exists() && std::fs::read_dir(&root).unwrap().next().is_none());
    assert_eq!(snapshot(&outside), before_outside, "a file outside the root changed");
    let after_base: Vec<_> = std::fs::read_dir(base.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(after_base, before_base, "something was created beside the root");
    assert_eq!(std::fs::read(base.path().join("sibling.txt")).unwrap(), b"sibling");
}
