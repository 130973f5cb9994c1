//! Helpers for the hostile ring tests (written from the public docs only).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cachefs::ring::{Error, RingBuffer};

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub fn seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// A payload for `id` (and a generation `tag`) of `len` bytes; it embeds id and tag when long enough.
pub fn payload(id: u64, tag: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    let mut r = Rng::new(id ^ tag.rotate_left(32) ^ len as u64);
    while out.len() < len {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The length of id's payload in tests that vary it: 0..=max.
pub fn len_for(id: u64, max: usize) -> usize {
    (Rng::new(id ^ 0xABCDEF).next() % (max as u64 + 1)) as usize
}

/// Whether `bytes` is exactly some payload(id, tag, len) for a tag in `tags`.
pub fn is_payload_of(id: u64, bytes: &[u8], tags: impl IntoIterator<Item = u64>) -> bool {
    tags.into_iter().any(|t| payload(id, t, bytes.len()) == bytes)
}

/// Classify an error in a short word.
pub fn kind(e: &Error) -> &'static str {
    match e {
        Error::InvalidOptions { .. } => "InvalidOptions",
        Error::GeometryMismatch { .. } => "GeometryMismatch",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::BadHeader { .. } => "BadHeader",
        Error::FileTooShort { .. } => "FileTooShort",
        Error::Locked { .. } => "Locked",
        Error::ReadOnly { .. } => "ReadOnly",
        Error::StorageFull { .. } => "StorageFull",
        Error::Io { .. } => "Io",
        Error::NotFound { .. } => "NotFound",
        Error::Corrupt { .. } => "Corrupt",
        Error::TooFarAhead { .. } => "TooFarAhead",
        Error::NotIncreasing { .. } => "NotIncreasing",
        Error::ReservedId { .. } => "ReservedId",
        Error::PayloadTooLarge { .. } => "PayloadTooLarge",
        Error::SlotPinned { .. } => "SlotPinned",
        _ => "other",
    }
}

pub fn read_vec(ring: &RingBuffer, id: u64) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    ring.read(id, &mut v)?;
    Ok(v)
}

/// Run test `name` of this binary (an `#[ignore]`d child) with env vars, wait at most `limit`.
/// Returns its output; panics if it died by a signal or ran over time.
pub fn run_child(name: &str, envs: &[(&str, String)], limit: Duration) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "child {name} ran over {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                tail(&String::from_utf8_lossy(&out.stderr))
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = out.status.signal() {
        panic!(
            "child {name} died by signal {sig}\nstdout:\n{}\nstderr:\n{}",
            tail(&String::from_utf8_lossy(&out.stdout)),
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    out
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Asserts a child test succeeded (exit 0), showing its output otherwise.
pub fn assert_child_ok(name: &str, out: &Output) {
    assert!(
        out.status.success(),
        "child {name} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout)),
        tail(&String::from_utf8_lossy(&out.stderr))
    );
}

pub fn env_path(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| panic!("{var} is set by the parent test")))
}

/// Snapshot of all files in a directory: name -> bytes.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut m = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            m.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap());
        }
    }
    m
}

pub fn restore(dir: &Path, snap: &std::collections::BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if !snap.contains_key(&*e.file_name().to_string_lossy()) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    for (name, bytes) in snap {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Offset of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&r.next().to_le_bytes());
    }
    out.truncate(len);
    out
}
