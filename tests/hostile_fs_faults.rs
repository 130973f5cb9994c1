//! Random operations with backend faults injected before and after effect (EIO, ENOSPC), in every
//! write mode over `MemBackend` and `OsBackend`. A model keeps, for every path, the set of contents the
//! documentation allows it to have:
//!
//! - a successful write / close / remove / rename fixes the content;
//! - a failed call may or may not have taken effect ("A backend call can fail after it took effect");
//! - a read narrows the set to what it returned (reads must then stay consistent);
//! - after the faults heal, `flush()` must succeed, the cache must agree with the backend, and every
//!   path must hold an allowed content: nothing acknowledged is lost.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use cachefs::fs::{CacheFs, Error, MemBackend, OsBackend, WriteMode};
use common::faulty::{EIO, ENOSPC, Faulty, Op};

type Content = Option<Vec<u8>>;

/// xorshift64*
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: [&str; 5] = ["a", "b", "d/c", "d/e", "d/f/g"];

fn union(set: &mut Vec<Content>, more: impl IntoIterator<Item = Content>) {
    for c in more {
        if !set.contains(&c) {
            set.push(c);
        }
    }
}

fn show(c: &Content) -> String {
    match c {
        None => "missing".into(),
        Some(b) if b.len() >= 8 => format!("v{}({}B)", u64::from_le_bytes(b[..8].try_into().unwrap()), b.len()),
        Some(b) => format!("{b:?}"),
    }
}

