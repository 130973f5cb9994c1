//! Real servers for the tier tests, each on a free loopback port, each stopped when its guard drops
//! (also when a test fails): `redis-server`, a 3-node Redis Cluster joined with
//! `redis-cli --cluster create`, and a CNCF distribution registry (`docker-registry`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cachefs::tier::Digest;

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A program the tests need, or a message saying how to get it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed: run scripts/test, which installs it (Debian package `{package}`)")
    })
}

/// Sends one inline command and returns the first reply line.
pub fn redis_command(port: u16, command: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    s.write_all(format!("{command}\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} not ready within {timeout:?}");
}

/// One `redis-server`, no persistence.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    process: Option<Guard>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let mut s = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            process: None,
        };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let exe = require("redis-server", "redis-server");
        let child = Command::new(exe)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--dir"])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.process = Some(Guard(child));
        let port = self.port;
        wait_until("redis-server", Duration::from_secs(10), || {
            redis_command(port, "PING").is_ok_and(|r| r.starts_with("+PONG"))
        });
    }

    /// SIGKILL, now.
    pub fn kill(&mut self) {
        self.process = None;
    }

    pub fn command(&self, command: &str) -> String {
        redis_command(self.port, command).unwrap()
    }
}

/// Three `redis-server --cluster-enabled yes` joined into one cluster, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "5000",
                    "--appendonly",
                    "no",
                ])
            })
            .collect();
        let cli = require("redis-cli", "redis-server");
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new(cli)
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        wait_until("cluster_state:ok on every node", Duration::from_secs(30), || {
            nodes.iter().all(|n| redis_command(n.port, "CLUSTER INFO").is_ok_and(|r| r.contains("cluster_state:ok")))
        });
        RedisCluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Keys held by each node.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                let r = n.command("DBSIZE");
                r.trim().trim_start_matches(':').parse().unwrap_or(0)
            })
            .collect()
    }
}

/// A CNCF distribution registry (`docker-registry serve`) storing in a temporary directory.
pub struct Registry {
    pub port: u16,
    _dir: tempfile::TempDir,
    _process: Guard,
}

impl Registry {
    pub fn start() -> Self {
        let exe = require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: cachefs-test\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(exe)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { port, _dir: dir, _process: Guard(child) };
        let url = format!("{}/v2/", registry.url());
        wait_until("docker-registry", Duration::from_secs(20), || ureq_status(&url) == Some(200));
        registry
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Pushes `bytes` as a blob of `repo` (monolithic upload: POST, then PUT with the digest).
    #[cfg(feature = "oci")]
    pub fn push(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let started = agent.post(&format!("{}/v2/{repo}/blobs/uploads/", self.url())).send_empty().unwrap();
        assert_eq!(started.status().as_u16(), 202, "start upload");
        let location = started.headers().get("location").unwrap().to_str().unwrap().to_string();
        let location = if location.starts_with("http") { location } else { format!("{}{location}", self.url()) };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = agent
            .put(&format!("{location}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        assert_eq!(done.status().as_u16(), 201, "finish upload");
        digest
    }
}

fn ureq_status(url: &str) -> Option<u16> {
    let mut s = TcpStream::connect(url.trim_start_matches("http://").split('/').next()?).ok()?;
    let path = format!("/{}", url.trim_start_matches("http://").split_once('/')?.1);
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n]).ok()?.split(' ').nth(1)?.parse().ok()
}

/// Deterministic bytes (xorshift), `len` of them, from `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `bytes` into a directory origin; returns its digest.
pub fn put_origin(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    std::fs::write(dir.join(d.file_name()), bytes).unwrap();
    d
}

/// Gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use flate2::{Compression, write::GzEncoder};
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}
