//! Hostile tests of `CacheFs`'s write-back promise, from the documentation only:
//!
//! "Write-back: a write is acknowledged only if a flush can complete it (the backend's checks, and no
//! other pending write that makes its path a directory or its parent a file), so only I/O faults can
//! keep it from the backend. ... `flush()` returning `Ok` means every write acknowledged before the
//! call is on the backend."
//!
//! Each scenario is a list of steps run over `MemBackend` and `OsBackend`, in each write mode. A model
//! records what every successful step did; afterwards `flush()` must succeed, the backend must hold
//! exactly what the model says, and reads through the cache must agree with the backend.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use cachefs::fs::{CacheFs, Error, MemBackend, OsBackend, TEMP_MARKER, WriteMode};
use tempfile::TempDir;

#[derive(Clone, Debug)]
enum Step {
    /// write(path, content)
    W(String, Vec<u8>),
    /// remove(path)
    Rm(String),
    /// rename(from, to)
    Mv(String, String),
    /// remove_all(dir)
    RmAll(String),
    /// flush()
    F,
    /// create + write + close; `true`: larger than the large-file threshold (streamed)
    C(String, Vec<u8>, #[allow(dead_code)] bool),
}
use Step::*;

fn w(p: &str, c: &str) -> Step {
    W(p.to_string(), c.as_bytes().to_vec())
}
fn rm(p: &str) -> Step {
    Rm(p.to_string())
}
fn mv(a: &str, b: &str) -> Step {
    Mv(a.to_string(), b.to_string())
}
fn rmall(p: &str) -> Step {
    RmAll(p.to_string())
}
fn c(p: &str, c: &str) -> Step {
    C(p.to_string(), c.as_bytes().to_vec(), false)
}
fn cbig(p: &str, fill: u8) -> Step {
    C(p.to_string(), vec![fill; 20_000], true)
}

const THRESHOLD: u64 = 8192;

struct Env {
    fs: CacheFs,
    dir: Option<TempDir>,
    label: String,
}

fn env(os: bool, mode: WriteMode) -> Env {
    let dir = os.then(|| tempfile::tempdir().unwrap());
    let b = CacheFs::builder_for(os, dir.as_ref());
    let fs = b.max_bytes(1 << 20).large_file_threshold(THRESHOLD).chunk_size(4096).write_mode(mode).build();
    Env { fs, dir, label: format!("{} {mode:?}", if os { "os" } else { "mem" }) }
}

trait BuilderFor {
    fn builder_for(os: bool, dir: Option<&TempDir>) -> cachefs::fs::CacheFsBuilder;
}
impl BuilderFor for CacheFs {
    fn builder_for(os: bool, dir: Option<&TempDir>) -> cachefs::fs::CacheFsBuilder {
        if os {
            CacheFs::builder(OsBackend::new(dir.unwrap().path()).unwrap())
        } else {
            CacheFs::builder(MemBackend::new())
        }
    }
}

fn modes() -> [WriteMode; 4] {
    [
        WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 64 << 20 },
        WriteMode::WriteBack { delay: Duration::from_millis(1), max_dirty_bytes: 64 << 20 },
        WriteMode::WriteThrough,
        WriteMode::WriteAround,
    ]
}

fn canon(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    if p.starts_with('/') || p.contains('\0') {
        return None;
    }
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            x => out.push(x),
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

fn backend_read(fs: &CacheFs, path: &str) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    fs.backend().read(path, &mut buf).ok().map(|()| buf)
}

