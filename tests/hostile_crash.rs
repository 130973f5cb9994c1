//! kill -9 while writing back: small and large writes, streamed writers, renames and removes, with
//! long names. A child process (this test binary, re-run with `--ignored`) announces each round's
//! paths before touching them and acknowledges the round after `flush()` returned `Ok`; the parent
//! kills it at a random moment. Then:
//! - every file under a real name is a complete, byte-identical version;
//! - every path not touched by the unacknowledged round holds exactly its acknowledged state;
//! - a fresh `CacheFs` (without `remove_temp_files`) reads the same, and writing every path again,
//!   by `write` and by a streamed writer, flushes: no leftover temporary blocks later writes;
//! - temporaries are never listed.

mod kill_window;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use cachefs::fs::{CacheFs, OsBackend, TEMP_MARKER, WriteMode};

const CHILD_DIR: &str = "HOSTILE_CRASH_DIR";
const CHILD_SEED: &str = "HOSTILE_CRASH_SEED";

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Content of version `v`: a header naming it, then bytes derived from it. Sizes straddle the
/// large-file threshold (64 KiB).
fn content(v: u64) -> Vec<u8> {
    let mut rng = Rng(v.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let len = 40 + (rng.next() % 200_000) as usize;
    let mut out = format!("{v}|{len}\n").into_bytes();
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

fn version_of(bytes: &[u8]) -> Option<u64> {
    let header = bytes.split(|&b| b == b'\n').next()?;
    let v: u64 = std::str::from_utf8(header).ok()?.split('|').next()?.parse().ok()?;
    (content(v) == bytes).then_some(v)
}

fn paths() -> Vec<String> {
    let long = "L".repeat(240);
    let uni = "é".repeat(100); // 200 bytes, the temporary's 32-byte prefix cuts a character
    let mut out = Vec::new();
    for i in 0..6 {
        out.push(format!("p/{i}"));
        out.push(format!("q/r/{i}.bin"));
    }
    out.push(format!("{long}/{long}0"));
    out.push(format!("{long}/{long}1"));
    out.push(format!("u/{uni}a"));
    out.push(format!("u/{uni}b"));
    out
}

fn builder(dir: &Path) -> CacheFs {
    CacheFs::builder(OsBackend::new(dir).expect("backend"))
        .max_bytes(512 << 10)
        .large_file_threshold(64 << 10)
        .chunk_size(16 << 10)
        .write_mode(WriteMode::WriteBack { delay: Duration::from_millis(2), max_dirty_bytes: 1 << 20 })
        .build()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}

#[test]
#[ignore = "run by holds_kill9_during_write_back in a child process"]
fn hostile_crash_child() {
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_SEED)) else {
        panic!("run by its parent")
    };
    let seed: u64 = seed.parse().unwrap();
    let fs = builder(Path::new(&dir));
    let all = paths();
    let mut rng = Rng(seed | 1);
    for round in 0..1_000_000u64 {
        // Choose the ops, announce every path they touch, then do them.
        let mut ops = Vec::new();
        for _ in 0..4 {
            let p = all[(rng.next() % all.len() as u64) as usize].clone();
            let q = all[(rng.next() % all.len() as u64) as usize].clone();
            ops.push((rng.next() % 10, p, q));
        }
        let touched: Vec<&str> = ops.iter().flat_map(|(_, p, q)| [p.as_str(), q.as_str()]).collect();
        say(&format!("ROUND {round} {}\n", touched.join("\t")));
        let mut effects: Vec<String> = Vec::new();
        for (i, (kind, p, q)) in ops.iter().enumerate() {
            let v = seed * 10_000_000 + round * 10 + i as u64;
            match kind {
                0..=4 => {
                    fs.write(p, content(v)).expect("write");
                    effects.push(format!("SET\t{p}\t{v}"));
                }
                5 | 6 => {
                    let mut w = fs.create(p).expect("create");
                    for c in content(v).chunks(7000) {
                        w.write_all(c).expect("writer write");
                    }
                    match w.close() {
                        Ok(()) | Err(cachefs::fs::Error::Flush { .. }) => {}
                        Err(e) => panic!("close: {e}"),
                    }
                    effects.push(format!("SET\t{p}\t{v}"));
                }
                7 | 8 if p != q => match fs.rename(p, q) {
                    Ok(()) => effects.push(format!("MOVE\t{p}\t{q}")),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => panic!("rename: {e}"),
                },
                _ => match fs.remove(p) {
                    Ok(()) => effects.push(format!("DEL\t{p}")),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => panic!("remove: {e}"),
                },
            }
        }
        fs.flush().expect("flush");
        let mut msg = String::new();
        for e in effects {
            msg.push_str(&format!("{e}\n"));
        }
        msg.push_str(&format!("ACK {round}\n"));
        say(&msg);
    }
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            walk(&entry.path(), out);
        } else {
            out.push(entry.path());
        }
    }
}