fn run(os: bool, mode: WriteMode, seed: u64, steps: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(if os { Faulty::new(OsBackend::new(dir.path()).unwrap()) } else { Faulty::new(MemBackend::new()) });
    let fs = CacheFs::builder(Arc::clone(&store))
        .max_bytes(256 << 10)
        .large_file_threshold(8192)
        .chunk_size(2048)
        .write_mode(mode)
        .build();
    let on_backend = |p: &str| -> Content {
        let mut buf = Vec::new();
        store.inner().read(p, &mut buf).ok().map(|()| buf)
    };
    let mut allowed: BTreeMap<&str, Vec<Content>> = PATHS.iter().map(|p| (*p, vec![None])).collect();
    let mut rng = Rng(seed);
    let mut log: Vec<String> = Vec::new();
    let label = format!("{} {mode:?} seed {seed}", if os { "os" } else { "mem" });
    let fail = |log: &Vec<String>, msg: String| -> Result<(), String> {
        let tail: Vec<_> = log.iter().rev().take(25).rev().cloned().collect();
        Err(format!("[{label}] {msg}\nlast steps:\n{}", tail.join("\n")))
    };
    for step in 0..steps as u64 {
        // Maybe a fault for this step.
        let fault = if rng.below(3) == 0 {
            let op = [Op::Write, Op::Write, Op::Stream, Op::Read, Op::Stat, Op::Any][rng.below(6) as usize];
            let errno = if rng.below(2) == 0 { EIO } else { ENOSPC };
            let (nth, times) = (1 + rng.below(2), 1 + rng.below(2));
            let after = rng.below(2) == 0;
            if after {
                store.fail_after_effect(op, nth, times, errno);
            } else {
                store.fail(op, nth, times, errno);
            }
            format!(" [fault {op:?} nth {nth} x{times} errno {errno}{}]", if after { " after effect" } else { "" })
        } else {
            String::new()
        };
        let p = PATHS[rng.below(PATHS.len() as u64) as usize];
        let q = PATHS[rng.below(PATHS.len() as u64) as usize];
        let len = [16usize, 3000, 20_000][rng.below(3) as usize];
        let v: Vec<u8> = step.to_le_bytes().iter().copied().cycle().take(len).collect();
        let what;
        match rng.below(10) {
            0..=2 => {
                let r = fs.write(p, v.clone());
                what = format!("write {p} v{step}({len}B) -> {:?}", r.as_ref().map_err(|e| e.to_string()));
                match r {
                    Ok(()) => allowed.insert(p, vec![Some(v)]).map(|_| ()).unwrap_or(()),
                    Err(_) => union(allowed.get_mut(p).unwrap(), [Some(v)]),
                }
            }
            3 => {
                let r = fs.create(p).and_then(|mut w| {
                    for c in v.chunks(1000) {
                        if let Err(e) = w.write_all(c) {
                            return Err(Error::Io { path: p.into(), source: e });
                        }
                    }
                    w.close()
                });
                what = format!("writer {p} v{step}({len}B) -> {:?}", r.as_ref().map_err(|e| e.to_string()));
                match r {
                    Ok(()) | Err(Error::Flush { .. }) => {
                        allowed.insert(p, vec![Some(v)]);
                    }
                    Err(_) => union(allowed.get_mut(p).unwrap(), [Some(v)]),
                }
            }
            4 => {
                let r = fs.remove(p);
                what = format!("remove {p} -> {:?}", r.as_ref().map_err(|e| e.to_string()));
                match r {
                    Ok(()) => {
                        allowed.insert(p, vec![None]);
                    }
                    Err(_) => union(allowed.get_mut(p).unwrap(), [None]),
                }
            }
            5 if p != q => {
                let r = fs.rename(p, q);
                what = format!("rename {p} -> {q}: {:?}", r.as_ref().map_err(|e| e.to_string()));
                let from = allowed[p].clone();
                match r {
                    Ok(()) => {
                        allowed.insert(q, from);
                        allowed.insert(p, vec![None]);
                    }
                    Err(_) => {
                        union(allowed.get_mut(p).unwrap(), [None]);
                        union(allowed.get_mut(q).unwrap(), from);
                    }
                }
            }
            6 => {
                let r = fs.flush();
                what = format!("flush -> {:?}", r.as_ref().map_err(|e| e.to_string()));
            }
            7 => {
                let r = fs.remove_all("d");
                what = format!("remove_all d -> {:?}", r.as_ref().map_err(|e| e.to_string()));
                for (path, set) in allowed.iter_mut() {
                    if path.starts_with("d/") {
                        match r {
                            Ok(_) => *set = vec![None],
                            Err(_) => union(set, [None]),
                        }
                    }
                }
            }
            8 => {
                if rng.below(2) == 0 {
                    fs.clear();
                    what = "clear".into();
                } else {
                    what = format!("invalidate {p} -> {:?}", fs.invalidate(p).map_err(|e| e.to_string()));
                }
            }
            _ => {
                what = format!("(read {p})");
            }
        }
        // The fault covers this step only.
        store.heal();
        log.push(format!("{step}: {what}{fault}"));
        // Read one path back: it must hold an allowed content; then that is its content.
        let rp = PATHS[rng.below(PATHS.len() as u64) as usize];
        let got: Option<Content> = match fs.read(rp) {
            Ok(b) => Some(Some(b.to_vec())),
            Err(e) if e.is_not_found() => Some(None),
            Err(e) => {
                log.push(format!("   read {rp} -> error {e}"));
                None
            }
        };
        if let Some(got) = got {
            let set = allowed.get_mut(rp).unwrap();
            if !set.contains(&got) {
                return fail(
                    &log,
                    format!(
                        "read {rp} returned {}, allowed {:?}",
                        show(&got),
                        set.iter().map(show).collect::<Vec<_>>()
                    ),
                );
            }
            log.push(format!("   read {rp} -> {}", show(&got)));
            *set = vec![got];
        }
    }
    store.heal();
    if let Err(e) = fs.flush() {
        return fail(&log, format!("flush after healing failed: {e}"));
    }
    for p in PATHS {
        let cached = match fs.read(p) {
            Ok(b) => Some(b.to_vec()),
            Err(e) if e.is_not_found() => None,
            Err(e) => return fail(&log, format!("read {p} after healing: {e}")),
        };
        let on = on_backend(p);
        if cached != on {
            return fail(&log, format!("after flush, {p}: cache {} but backend {}", show(&cached), show(&on)));
        }
        if !allowed[p].contains(&on) {
            return fail(
                &log,
                format!(
                    "after flush, {p} holds {}, allowed {:?}",
                    show(&on),
                    allowed[p].iter().map(show).collect::<Vec<_>>()
                ),
            );
        }
        let st = fs.stat(p).ok().map(|m| m.len);
        if st != on.as_ref().map(|b| b.len() as u64) {
            return fail(&log, format!("after flush, stat {p} = {st:?}, backend {}", show(&on)));
        }
    }
    let st = fs.stats();
    if st.dirty_entries != 0 || st.dirty_bytes != 0 {
        return fail(&log, format!("dirty after a successful flush: {st:?}"));
    }
    Ok(())
}

fn sweep(seeds: std::ops::Range<u64>, steps: usize) {
    let mut failures = Vec::new();
    for os in [false, true] {
        for mode in [
            WriteMode::WriteThrough,
            WriteMode::WriteBack { delay: Duration::from_millis(2), max_dirty_bytes: 1 << 20 },
            WriteMode::WriteBack { delay: Duration::from_secs(3600), max_dirty_bytes: 1 << 20 },
            WriteMode::WriteAround,
        ] {
            for seed in seeds.clone() {
                if let Err(e) = run(os, mode, seed * 7919 + 1, steps) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failing run(s); first:\n{}", failures.len(), failures[0]);
}

#[test]
fn holds_random_operations_with_faults_lose_nothing_acknowledged() {
    sweep(0..6, 250);
}
