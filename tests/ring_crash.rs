//! Crash recovery (must-show 1): a child process appends records, flushing every `K` and printing the
//! last flushed id; the parent kills it with SIGKILL at a random moment, 50 times per I/O mode, over one
//! ring. After every kill the ring reopens (alternately in the other mode) and serves every flushed
//! record byte-identical; every record it reports (the latest id and one lap back) is intact, apart from
//! the oldest, whose slot a write cut short by the kill may have been replacing; nothing is corrupt.
#![cfg(feature = "ring")]

mod kill_window;
mod ring_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use cachefs::ring::{Error, IoMode, RingBuffer};
use ring_common::{Rng, len_for, options, payload, time_seed};

const CHILD_DIR: &str = "CACHEFS_RING_CRASH_DIR";
const CHILD_MODE: &str = "CACHEFS_RING_CRASH_MODE";
const KILLS: usize = 50;
const RECORDS: u64 = 64;
const SIZE: u32 = 256;
const FLUSH_EVERY: u64 = 16;

fn mode_named(name: &str) -> IoMode {
    if name == "pread" { IoMode::Pread } else { IoMode::Mmap }
}

/// The child: the parent runs it (with `--ignored`) in a process it kills. Appends until killed.
#[test]
#[ignore = "a child process of the SIGKILL loops"]
fn crash_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        panic!("crash_child is run by its parent test, which sets its environment")
    };
    let ring =
        RingBuffer::open(Path::new(&dir).join("ring.dat"), options(mode_named(&mode), RECORDS, SIZE)).expect("open");
    let max = ring.max_payload();
    let first = ring.latest_id().map_or(0, |l| l + 1);
    let mut out = std::io::stdout().lock();
    for id in first..first + 10_000_000 {
        ring.write(id, &payload(id, len_for(id, max))).expect("write");
        if (id + 1).is_multiple_of(FLUSH_EVERY) {
            ring.flush().expect("flush");
            // One write per line: a kill can cut it, and the parent ignores an unterminated last line.
            out.write_all(format!("FLUSHED {id}\n").as_bytes()).expect("stdout");
            out.flush().expect("stdout");
        }
    }
}

fn sigkill_loop(mode: IoMode) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.dat");
    let exe = std::env::current_exe().unwrap();
    let seed = time_seed();
    let mut rng = Rng(seed);
    let (mut flushed, mut flushes, mut checked, mut cut_oldest, started) =
        (None::<u64>, 0usize, 0u64, 0, Instant::now());
    let mut window = kill_window::KillWindow::new(10, 70);
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_MODE, mode.name())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(window.delay(rng.next()));
        child.kill().unwrap(); // SIGKILL
        let mut output = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut output).unwrap();
        assert!(!child.wait().unwrap().success(), "the child ran to completion instead of being killed");
        let text = String::from_utf8_lossy(&output);
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let flushes_before = flushes;
        for line in complete.lines().filter_map(|l| l.strip_prefix("FLUSHED ")) {
            let id: u64 = line.parse().unwrap();
            assert!(flushed.is_none_or(|f| id > f), "flushed ids increase");
            flushed = Some(id);
            flushes += 1;
        }
        window.after_kill(flushes - flushes_before);

        // Reopen, in the other mode every other time, and check the ring against what was acknowledged.
        let reopen_mode = if kill % 2 == 0 { mode } else { [IoMode::Pread, IoMode::Mmap][mode as usize] };
        let ring = RingBuffer::open(&path, options(reopen_mode, RECORDS, SIZE)).unwrap();
        let max = ring.max_payload();
        let Some(latest) = ring.latest_id() else {
            assert!(flushed.is_none(), "kill {kill} (seed {seed}): flushed records lost, the ring is empty");
            continue;
        };
        if let Some(f) = flushed {
            assert!(latest >= f, "kill {kill} (seed {seed}): latest {latest} is before the flushed id {f}");
        }
        let oldest = (latest + 1).saturating_sub(RECORDS);
        let mut buf = Vec::new();
        for id in oldest..=latest {
            match ring.read(id, &mut buf) {
                Ok(_) => assert!(buf == payload(id, len_for(id, max)), "kill {kill} (seed {seed}): {id} differs"),
                Err(Error::NotFound { .. }) if id == oldest => cut_oldest += 1,
                Err(e) => panic!("kill {kill} (seed {seed}): record {id} of {oldest}..={latest}: {e}"),
            }
            checked += 1;
        }
        let report = ring.verify(|_, _| {}).unwrap();
        assert!(report.is_clean(), "kill {kill} (seed {seed}): {report:?}");
        assert_eq!(ring.stats().crc_failures, 0);
    }
    assert!(flushes > KILLS, "the children flushed too little to prove anything: {flushes}");
    eprintln!(
        "{mode:?}: {KILLS} kills, {flushes} flushes acknowledged, last flushed id {flushed:?}, {checked} records \
         checked byte for byte, oldest record cut by an interrupted write {cut_oldest} times, 0 corrupt, kill \
         window {} ms, {:.1} s",
        window.span_ms(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigkill_never_loses_a_flushed_record_mmap() {
    sigkill_loop(IoMode::Mmap);
}

#[test]
fn sigkill_never_loses_a_flushed_record_pread() {
    sigkill_loop(IoMode::Pread);
}
