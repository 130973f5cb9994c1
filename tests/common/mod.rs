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

/// Builds a binary the tests run, with the selection the test command builds everything with
/// (`--workspace --all-features`, examples among the targets so that dev-dependencies join the feature
/// resolution as under `cargo test --workspace --all-targets`): the build then reuses every crate the
/// test command built. Any other selection resolves features differently (`-p cli` alone, or this
/// package alone, rebuilt cachefs and a dozen dependencies inside a test: 40 s of its time). Returns the
/// profile's directory (`target/debug` or `target/release`, as for this test binary).
fn build_like_the_test_command(targets: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let mut cmd = cargo();
    cmd.args(["build", "-q", "--workspace", "--all-features"]).args(targets);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("run cargo").success(), "building {targets:?} failed");
    dir
}

/// The path of an example binary of this package, built now (so never stale); `cargo test
/// --all-targets` itself links examples only as test harnesses.
pub fn example(name: &str) -> PathBuf {
    build_like_the_test_command(&["--example", name]).join("examples").join(name)
}

/// The `cachefs` CLI binary, built once per test binary (so never stale).
pub fn cli_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| build_like_the_test_command(&["--bin", "cachefs", "--examples"]).join("cachefs")).clone()
}