/// Runs the steps; returns the log of results (for messages).
fn run(steps: &[Step], os: bool, mode: WriteMode) -> Result<(), String> {
    let e = env(os, mode);
    let fs = &e.fs;
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut touched: Vec<String> = Vec::new();
    let mut log = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let result: Result<(), Error> = match step {
            W(p, data) => {
                let r = fs.write(p, data.clone());
                if r.is_ok() {
                    model.insert(canon(p).expect("a write of an invalid path succeeded"), data.clone());
                }
                r
            }
            Rm(p) => {
                let r = fs.remove(p);
                if r.is_ok() {
                    model.remove(&canon(p).unwrap());
                }
                r
            }
            Mv(a, b) => {
                let r = fs.rename(a, b);
                if r.is_ok() {
                    let (a, b) = (canon(a).unwrap(), canon(b).unwrap());
                    if a != b {
                        let moved: Vec<String> = model.keys().filter(|k| under(k, &a)).cloned().collect();
                        for k in moved {
                            let v = model.remove(&k).unwrap();
                            model.insert(format!("{b}{}", &k[a.len()..]), v);
                        }
                    }
                }
                r
            }
            RmAll(d) => {
                let r = fs.remove_all(d).map(|_| ());
                if r.is_ok() {
                    let d = canon(d).unwrap_or_default();
                    model.retain(|k, _| !under(k, &d));
                }
                r
            }
            F => fs.flush(),
            C(p, data, _) => match fs.create(p) {
                Err(e) => Err(e),
                Ok(mut wr) => {
                    let r = data.chunks(3000).try_for_each(|ch| wr.write_all(ch));
                    match r {
                        Err(e) => Err(Error::Io { path: p.clone(), source: e }),
                        Ok(()) => {
                            let r = wr.close();
                            if r.is_ok() || matches!(r, Err(Error::Flush { .. })) {
                                model.insert(canon(p).unwrap(), data.clone());
                            }
                            r
                        }
                    }
                }
            },
        };
        for p in match step {
            W(p, _) | Rm(p) | RmAll(p) | C(p, _, _) => vec![p.clone()],
            Mv(a, b) => vec![a.clone(), b.clone()],
            F => vec![],
        } {
            if let Some(p) = canon(&p) {
                touched.push(p);
            }
        }
        log.push(format!("  {i}: {step:?} -> {:?}", result.as_ref().map_err(|e| e.to_string())));
    }
    let ctx = |msg: String| format!("[{}] {msg}\n{}", e.label, log.join("\n"));
    if let Err(err) = fs.flush() {
        return Err(ctx(format!("flush failed after the steps: {err}")));
    }
    for (p, v) in &model {
        let on = backend_read(fs, p);
        if on.as_deref() != Some(&v[..]) {
            return Err(ctx(format!(
                "after flush Ok, the backend at {p:?} holds {:?}, the acknowledged content is {:?}",
                on.map(|b| String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned()),
                String::from_utf8_lossy(&v[..v.len().min(40)])
            )));
        }
    }
    for p in &touched {
        let on = backend_read(fs, p);
        let cached = fs.read(p).ok().map(|b| b.to_vec());
        if on != cached {
            return Err(ctx(format!(
                "cache and backend disagree at {p:?}: cache {:?}, backend {:?}",
                cached.map(|b| b.len()),
                on.map(|b| b.len())
            )));
        }
        let exists = fs.exists(p).unwrap_or(false);
        let len = fs.stat(p).ok().map(|m| m.len);
        if exists != on.is_some() || len != on.as_ref().map(|b| b.len() as u64) {
            return Err(ctx(format!(
                "metadata disagrees with the backend at {p:?}: exists {exists}, stat len {len:?}, backend {:?}",
                on.map(|b| b.len())
            )));
        }
        if !model.contains_key(p) && on.is_some() && !model.keys().any(|k| under(k, p)) {
            return Err(ctx(format!("{p:?} is on the backend but nothing acknowledged put it there")));
        }
    }
    if let Some(dir) = &e.dir {
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else if entry.file_name().to_string_lossy().contains(TEMP_MARKER) {
                    return Err(ctx(format!("a temporary file was left behind: {}", entry.path().display())));
                }
            }
        }
    }
    Ok(())
}

fn check_all(name: &str, steps: &[Step]) -> Vec<String> {
    let mut failures = Vec::new();
    for os in [false, true] {
        for mode in modes() {
            if let Err(e) = run(steps, os, mode) {
                failures.push(format!("scenario {name}: {e}"));
            }
        }
    }
    failures
}

