//! Path checking: no path given to `CacheFs` or straight to `OsBackend` reaches outside the root, through
//! `..`, absolute paths, NUL bytes, long or odd components, or a symlink inside the root that points out.
//! A refused path is a typed error; an accepted write lands under the root, at the canonical path.
#![no_main]

use std::path::{Path, PathBuf};

use arbitrary::Arbitrary;
use cachefs::fs::{Backend, CacheFs, OsBackend};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Write(String),
    Read(String),
    Stat(String),
    Remove(String),
    Rename(String, String),
    RemoveAll(String),
    Exists(String),
    BackendWrite(String),
    BackendRead(String),
    BackendRemove(String),
    BackendRename(String, String),
    BackendCreate(String),
}

/// Every file below `dir`, with its content.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|ops: Vec<Op>| {
    let top = tempfile::tempdir().expect("a temp dir");
    let (root, outside) = (top.path().join("root"), top.path().join("outside"));
    std::fs::create_dir_all(root.join("d")).expect("root");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::write(outside.join("secret"), b"secret").expect("sentinel");
    std::os::unix::fs::symlink(&outside, root.join("link")).expect("a symlink out of the root");
    std::os::unix::fs::symlink(outside.join("secret"), root.join("d/file_link")).expect("a file symlink out");
    let before = files(&outside);

    let backend = OsBackend::new(&root).expect("backend");
    let fs = CacheFs::builder(OsBackend::new(&root).expect("backend")).build();
    for op in ops.iter().take(16) {
        match op {
            Op::Write(p) => {
                if fs.write(p, b"data".to_vec()).is_ok() {
                    assert_eq!(fs.read(p).expect("a written file reads back").as_ref(), b"data");
                }
            }
            Op::Read(p) => {
                if let Ok(data) = fs.read(p) {
                    assert_ne!(data.as_ref(), b"secret", "read {p:?} outside the root");
                }
            }
            Op::Stat(p) => {
                let _ = fs.stat(p);
            }
            Op::Remove(p) => {
                let _ = fs.remove(p);
            }
            Op::Rename(a, b) => {
                let _ = fs.rename(a, b);
            }
            Op::RemoveAll(p) => {
                let _ = fs.remove_all(p);
            }
            Op::Exists(p) => {
                let _ = fs.exists(p);
            }
            Op::BackendWrite(p) => {
                let _ = backend.write(p, b"data");
            }
            Op::BackendRead(p) => {
                let mut buf = Vec::new();
                if backend.read(p, &mut buf).is_ok() {
                    assert_ne!(buf, b"secret", "the backend read {p:?} outside the root");
                }
            }
            Op::BackendRemove(p) => {
                let _ = backend.remove(p);
            }
            Op::BackendRename(a, b) => {
                let _ = backend.rename(a, b);
            }
            Op::BackendCreate(p) => {
                if let Ok(f) = backend.create(p) {
                    let _ = f.commit();
                }
            }
        }
        assert_eq!(files(&outside), before, "something outside the root changed after {op:?}");
    }
    // Nothing appeared beside the root either.
    let mut names: Vec<_> = std::fs::read_dir(top.path()).expect("top").flatten().map(|e| e.file_name()).collect();
    names.sort();
    assert_eq!(names, ["outside", "root"], "something was created beside the root");
});
