//! Helpers shared by the `hostile_engine_*` tests (written from the public documentation only).
#![allow(dead_code)]

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Runs `f` on a thread; a panic there fails the test, and so does taking longer than `secs`
/// (a deadlock becomes a failure instead of a hung test run; the stuck thread is leaked).
pub fn watchdog<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(out);
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => {
            let _ = handle.join();
            v
        }
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: no answer in {secs} s (deadlock?)"),
    }
}

/// Like [`watchdog`] but reports whether `f` finished in time instead of panicking.
pub fn finishes_within<T: Send + 'static>(secs: f64, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = f();
        let _ = tx.send(out);
    });
    rx.recv_timeout(Duration::from_secs_f64(secs)).ok()
}

/// A deadline for bounded stress loops.
pub struct Budget {
    end: Instant,
}

impl Budget {
    pub fn new(d: Duration) -> Self {
        Budget { end: Instant::now() + d }
    }
    pub fn left(&self) -> bool {
        Instant::now() < self.end
    }
}

/// Counts every instance of a tracked type: each instance (original or clone) has a unique number,
/// and its drop is recorded in a table, so a double drop or a missing drop is seen.
pub struct Registry {
    next: AtomicU64,
    drops: Vec<AtomicU8>,
    pub overflow: AtomicBool,
    /// Bytes held by live instances (for memory tests).
    pub live_bytes: AtomicU64,
    /// Panics in `clone` when set.
    pub panic_clone: AtomicBool,
    /// Panics in `drop` when set.
    pub panic_drop: AtomicBool,
}

impl Registry {
    pub fn new(max_instances: usize) -> Arc<Self> {
        let mut drops = Vec::with_capacity(max_instances);
        drops.resize_with(max_instances, || AtomicU8::new(0));
        Arc::new(Registry {
            next: AtomicU64::new(0),
            drops,
            overflow: AtomicBool::new(false),
            live_bytes: AtomicU64::new(0),
            panic_clone: AtomicBool::new(false),
            panic_drop: AtomicBool::new(false),
        })
    }
    fn alloc(&self) -> u64 {
        let n = self.next.fetch_add(1, SeqCst);
        if n as usize >= self.drops.len() {
            self.overflow.store(true, SeqCst);
        }
        n
    }
    /// Instances created so far.
    pub fn created(&self) -> u64 {
        self.next.load(SeqCst).min(self.drops.len() as u64)
    }
    /// Instances dropped so far (each counted once even if dropped twice).
    pub fn dropped(&self) -> u64 {
        let n = self.created() as usize;
        self.drops[..n].iter().filter(|d| d.load(SeqCst) > 0).count() as u64
    }
    /// Instances not dropped yet.
    pub fn live(&self) -> u64 {
        self.created() - self.dropped()
    }
    /// Instances dropped more than once.
    pub fn double_drops(&self) -> u64 {
        let n = self.created() as usize;
        self.drops[..n].iter().filter(|d| d.load(SeqCst) > 1).count() as u64
    }
    fn on_drop(&self, inst: u64, bytes: u64) {
        if (inst as usize) < self.drops.len() {
            self.drops[inst as usize].fetch_add(1, SeqCst);
        }
        self.live_bytes.fetch_sub(bytes, SeqCst);
    }
    /// Asserts no double drop, no leak (every instance created has been dropped exactly once).
    pub fn assert_all_dropped_once(&self, what: &str) {
        assert!(!self.overflow.load(SeqCst), "{what}: registry too small");
        assert_eq!(self.double_drops(), 0, "{what}: instances dropped twice");
        assert_eq!(self.live(), 0, "{what}: instances never dropped (created {})", self.created());
    }
}

/// A value (or key) whose instances are counted by a [`Registry`]. `id` is the logical value;
/// clones share it. Optionally carries a heap payload of `payload.len()` bytes.
pub struct Tracked {
    pub id: u64,
    inst: u64,
    pub payload: Vec<u8>,
    reg: Arc<Registry>,
}

impl Tracked {
    pub fn new(reg: &Arc<Registry>, id: u64) -> Self {
        Tracked { id, inst: reg.alloc(), payload: Vec::new(), reg: Arc::clone(reg) }
    }
    pub fn with_payload(reg: &Arc<Registry>, id: u64, bytes: usize) -> Self {
        // Touch every page so the memory is really resident.
        let payload = vec![(id & 0xff) as u8 | 1; bytes];
        reg.live_bytes.fetch_add(bytes as u64, SeqCst);
        Tracked { id, inst: reg.alloc(), payload, reg: Arc::clone(reg) }
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        if self.reg.panic_clone.load(SeqCst) {
            panic!("Tracked::clone told to panic");
        }
        self.reg.live_bytes.fetch_add(self.payload.len() as u64, SeqCst);
        Tracked { id: self.id, inst: self.reg.alloc(), payload: self.payload.clone(), reg: Arc::clone(&self.reg) }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.reg.on_drop(self.inst, self.payload.len() as u64);
        if self.reg.panic_drop.load(SeqCst) && !std::thread::panicking() {
            panic!("Tracked::drop told to panic");
        }
    }
}

impl PartialEq for Tracked {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
    }
}
impl Eq for Tracked {}
impl Hash for Tracked {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}
impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked({})", self.id)
    }
}

/// A key whose every instance hashes the same (adversarial), compared by `0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Colliding(pub u64);

impl Hash for Colliding {
    fn hash<H: Hasher>(&self, h: &mut H) {
        0xdead_beef_u64.hash(h)
    }
}

/// Resident set size of this process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().unwrap();
            return kb * 1024;
        }
    }
    panic!("no VmRSS")
}

/// Runs the `#[ignore]`d test `name` of this test binary in a child process (so that an abort there
/// cannot take the other tests down); returns whether it passed, and its output.
pub fn run_child(name: &str, secs: u64) -> (bool, String) {
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", name, "--test-threads=1", "--nocapture"])
        .env("HOSTILE_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(_st) = child.try_wait().unwrap() {
            break;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (
                false,
                format!(
                    "timed out after {secs} s\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let passed = out.status.success() && text.contains("1 passed");
    (passed, format!("status {:?}\n{text}", out.status))
}
