//! Helpers shared by the integration tests that run real programs.
#![allow(dead_code)]

pub mod faulty;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// A child process killed when dropped, so that a failing test leaves nothing running.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `GET path` from `addr` (`host:port`); the body, or an error message.
pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{addr}{path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// A program the tests need, or a message saying how to get it.
pub fn require(program: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()));
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed: run scripts/test, which installs it (Debian package `prometheus`)")
    })
}

/// `cargo`, to build a binary a test runs, without the variables `cargo test` set for the test: some
/// build scripts (ring's) rerun when those change, and would rebuild a chain of crates (ring, rustls,
/// ureq, cachefs) that the test command's next `cargo` call then rebuilds back.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        let set_by_cargo_test = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CFG_"].iter().any(|p| var.starts_with(p))
            || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*var);
        if set_by_cargo_test {
            cmd.env_remove(&*var);
        }
    }
    cmd
}

/// The path of an example binary of this package, built now with the test command's features, so that
/// it reuses what `cargo test --all-features` built (with the default features it rebuilt a third of
/// the dependencies: 50 s of the test command's time; `cargo test --all-targets` itself links examples
/// only as test harnesses).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let mut cmd = cargo();
    cmd.args(["build", "--all-features", "--example", name]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("run cargo").success(), "building example {name}");
    dir.join("examples").join(name)
}