#[test]
fn holds_kill9_during_write_back() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Rng(nanos | 1);
    // path -> acknowledged version (None: acknowledged missing)
    let mut state: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let (mut acks, mut temps) = (0usize, 0usize);
    let mut window = kill_window::KillWindow::new(30, 250);
    for kill in 0..25u64 {
        let mut child = Command::new(&exe)
            .args(["hostile_crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_SEED, (kill + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(window.delay(rng.next()));
        child.kill().unwrap();
        let mut output = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut output).unwrap();
        assert!(!child.wait().unwrap().success(), "the child finished instead of being killed");
        let text = String::from_utf8_lossy(&output);
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let acks_before = acks;
        // Apply acknowledged rounds; remember the paths of the round in flight.
        let mut pending: Vec<(String, Option<u64>, Option<String>)> = Vec::new();
        let mut in_flight: Vec<String> = Vec::new();
        for line in complete.lines() {
            // libtest prints "test hostile_crash_child ... " without a newline before the first round.
            if let Some(rest) = line.find("ROUND ").map(|i| &line[i + 6..]) {
                pending.clear();
                in_flight = rest.split_once(' ').map(|x| x.1).unwrap_or("").split('\t').map(String::from).collect();
            } else if line.starts_with("ACK ") {
                for (p, v, from) in pending.drain(..) {
                    if let Some(from) = from {
                        let moved = state.get(&from).copied().flatten();
                        state.insert(from, None);
                        state.insert(p, moved);
                    } else {
                        state.insert(p, v);
                    }
                }
                in_flight.clear();
                acks += 1;
            } else {
                let f: Vec<&str> = line.split('\t').collect();
                match f[0] {
                    "SET" => pending.push((f[1].into(), Some(f[2].parse().unwrap()), None)),
                    "DEL" => pending.push((f[1].into(), None, None)),
                    "MOVE" => pending.push((f[2].into(), None, Some(f[1].into()))),
                    _ => {}
                }
            }
        }
        window.after_kill(acks - acks_before);
        // Every real name holds a complete version.
        let mut files = Vec::new();
        walk(dir.path(), &mut files);
        for f in &files {
            let name = f.file_name().unwrap().to_string_lossy();
            if name.contains(TEMP_MARKER) {
                temps += 1;
                continue;
            }
            let bytes = std::fs::read(f).unwrap();
            assert!(version_of(&bytes).is_some(), "kill {kill}: {} is partial ({} bytes)", f.display(), bytes.len());
        }
        // Paths the unacknowledged round did not touch hold exactly their acknowledged state.
        let fs = builder(dir.path());
        for (p, v) in &state {
            if in_flight.contains(p) {
                continue;
            }
            let got = match fs.read(p) {
                Ok(b) => Some(version_of(&b).unwrap_or_else(|| panic!("kill {kill}: {p} corrupt through CacheFs"))),
                Err(e) if e.is_not_found() => None,
                Err(e) => panic!("kill {kill}: read {p}: {e}"),
            };
            assert_eq!(got, *v, "kill {kill}: {p} holds {got:?}, acknowledged {v:?}");
        }
        // What the round in flight did is unknown: adopt what is there now (a complete version, checked
        // above, or nothing).
        for p in &in_flight {
            let now = match fs.read(p) {
                Ok(b) => Some(version_of(&b).unwrap_or_else(|| panic!("kill {kill}: {p} corrupt through CacheFs"))),
                Err(e) if e.is_not_found() => None,
                Err(e) => panic!("kill {kill}: read {p}: {e}"),
            };
            state.insert(p.clone(), now);
        }
        // Temporaries are never listed.
        let listed = fs.backend().list("").unwrap();
        assert!(listed.iter().all(|p| !p.contains(TEMP_MARKER)), "kill {kill}: list shows temporaries: {listed:?}");
        // Writing every path again works despite leftover temporaries (no remove_temp_files).
        if kill % 5 == 4 {
            for (i, p) in paths().iter().enumerate() {
                let v = 900_000_000 + kill * 100 + i as u64;
                if i % 2 == 0 {
                    fs.write(p, content(v)).unwrap();
                } else {
                    let mut w = fs.create(p).unwrap();
                    w.write_all(&content(v)).unwrap();
                    w.close().unwrap();
                }
                state.insert(p.clone(), Some(v));
            }
            fs.flush().unwrap_or_else(|e| panic!("kill {kill}: flush after restart: {e}"));
        }
        fs.close().unwrap();
    }
    assert!(acks > 25, "too few acknowledged rounds to prove anything: {acks}");
    eprintln!("25 kills, {acks} acknowledged rounds, {temps} temporaries seen, kill window {} ms", window.span_ms());
}
