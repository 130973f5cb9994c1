//! A cache under a bounded synthetic load, serving its metrics at `http://127.0.0.1:PORT/metrics`.
//!
//! ```sh
//! cargo run --release --example metrics_server -- --port 9898 --seconds 60
//! curl -s 127.0.0.1:9898/metrics | head
//! ```
//!
//! `--port 0` picks a free port. The first line printed is `listening on 127.0.0.1:PORT`. The load and the
//! server stop after `--seconds` (default 60).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cachefs::{Cache, LatencyConfig};

fn arg(name: &str, default: u64) -> Result<u64, String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()
            .map_err(|_| format!("{name} takes a whole number, got {:?}", args[i + 1])),
    }
}

/// A bounded load: reads and inserts over 20,000 keys, skewed so some hit and some miss,
/// in bursts of 10,000 operations with a pause between, until `stop`.
fn load(cache: Cache<u64, Arc<[u8; 64]>>, stop: Arc<AtomicBool>) {
    let value = Arc::new([0u8; 64]);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 20_000) * (x % 3) / 2;
            if cache.get(&key).is_none() {
                cache.insert(key, value.clone());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn serve(stream: TcpStream, cache: &Cache<u64, Arc<[u8; 64]>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = stream;
    let (status, kind, body) = if request.starts_with("GET /metrics ") {
        ("200 OK", "text/plain; version=0.0.4", cache.metrics().to_prometheus())
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    let (port, seconds) = match (arg("--port", 9898), arg("--seconds", 60)) {
        (Ok(p), Ok(s)) if p <= u64::from(u16::MAX) => (p as u16, s),
        (Ok(p), Ok(_)) => return eprintln!("error: --port {p} is not a port"),
        (Err(e), _) | (_, Err(e)) => return eprintln!("error: {e}"),
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => return eprintln!("error: cannot listen on 127.0.0.1:{port}: {e}"),
    };
    let cache: Cache<u64, Arc<[u8; 64]>> =
        Cache::builder().name("example").max_capacity(10_000).latency(LatencyConfig::default()).build();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (cache, stop) = (cache.clone(), stop.clone());
        thread::spawn(move || load(cache, stop))
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => return eprintln!("error: {e}"),
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    if let Err(e) = listener.set_nonblocking(true) {
        return eprintln!("error: {e}");
    }
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                if let Err(e) = serve(stream, &cache) {
                    eprintln!("warning: a request failed: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(10)),
            Err(e) => eprintln!("warning: accept failed: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = loader.join();
}
