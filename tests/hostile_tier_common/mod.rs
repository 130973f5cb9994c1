//! Helpers for the hostile tests of `cachefs::tier` (written from the public docs only): real servers on
//! free loopback ports, killed on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Guard(pub Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

pub fn wait_port(port: u16, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A real redis-server on `port` (no persistence), with extra args.
pub struct Redis {
    pub port: u16,
    pub guard: Option<Guard>,
    pub dir: tempfile::TempDir,
}
impl Redis {
    pub fn start(extra: &[&str]) -> Redis {
        Self::start_on(free_port(), extra)
    }
    pub fn start_on(port: u16, extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", dir.path().to_str().unwrap(), "--protected-mode", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("redis-server installed");
        let guard = Guard(child);
        assert!(wait_port(port, Duration::from_secs(10)), "redis-server did not start on {port}");
        // wait for PING
        let t = Instant::now();
        loop {
            if cli(port, &["PING"]).trim() == "PONG" || t.elapsed() > Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { port, guard: Some(guard), dir }
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
    pub fn kill(&mut self) {
        self.guard.take();
    }
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn cli_raw(port: u16, args: &[&str], stdin_bytes: Option<&[u8]>) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut c = cmd.spawn().unwrap();
    if let Some(b) = stdin_bytes {
        c.stdin.take().unwrap().write_all(b).unwrap();
    } else {
        drop(c.stdin.take());
    }
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// All keys of a server.
pub fn scan(port: u16) -> Vec<String> {
    let mut v: Vec<String> = cli(port, &["--scan"]).lines().map(|s| s.to_string()).filter(|s| !s.is_empty()).collect();
    v.sort();
    v
}

/// A 3-node Redis Cluster (no replicas).
pub struct Cluster {
    pub nodes: Vec<Redis>,
}
impl Cluster {
    pub fn start() -> Cluster {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // cluster bus port = port + 10000 must be free too
            let port = loop {
                let p = free_port();
                if p < 55000 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
                    break p;
                }
            };
            nodes.push(Redis::start_on(port, &["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]));
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster".to_string(), "create".to_string()];
        args.extend(addrs.iter().cloned());
        args.extend(["--cluster-replicas", "0", "--cluster-yes"].iter().map(|s| s.to_string()));
        let out = Command::new("redis-cli").args(&args).output().unwrap();
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let t = Instant::now();
        loop {
            let ok = nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster { nodes }
    }
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
    pub fn all_keys(&self) -> Vec<(u16, String)> {
        let mut v = Vec::new();
        for n in &self.nodes {
            for k in scan(n.port) {
                v.push((n.port, k));
            }
        }
        v
    }
}

/// A TCP server that accepts and never answers (a hung Redis). Dropping it stops accepting.
pub struct Silent {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}
impl Silent {
    pub fn start() -> Silent {
        Self::start_on(0)
    }
    pub fn start_on(port: u16) -> Silent {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Silent { port, stop, thread: Some(thread) }
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fake Redis answering every command with an error reply.
pub struct ErrServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}
impl ErrServer {
    pub fn start(reply: &'static str) -> ErrServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let s3 = s2.clone();
                        std::thread::spawn(move || {
                            c.set_nonblocking(false).ok();
                            c.set_read_timeout(Some(Duration::from_millis(200))).ok();
                            let mut buf = [0u8; 65536];
                            while !s3.load(Ordering::SeqCst) {
                                match c.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(n) => {
                                        // one error per command: count '*' at line starts (RESP arrays)
                                        let cmds = buf[..n].windows(1).filter(|w| w[0] == b'*').count().max(1);
                                        for _ in 0..cmds {
                                            if c.write_all(reply.as_bytes()).is_err() {
                                                return;
                                            }
                                        }
                                    }
                                    Err(e)
                                        if e.kind() == std::io::ErrorKind::WouldBlock
                                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                                    Err(_) => break,
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ErrServer { port, stop }
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
impl Drop for ErrServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A real docker-registry (distribution 2.8) on a free port with filesystem storage.
pub struct Registry {
    pub port: u16,
    _guard: Guard,
    _dir: tempfile::TempDir,
}
impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry installed");
        let guard = Guard(child);
        assert!(wait_port(port, Duration::from_secs(15)), "registry did not start");
        Registry { port, _guard: guard, _dir: dir }
    }
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// Pushes `bytes` as a blob of `repo` (POST then PUT), returning its digest string.
    pub fn push(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", sha_hex(bytes));
        let (status, headers, _) = http(self.port, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(status, 202, "POST upload");
        let loc = header(&headers, "location").expect("Location");
        let path = loc.split_once("://").map(|(_, r)| &r[r.find('/').unwrap()..]).unwrap_or(&loc).to_string();
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, _, body) = http(
            self.port,
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(status, 201, "PUT upload: {}", String::from_utf8_lossy(&body));
        digest
    }
}

pub fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
    })
}

/// A minimal HTTP/1.1 request with Connection: close. Returns (status, headers, body).
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, resp[end + 4..].to_vec())
}

pub fn sha_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(bytes);
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Files in a directory (names), sorted.
pub fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

pub fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

pub fn path_str(p: &Path) -> PathBuf {
    p.to_path_buf()
}

/// What the fault proxy does to the next blob GETs.
#[derive(Clone, Debug, Default)]
pub struct ProxyMode {
    /// Answer blob GETs with this status (and a small body) instead of forwarding.
    pub status: Option<u16>,
    /// Cut the body after this many bytes, for the next `cuts` blob GETs (u32::MAX: every one).
    pub cut_after: Option<u64>,
    pub cuts: u32,
    /// Drop the Range header of requests (a server that ignores Range).
    pub ignore_range: bool,
    /// Stop sending (keep the connection open) after this many body bytes, for the next `cuts` GETs.
    pub hang_after: Option<u64>,
}

/// (method, path, range header, authorization header) of every request a proxy saw.
pub type RequestLog = Arc<std::sync::Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

pub struct Proxy {
    pub port: u16,
    pub mode: Arc<std::sync::Mutex<ProxyMode>>,
    pub log: RequestLog,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let mode = Arc::new(std::sync::Mutex::new(ProxyMode::default()));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m2, l2, s2) = (mode.clone(), log.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (m3, l3, s3) = (m2.clone(), l2.clone(), s2.clone());
                        std::thread::spawn(move || {
                            let _ = serve(c, upstream, m3, l3, s3);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Proxy { port, mode, log, stop }
    }
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn set(&self, m: ProxyMode) {
        *self.mode.lock().unwrap() = m;
    }
    pub fn blob_gets(&self) -> Vec<(String, Option<String>)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _, _)| m == "GET" && p.contains("/blobs/"))
            .map(|(_, p, r, _)| (p.clone(), r.clone()))
            .collect()
    }
}
impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// One request per connection (the origin's client does not reuse them); the loop only frames it.
#[allow(clippy::never_loop)]
fn serve(
    mut c: TcpStream,
    upstream: u16,
    mode: Arc<std::sync::Mutex<ProxyMode>>,
    log: RequestLog,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    c.set_nonblocking(false)?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        // read one request head (requests from the origin have no body)
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if c.read(&mut b)? == 0 {
                return Ok(());
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or("").to_string();
        let mut parts = first.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let hdrs: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        let get = |n: &str| hdrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        log.lock().unwrap().push((method.clone(), path.clone(), get("range"), get("authorization")));
        let is_blob = path.contains("/blobs/sha256:");
        let m = {
            let mut g = mode.lock().unwrap();
            let snapshot = g.clone();
            if is_blob && method == "GET" && (g.cut_after.is_some() || g.hang_after.is_some()) && g.cuts != u32::MAX {
                if g.cuts > 0 {
                    g.cuts -= 1;
                }
                if g.cuts == 0 {
                    g.cut_after = None;
                    g.hang_after = None;
                }
            }
            snapshot
        };
        if is_blob && let Some(code) = m.status {
            let body = format!("{{\"errors\":[{{\"code\":\"INJECTED\",\"message\":\"status {code}\"}}]}}");
            write!(
                c,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        // forward, Connection: close upstream
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        let mut req = format!("{first}\r\n");
        for (k, v) in &hdrs {
            if k.eq_ignore_ascii_case("connection") || (m.ignore_range && k.eq_ignore_ascii_case("range")) {
                continue;
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        up.write_all(req.as_bytes())?;
        let mut resp_head = Vec::new();
        while !resp_head.ends_with(b"\r\n\r\n") {
            if up.read(&mut b)? == 0 {
                return Ok(());
            }
            resp_head.push(b[0]);
        }
        c.write_all(&resp_head)?;
        let limit = if is_blob && method == "GET" { m.cut_after.or(m.hang_after) } else { None };
        let mut sent = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let mut n = up.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(lim) = limit
                && sent + n as u64 >= lim
            {
                n = (lim - sent) as usize;
                c.write_all(&buf[..n])?;
                c.flush()?;
                if m.hang_after.is_some() {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                        // detect the client going away
                        c.set_nonblocking(true)?;
                        let mut x = [0u8; 1];
                        let gone = matches!(c.read(&mut x), Ok(0));
                        c.set_nonblocking(false)?;
                        if gone {
                            break;
                        }
                    }
                }
                let _ = c.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
            c.write_all(&buf[..n])?;
            sent += n as u64;
        }
        // upstream closed: close too (we always forward Connection: close)
        return Ok(());
    }
}