fn assert_scenarios(scenarios: Vec<(&str, Vec<Step>)>) {
    let mut failures = Vec::new();
    for (name, steps) in &scenarios {
        failures.extend(check_all(name, steps));
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------

#[test]
fn holds_pending_file_and_directory_conflicts_in_any_order() {
    assert_scenarios(vec![
        ("file then child", vec![w("a", "1"), w("a/b", "2")]),
        ("child then file", vec![w("a/b", "1"), w("a", "2")]),
        ("deep child then ancestors", vec![w("a/b/c/d", "1"), w("a", "2"), w("a/b", "3"), w("a/b/c", "4")]),
        ("file then deep child", vec![w("a", "1"), w("a/b/c", "2")]),
        ("dotdot then child", vec![w("x/../a", "1"), w("a/b", "2"), w("./a/./b/", "3")]),
        ("flushed file then child", vec![w("a", "1"), F, w("a/b", "2")]),
        ("flushed child then file", vec![w("a/b", "1"), F, w("a", "2")]),
        ("removed pending file frees the name", vec![w("a", "1"), rm("a"), w("a/b", "2")]),
        ("removed pending child frees the name", vec![w("a/b", "1"), rm("a/b"), w("a", "2")]),
        ("removed flushed child", vec![w("a/b", "1"), F, rm("a/b"), w("a", "2")]),
        ("flushed deep file then grandchild", vec![w("dir/f", "1"), F, w("dir/f/g", "2")]),
        ("writer below pending file", vec![w("a", "1"), c("a/b", "2")]),
        ("writer above pending child", vec![w("a/b", "1"), c("a", "2")]),
        ("streamed writer above pending child", vec![w("a/b", "1"), cbig("a", 7)]),
        ("streamed writer below pending file", vec![w("a", "1"), cbig("a/b", 7)]),
        ("datasets", vec![w("ds/a", "1"), w("ds/a/b", "2"), w("ds", "3")]),
    ]);
}

/// The stale-directory memo: `OsBackend::check` "remembers the directories it has walked". A directory
/// removed and replaced by a file through this very `CacheFs` must not still pass as a directory.
#[test]
fn holds_replaced_directory_is_not_remembered_as_directory() {
    assert_scenarios(vec![
        ("remove_all then file then child", vec![w("d/f", "1"), F, rmall("d"), w("d", "2"), F, w("d/h", "3")]),
        ("remove_all then file pending then child", vec![w("d/f", "1"), F, rmall("d"), w("d", "2"), w("d/h", "3")]),
        (
            "deep remove_all then file then child",
            vec![w("d/e/f", "1"), F, rmall("d"), w("d/e", "2"), F, w("d/e/g", "3"), w("d/e/g/h", "4")],
        ),
        (
            "rename a file over a removed dir",
            vec![w("d/f", "1"), w("x", "x"), F, rmall("d"), mv("x", "d"), w("d/h", "3")],
        ),
    ]);
}

/// Renames and removals that change the namespace under pending writes.
#[test]
fn holds_rename_into_pending_directories() {
    assert_scenarios(vec![
        ("rename a flushed file onto a pending dir", vec![w("x", "1"), F, w("d/y", "2"), mv("x", "d")]),
        ("rename a pending file onto a pending dir", vec![w("t/x", "1"), w("s", "2"), mv("s", "t")]),
        ("rename below a pending file", vec![w("q/w", "1"), F, w("p", "2"), mv("q/w", "p/z")]),
        ("rename a pending file below a pending file", vec![w("q/w", "1"), w("p", "2"), mv("q/w", "p/z")]),
        ("rename a pending child onto its parent", vec![w("a/b", "1"), mv("a/b", "a")]),
        ("rename a file into itself", vec![w("a", "1"), mv("a", "a/b")]),
        ("rename to itself", vec![w("a", "1"), mv("a", "a")]),
        ("rename to itself, flushed", vec![w("a", "1"), F, mv("a", "a")]),
        ("rename to itself, other spelling", vec![w("a/b", "1"), F, mv("a/b", "./a//b/")]),
        ("rename a pending file", vec![w("n", "1"), mv("n", "m"), w("n", "2")]),
        ("rename over a pending file", vec![w("n", "1"), w("m", "old"), mv("n", "m")]),
        ("rename over a flushed then dirty file", vec![w("m", "v1"), F, w("m", "v2"), w("n", "new"), mv("n", "m")]),
        ("rename of a missing file keeps the target", vec![w("t", "dirty"), mv("missing", "t")]),
        ("rename of a missing file keeps the source's dirty sibling", vec![w("t/a", "1"), mv("t/b", "u")]),
        ("rename then write the old name as a dir", vec![w("a", "1"), mv("a", "b"), w("a/c", "2")]),
        ("rename then write the new name's child", vec![w("a", "1"), mv("a", "b"), w("b/c", "2")]),
        ("rename a dir", vec![w("dir/x", "1"), F, mv("dir", "dir2"), w("dir/y", "2")]),
        ("rename a dir with a pending file", vec![w("dir/x", "1"), mv("dir", "dir2")]),
        ("remove a dir", vec![w("dir/x", "1"), F, rm("dir")]),
        ("remove a pending dir", vec![w("dir/x", "1"), rm("dir")]),
        (
            "remove_all a pending tree then reuse",
            vec![w("r/x/y", "1"), w("r/z", "2"), rmall("r"), w("r", "3"), w("r2/x", "4")],
        ),
        ("remove_all prefix is by component", vec![w("ab", "1"), w("a/x", "2"), rmall("a"), w("a", "3")]),
    ]);
}

/// Path shapes: long names, long paths, the temporary-file marker, odd spellings, unicode.
#[test]
fn holds_odd_path_shapes() {
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    let euro85 = "€".repeat(85); // 255 bytes
    let euro86 = "€".repeat(86); // 258 bytes
    // byte 32 of the name falls inside a 2-byte character (the temporary name keeps "up to 32 bytes")
    let split = format!("a{}", "é".repeat(100));
    let split2 = format!("{}b", "é".repeat(127)); // 255 bytes
    let emoji = "😀".repeat(63); // 252 bytes, 4-byte chars
    assert_scenarios(vec![
        ("255-byte name", vec![W(n255.clone(), b"1".to_vec()), W(format!("{n255}/{n255}"), b"2".to_vec())]),
        ("256-byte name", vec![W(n256.clone(), b"1".to_vec())]),
        ("255-byte name of 3-byte chars", vec![W(euro85.clone(), b"1".to_vec()), W(euro86, b"1".to_vec())]),
        (
            "temp name cut inside a char",
            vec![W(split.clone(), b"1".to_vec()), W(format!("{split}x/{split}"), b"2".to_vec())],
        ),
        ("temp name cut inside a char, 255 bytes", vec![W(split2, b"1".to_vec())]),
        ("4-byte chars", vec![W(emoji.clone(), b"1".to_vec()), W(format!("{emoji}d/{emoji}"), b"1".to_vec())]),
        ("streamed writer, char-split name", vec![C(split.clone(), vec![1; 20_000], true)]),
        ("temp marker", vec![w("a.cachefs-tmp.b", "1"), w(".cachefs-tmp.", "2"), w("x.cachefs-tmp.y/z", "3")]),
        (
            "near temp marker",
            vec![w(".cachefs-tmp", "1"), w("cachefs-tmp.", "2"), w(".x.cachefs-tmp.abcdefghijkl", "3")],
        ),
        ("temp marker in a renamed target", vec![w("a", "1"), mv("a", "b.cachefs-tmp.c")]),
        ("temp marker in a renamed dir", vec![w("a/f", "1"), F, mv("a", "d.cachefs-tmp.e")]),
        ("odd spellings", vec![w("a/", "1"), w("./b", "2"), w("c//d", "3"), w("e/./f/.", "4"), w("g/h/../i", "5")]),
        (
            "invalid",
            vec![
                w("", "1"),
                w(".", "2"),
                w("a/..", "3"),
                w("/abs", "4"),
                w("..", "5"),
                w("a/../..", "6"),
                w("n\0ul", "7"),
            ],
        ),
        ("unicode", vec![w("ü/ñ.txt", "1"), w("u\u{308}/n\u{303}.txt", "2"), w("日本/語", "3"), w("tab\tnl\n", "4")]),
        (
            "odd characters",
            vec![w("-dash", "1"), w("sp ace ", "2"), w("back\\slash", "3"), w("...", "4"), w("..a", "5")],
        ),
        ("zero-length file", vec![w("empty", ""), w("empty/x", "1")]),
    ]);
}

/// Paths around PATH_MAX (4096 bytes with its NUL) on `OsBackend`: whatever is acknowledged must flush.
#[test]
fn holds_paths_around_path_max() {
    let mut steps = Vec::new();
    for total in (3900..4200).step_by(7) {
        let mut p = String::new();
        let mut i = 0;
        while p.len() < total {
            let left = total - p.len();
            let comp_len = left.min(200);
            if !p.is_empty() {
                p.push('/');
            }
            let take = comp_len.saturating_sub(if p.is_empty() { 0 } else { 1 }).max(1);
            p.push_str(&format!("{}", (b'a' + (i % 26) as u8) as char).repeat(take));
            i += 1;
        }
        steps.push(W(p, vec![1; 10]));
    }
    // The same with many short components (deep nesting).
    let deep: String = vec!["z"; 2100].join("/");
    steps.push(W(deep, b"deep".to_vec()));
    assert_scenarios(vec![("path lengths", steps)]);
}

/// `remove_all(dir)`: "Removes directory `dir` and every file below it ... from the backend, the dirty
/// set and the cache." Called on a *file*, its outcome depends on whether the flusher has written
/// the file yet: dirty, the file is removed (`Ok(1)`); flushed, it stays (`Ok(0)` on `MemBackend`,
/// `Err(NotADirectory)` on `OsBackend`). Worse, with an older version on the backend and a newer one
/// dirty, the call drops the newer one and the file goes back to the older content.
#[test]
fn remove_all_of_a_file_removes_it_whatever_the_flush_state() {
    let mut report = Vec::new();
    for os in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let b = if os {
            CacheFs::builder(OsBackend::new(dir.path()).unwrap())
        } else {
            CacheFs::builder(MemBackend::new())
        };
        let fs =
            b.write_mode(WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 }).build();
        // the same call on a dirty file and on a flushed one
        fs.write("flushed", b"1".to_vec()).unwrap();
        fs.flush().unwrap();
        fs.write("dirty", b"1".to_vec()).unwrap();
        let r_dirty = fs.remove_all("dirty");
        let r_flushed = fs.remove_all("flushed");
        fs.flush().unwrap();
        let after_dirty = fs.read("dirty").map(|b| b.to_vec());
        let after_flushed = fs.read("flushed").map(|b| b.to_vec());
        if after_dirty.is_ok() != after_flushed.is_ok() || r_dirty.is_ok() != r_flushed.is_ok() {
            report.push(format!(
                "{}: remove_all on a dirty file -> {r_dirty:?}, file now {after_dirty:?}; on a flushed file -> {r_flushed:?}, file now {after_flushed:?}",
                if os { "os" } else { "mem" }
            ));
        }
        // a newer dirty version over an older flushed one
        fs.write("v", b"old".to_vec()).unwrap();
        fs.flush().unwrap();
        fs.write("v", b"new".to_vec()).unwrap();
        let r = fs.remove_all("v");
        fs.flush().unwrap();
        let now = fs.read("v").map(|b| b.to_vec());
        if now.as_deref().ok() == Some(&b"old"[..]) {
            report.push(format!(
                "{}: remove_all(\"v\") -> {r:?} dropped the acknowledged \"new\" and left \"old\"",
                if os { "os" } else { "mem" }
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}
