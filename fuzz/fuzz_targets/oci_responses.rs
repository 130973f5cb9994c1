//! The OCI registry origin's response handling: a loopback server answers each of the origin's requests
//! with the next of a scripted series of HTTP responses (statuses, `Content-Length`, `Content-Range`,
//! redirects, bodies cut short or damaged, raw bytes), and a tiered store fills the blob through it. The
//! fill gives the blob, byte-identical, or a typed error: never a panic, a hang, or other bytes.
#![no_main]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use cachefs::tier::{Digest, OciOrigin, TieredStore};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    blob: Vec<u8>,
    responses: Vec<Response>,
}

#[derive(Arbitrary, Debug)]
enum Response {
    /// A well-formed answer built around the blob: status, the byte range of the blob it carries, the
    /// headers it claims, and perhaps one byte changed.
    Shaped { status: u8, from: u16, to: u16, length: Length, range_start: Option<u16>, flip: Option<u16> },
    /// A redirect to the same server.
    Redirect,
    /// Anything at all.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Length {
    Right,
    Missing,
    Claimed(u32),
}

const STATUSES: [u16; 9] = [200, 206, 404, 500, 429, 401, 416, 302, 204];

/// The server's port and the responses it has yet to give, one per connection.
fn server() -> &'static (u16, Mutex<VecDeque<Vec<u8>>>) {
    static SERVER: OnceLock<(u16, Mutex<VecDeque<Vec<u8>>>)> = OnceLock::new();
    let s = SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                // Read the request head (bounded), then answer with the next scripted response and close.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while head.len() < 8192 && !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let next = server().1.lock().expect("not poisoned").pop_front();
                if let Some(bytes) = next {
                    let _ = conn.write_all(&bytes);
                }
            }
        });
        (port, Mutex::new(VecDeque::new()))
    });
    s
}

fn render(r: &Response, blob: &[u8], port: u16, digest: &Digest) -> Vec<u8> {
    match r {
        Response::Raw(bytes) => bytes.clone(),
        Response::Redirect => format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}/v2/r/blobs/{digest}?signed\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        Response::Shaped { status, from, to, length, range_start, flip } => {
            let status = STATUSES[usize::from(*status) % STATUSES.len()];
            let (from, to) = (usize::from(*from).min(blob.len()), usize::from(*to).min(blob.len()));
            let mut body = blob[from.min(to)..to.max(from)].to_vec();
            if let (Some(at), false) = (flip, body.is_empty()) {
                let at = usize::from(*at) % body.len();
                body[at] ^= 0x20;
            }
            let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
            match length {
                Length::Right => out += &format!("Content-Length: {}\r\n", body.len()),
                Length::Missing => {}
                Length::Claimed(n) => out += &format!("Content-Length: {n}\r\n"),
            }
            if let Some(start) = range_start {
                out += &format!("Content-Range: bytes {start}-{}/{}\r\n", blob.len().saturating_sub(1), blob.len());
            }
            out += "\r\n";
            let mut out = out.into_bytes();
            out.extend_from_slice(&body);
            out
        }
    }
}

fuzz_target!(|input: Input| {
    let (port, queue) = server();
    let digest = Digest::of(&input.blob);
    {
        let mut q = queue.lock().expect("not poisoned");
        q.clear();
        q.extend(input.responses.iter().take(6).map(|r| render(r, &input.blob, *port, &digest)));
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let origin = OciOrigin::builder(&format!("http://127.0.0.1:{port}"), "r")
        .timeout(Duration::from_secs(2))
        .max_retries(1)
        .build()
        .expect("a valid origin");
    let store = TieredStore::builder().disk_dir(dir.path()).origin(origin).build().expect("a store");
    match store.open(&digest) {
        Ok(mut blob) => {
            let mut got = Vec::new();
            blob.read_to_end(&mut got).expect("read the filled blob");
            assert_eq!(got, input.blob, "the store served other bytes under the blob's digest");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    queue.lock().expect("not poisoned").clear();
});
