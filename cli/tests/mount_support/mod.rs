//! Mounting for real in tests: the `cachefs mount` binary over a temporary backing directory, always
//! unmounted and stopped at the end (also when the test fails). Without `/dev/fuse` or `fusermount3`
//! the tests print why and return early.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// True if mounting can work here; otherwise prints the reason (the skip is loud, never silent).
pub fn fuse_available(test: &str) -> bool {
    let device = Path::new("/dev/fuse").exists();
    let tool = Command::new("fusermount3").arg("-V").output().is_ok_and(|o| o.status.success());
    if !(device && tool) {
        eprintln!(
            "SKIPPED {test}: FUSE is not available here (/dev/fuse present: {device}, fusermount3 runs: {tool}); \
             install fuse3 (scripts/test does)"
        );
    }
    device && tool
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A running `cachefs mount`.
pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub backing: PathBuf,
    pub mnt: PathBuf,
    pub metrics: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Mounted {
    /// Mounts a fresh backing directory with `args` added to `cachefs mount`.
    pub fn new(args: &[&str]) -> Mounted {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let backing = dir.path().join("backing");
        std::fs::create_dir(&backing).unwrap();
        Mounted::over(dir, backing, args)
    }

    /// Mounts `backing` (inside `dir`) with `args`.
    pub fn over(dir: tempfile::TempDir, backing: PathBuf, args: &[&str]) -> Mounted {
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = dir.path().join(format!("mount-{}.log", std::process::id()));
        let mut m = Mounted { dir, backing, mnt, metrics, child: None, log };
        m.start(args);
        m
    }

    /// Starts (or restarts) the mount process.
    pub fn start(&mut self, args: &[&str]) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cachefs"))
            .arg("mount")
            .arg(&self.backing)
            .arg(&self.mnt)
            .args(["--metrics", &self.metrics])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cachefs mount starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.is_mounted() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("cachefs mount exited with {status} before mounting:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "not mounted after 20 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The metrics server starts right after the mount.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.metrics).is_err() {
            assert!(Instant::now() < deadline, "no metrics server:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mnt = self.mnt.to_string_lossy().replace(' ', "\\040");
        info.lines().any(|l| l.split(' ').nth(4) == Some(mnt.as_str()) && l.contains(" cachefs:"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `/stats.json`.
    pub fn stats(&self) -> serde_json::Value {
        let body = cachefs_cli::http::get(&self.metrics, "/stats.json").expect("stats.json");
        serde_json::from_str(&body).expect("stats.json is JSON")
    }

    /// Unmounts with `fusermount3 -u` and waits for the process (bounded); returns its exit status. A
    /// file closed just before is released by the kernel a moment later: busy is retried for 5 s.
    pub fn unmount(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = Command::new("fusermount3").arg("-u").arg(&self.mnt).output().unwrap();
            if out.status.success() {
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("busy") && Instant::now() < deadline, "fusermount3 -u: {err}");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait()
    }

    /// Sends `signal` and waits for the process (bounded); returns its exit status.
    pub fn signal(&mut self, signal: i32) -> ExitStatus {
        // SAFETY: kill(2) with a pid this test started; no memory involved.
        unsafe { libc::kill(self.pid() as i32, signal) };
        self.wait()
    }

    /// Kills the process with SIGKILL and clears the dead mount.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
        let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.mnt).output();
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cachefs mount did not exit within 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.mnt).output();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&self.mnt).output();
    }
}

/// Runs a shell command (in `dir`), panicking with its output if it fails.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A number from a JSON path.
pub fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or_else(|| panic!("{path:?} in {v}"))
}

/// Deterministic bytes: `len` of them from `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
