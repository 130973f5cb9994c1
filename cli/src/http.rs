//! Just enough HTTP/1.1 for the mount's metrics endpoint and `cachefs status`: a server answering `GET`s
//! one connection at a time, and a client fetching one page.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// A page: content type and body.
pub type Page = (&'static str, String);

/// Most connections served at once; more are closed at once (a scraper retries).
const CONNECTIONS: usize = 16;

/// Serves `pages(path)` (None: 404) on `listener` until the process exits: a thread accepts, and each
/// connection gets a thread of its own (at most [`CONNECTIONS`]), so an idle or slow client delays no one
/// else.
pub fn serve(listener: TcpListener, pages: impl Fn(&str) -> Option<Page> + Send + Sync + 'static) {
    let pages = std::sync::Arc::new(pages);
    // Relaxed: a count of live connections, ordering nothing.
    let live = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("cachefs-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if live.fetch_add(1, Relaxed) >= CONNECTIONS {
                    live.fetch_sub(1, Relaxed);
                    continue; // dropped: closed
                }
                let (pages, done) = (pages.clone(), live.clone());
                let spawned = std::thread::Builder::new().name("cachefs-metrics-conn".into()).spawn(move || {
                    // A client that misbehaves loses its own request, nothing else.
                    let _ = answer(stream, &*pages);
                    done.fetch_sub(1, Relaxed);
                });
                if spawned.is_err() {
                    live.fetch_sub(1, Relaxed);
                }
            }
        })
        .expect("spawning the metrics thread");
}

fn answer(stream: TcpStream, pages: &impl Fn(&str) -> Option<Page>) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut reader = BufReader::new(stream.take(16 << 10));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Headers are read and ignored.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, pages(path)) {
        ("GET", Some((kind, body))) => ("200 OK", kind, body),
        ("GET", None) => ("404 Not Found", "text/plain", format!("no page at {path}; try /metrics or /stats.json\n")),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
    };
    let mut stream = reader.into_inner().into_inner();
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Why a page could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Connecting, sending or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The server.
        addr: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The server answered something other than 200.
    #[error("{addr}{path}: {status}")]
    Status {
        /// The server.
        addr: String,
        /// The page.
        path: String,
        /// Its status line.
        status: String,
    },
}

/// Fetches `path` from `addr` (`host:port`); returns the body.
pub fn get(addr: &str, path: &str) -> Result<String, GetError> {
    let io_err = |source| GetError::Io { addr: addr.to_string(), source };
    let target: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(io_err)?
        .next()
        .ok_or_else(|| io_err(io::Error::new(io::ErrorKind::InvalidInput, "no address")))?;
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT).map_err(io_err)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(io_err)?;
    let mut response = String::new();
    stream.take(64 << 20).read_to_string(&mut response).map_err(io_err)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(GetError::Status { addr: addr.to_string(), path: path.to_string(), status });
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_pages_404s_and_refuses_other_methods() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        serve(listener, |p| (p == "/a").then(|| ("text/plain", "hello".to_string())));
        assert_eq!(get(&addr, "/a?x=1").unwrap(), "hello");
        assert!(matches!(get(&addr, "/b"), Err(GetError::Status { status, .. }) if status.contains("404")));
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST /a HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        // Idle clients hold their own connections only.
        let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        let started = std::time::Instant::now();
        assert_eq!(get(&addr, "/a").unwrap(), "hello");
        assert!(started.elapsed() < TIMEOUT, "a scrape waited for idle connections");
        drop(idle);
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(matches!(get(&closed, "/a"), Err(GetError::Io { .. })));
    }
}
