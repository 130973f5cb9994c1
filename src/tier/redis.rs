//! [`RedisTier`]: the fleet's shared copy in Redis, a single node or a Redis Cluster (cargo feature
//! `redis`).
//!
//! # Layout
//!
//! A blob of `size` bytes is `chunks = ceil(size / chunk_size)` string values
//! `<prefix>:blob:<hex>:<i>` (4 MiB by default), and a manifest `<prefix>:blob:<hex>:manifest`
//! holding `cachefs-blob v1 size=<n> chunk_size=<s> chunks=<c> digest=sha256:<hex>`. `put` writes the
//! chunks first and the manifest last, so a blob whose upload was cut off (a crash, a timeout) has no
//! manifest and is absent. `get` reads the manifest, checks it (its digest, that `chunks` agrees with
//! `size` and `chunk_size`), then streams each chunk into the sink, checking its length; a missing or
//! wrong-length chunk, a malformed manifest or a value of the wrong type makes the copy
//! [`RemoteGet::Invalid`] (absent, for the store). The store then hashes what arrived against the
//! digest, so even a copy whose lengths are right but bytes wrong is never kept.
//!
//! In a Cluster, the chunk and manifest keys hash to any slot (no hash tags): one large blob spreads
//! over all nodes instead of filling one. The manifest is still written last, after every chunk write
//! has been acknowledged by its node, so the protocol holds across nodes.
//!
//! # Time budget and memory
//!
//! Every request (connect, each GET and SET) is bounded by `timeout` through the socket's read and
//! write timeouts; connecting and reading the manifest share one budget, so a server that accepts and
//! never answers costs a read at most `timeout` before it falls back to the origin. One chunk is in
//! memory at a time (uploads read the disk file chunk by chunk). Chunk sizes are capped at 64 MiB, and a
//! manifest announcing more is invalid.
//!
//! Connections are pooled (a mutex over idle connections, held only to take or return one); a
//! connection that failed is dropped, not returned.

use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Client, Connection, ConnectionLike, ErrorKind, IntoConnectionInfo, RedisError, Value};

use super::{BlobSink, Digest, Error, RemoteGet, RemoteTier};
use crate::sync::Mutex;

/// Largest chunk accepted (`chunk_size`, and in a manifest).
const MAX_CHUNK: u64 = 64 << 20;
/// Idle connections kept.
const MAX_IDLE: usize = 8;

enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

enum Conn {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    fn set_timeout(&self, t: Duration) -> redis::RedisResult<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match self {
            Conn::Single(c) => c.set_read_timeout(t).and_then(|()| c.set_write_timeout(t)),
            Conn::Cluster(c) => c.set_read_timeout(t).and_then(|()| c.set_write_timeout(t)),
        }
    }
}

/// A [`RemoteTier`] in Redis or a Redis Cluster. See the module docs for the key layout.
///
/// ```no_run
/// use std::time::Duration;
/// use cachefs::tier::{DirOrigin, RedisTier, TieredStore};
///
/// let redis = RedisTier::builder("redis://127.0.0.1:6379").timeout(Duration::from_millis(200)).build()?;
/// // or: RedisTier::cluster_builder(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]).build()?
/// let store = TieredStore::builder()
///     .disk_dir("/var/cache/blobs")
///     .remote(redis)
///     .origin(DirOrigin::new("/mnt/blobs"))
///     .build()?;
/// # Ok::<(), cachefs::tier::Error>(())
/// ```
pub struct RedisTier {
    target: Target,
    timeout: Duration,
    chunk_size: u64,
    prefix: String,
    ttl: Option<Duration>,
    /// Idle connections; see the module docs.
    idle: Mutex<Vec<Conn>>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("cluster", &matches!(self.target, Target::Cluster(_)))
            .field("timeout", &self.timeout)
            .field("chunk_size", &self.chunk_size)
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisTier`].
#[derive(Debug, Clone)]
pub struct RedisTierBuilder {
    urls: Vec<String>,
    cluster: bool,
    timeout: Duration,
    chunk_size: u64,
    prefix: String,
    ttl: Option<Duration>,
}

impl RedisTier {
    /// A single Redis server, `redis://host:port[/db]`.
    pub fn builder(url: &str) -> RedisTierBuilder {
        RedisTierBuilder::new(vec![url.to_string()], false)
    }

    /// A Redis Cluster, from one or more of its nodes' URLs.
    pub fn cluster_builder<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> RedisTierBuilder {
        RedisTierBuilder::new(urls.into_iter().map(|u| u.as_ref().to_string()).collect(), true)
    }

    fn key(&self, d: &Digest, part: &str) -> String {
        format!("{}:blob:{}:{part}", self.prefix, d.hex())
    }

    fn connect(&self, timeout: Duration) -> Result<Conn, RedisError> {
        let conn = match &self.target {
            Target::Single(c) => Conn::Single(c.get_connection_with_timeout(timeout)?),
            Target::Cluster(c) => Conn::Cluster(Box::new(c.get_connection()?)),
        };
        Ok(conn)
    }

    /// Takes an idle connection or opens one, within `budget`.
    fn checkout(&self, budget: Duration) -> Result<Conn, Error> {
        let started = Instant::now();
        let idle = self.idle.lock().pop();
        let conn = match idle {
            Some(c) => c,
            None => self.connect(budget).map_err(|e| transport("connect", &e))?,
        };
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(Error::remote(format!("connect: took the whole time budget of {budget:?}")));
        }
        conn.set_timeout(left).map_err(|e| transport("set timeout", &e))?;
        Ok(conn)
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn get_value(&self, conn: &mut Conn, key: &str) -> Result<Value, RedisError> {
        redis::cmd("GET").arg(key).query(conn.like())
    }

    fn set_value(&self, conn: &mut Conn, key: &str, value: &[u8]) -> Result<(), RedisError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = self.ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        cmd.query::<()>(conn.like())
    }

    fn get_with(&self, conn: &mut Conn, d: &Digest, sink: &mut BlobSink<'_>) -> Result<RemoteGet, Error> {
        let invalid = |reason: String| Ok(RemoteGet::Invalid { reason });
        let manifest = match self.get_value(conn, &self.key(d, "manifest")) {
            Ok(Value::Nil) => return Ok(RemoteGet::Miss),
            Ok(Value::BulkString(b)) => b,
            Ok(other) => return invalid(format!("manifest is not a string: {}", kind(&other))),
            Err(e) if is_data_error(&e) => return invalid(format!("manifest: {e}")),
            Err(e) => return Err(transport("GET manifest", &e)),
        };
        let Some(m) = Manifest::parse(&manifest, d) else {
            return invalid(format!("malformed manifest {:?}", String::from_utf8_lossy(&manifest)));
        };
        conn.set_timeout(self.timeout).map_err(|e| transport("set timeout", &e))?;
        sink.expect_len(m.size);
        for i in 0..m.chunks {
            let want = m.chunk_size.min(m.size - i * m.chunk_size);
            let chunk = match self.get_value(conn, &self.key(d, &i.to_string())) {
                Ok(Value::BulkString(b)) => b,
                Ok(Value::Nil) => return invalid(format!("chunk {i} of {} is missing", m.chunks)),
                Ok(other) => return invalid(format!("chunk {i} is not a string: {}", kind(&other))),
                Err(e) if is_data_error(&e) => return invalid(format!("chunk {i}: {e}")),
                Err(e) => return Err(transport("GET chunk", &e)),
            };
            if chunk.len() as u64 != want {
                return invalid(format!("chunk {i} has {} bytes, the manifest says {want}", chunk.len()));
            }
            sink.write_all(&chunk).map_err(|e| Error::remote(format!("writing chunk {i} to disk: {e}")))?;
        }
        Ok(RemoteGet::Hit)
    }

    fn put_with(&self, conn: &mut Conn, d: &Digest, size: u64, blob: &mut dyn Read) -> Result<(), Error> {
        let chunks = size.div_ceil(self.chunk_size);
        let mut buf = vec![0u8; self.chunk_size.min(size) as usize];
        for i in 0..chunks {
            let len = self.chunk_size.min(size - i * self.chunk_size) as usize;
            blob.read_exact(&mut buf[..len]).map_err(|e| Error::remote(format!("reading the blob: {e}")))?;
            self.set_value(conn, &self.key(d, &i.to_string()), &buf[..len]).map_err(|e| transport("SET chunk", &e))?;
        }
        let manifest = Manifest { size, chunk_size: self.chunk_size, chunks }.encode(d);
        self.set_value(conn, &self.key(d, "manifest"), manifest.as_bytes()).map_err(|e| transport("SET manifest", &e))
    }
}

impl RemoteTier for RedisTier {
    fn get(&self, digest: &Digest, sink: &mut BlobSink<'_>) -> Result<RemoteGet, Error> {
        let mut conn = self.checkout(self.timeout)?;
        let result = self.get_with(&mut conn, digest, sink);
        if !matches!(result, Err(Error::Remote { .. })) {
            self.checkin(conn);
        }
        result
    }

    fn put(&self, digest: &Digest, size: u64, blob: &mut dyn Read) -> Result<(), Error> {
        let mut conn = self.checkout(self.timeout)?;
        conn.set_timeout(self.timeout).map_err(|e| transport("set timeout", &e))?;
        let result = self.put_with(&mut conn, digest, size, blob);
        if result.is_ok() {
            self.checkin(conn);
        }
        result
    }
}

impl RedisTierBuilder {
    fn new(urls: Vec<String>, cluster: bool) -> Self {
        RedisTierBuilder {
            urls,
            cluster,
            timeout: Duration::from_secs(1),
            chunk_size: 4 << 20,
            prefix: "cachefs".into(),
            ttl: None,
        }
    }

    /// The per-request time budget (connect, each GET and SET). Default 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bytes per chunk value, 1 to 64 MiB. Default 4 MiB. Every store of a fleet must use the same.
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// The key prefix. Default `cachefs`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// An expiry for uploaded blobs (all keys of a blob get the same; the manifest, written last,
    /// expires last). Default none (rely on Redis's `maxmemory` eviction; a blob that lost a chunk to it
    /// reads as invalid, i.e. absent).
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Checks the settings and parses the URLs (connections are opened on first use).
    pub fn build(self) -> Result<RedisTier, Error> {
        let config = |reason: String| Error::Config { reason };
        if !(1..=MAX_CHUNK).contains(&self.chunk_size) {
            return Err(config(format!("chunk_size must be 1 to {MAX_CHUNK} bytes, got {}", self.chunk_size)));
        }
        if self.timeout.is_zero() {
            return Err(config("the Redis time budget must be above zero".into()));
        }
        if self.urls.is_empty() {
            return Err(config("no Redis URL".into()));
        }
        // The redis crate's detail, without its error-kind name (`InvalidClientConfig: ...`).
        let bad_url = |e: RedisError| {
            let detail = e.detail().map_or_else(|| e.to_string(), str::to_string);
            config(format!("Redis URL {:?} is not valid: {detail}", self.urls.join(",")))
        };
        let target = if self.cluster {
            let client = ClusterClient::builder(self.urls.iter().map(String::as_str))
                .connection_timeout(self.timeout)
                .response_timeout(self.timeout)
                .retries(1)
                .min_retry_wait(10)
                .max_retry_wait(50)
                .build()
                .map_err(bad_url)?;
            Target::Cluster(client)
        } else {
            if self.urls.len() != 1 {
                return Err(config("a single-node Redis takes one URL (use cluster_builder for a Cluster)".into()));
            }
            // No `CLIENT SETINFO` handshake: one round trip less, and against a server that accepts and
            // never answers, the first request (not the handshake) is what runs into the budget.
            let info = self.urls[0].as_str().into_connection_info().map_err(bad_url)?;
            let settings = info.redis_settings().clone().set_skip_set_lib_name();
            Target::Single(Client::open(info.set_redis_settings(settings)).map_err(bad_url)?)
        };
        Ok(RedisTier {
            target,
            timeout: self.timeout,
            chunk_size: self.chunk_size,
            prefix: self.prefix,
            ttl: self.ttl,
            idle: Mutex::new(Vec::new()),
        })
    }
}

/// An error about the data alone (a key holding another type: `WRONGTYPE`, or a reply of a type the
/// protocol cannot take as bytes): the copy is invalid, the server is fine. Every other error reply
/// (`ERR`, `NOAUTH`, `NOPERM`, `LOADING`, `OOM`, …) and every transport failure is the server failing:
/// it counts in `remote_errors` and towards the breaker.
fn is_data_error(e: &RedisError) -> bool {
    let wrong_type = matches!(e.code(), Some("WRONGTYPE")) || e.kind() == ErrorKind::UnexpectedReturnType;
    wrong_type && !e.is_cluster_error() && !e.is_io_error()
}

fn transport(what: &str, e: &RedisError) -> Error {
    Error::remote(format!("{what}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "an integer",
        Value::Array(_) | Value::Set(_) => "an array",
        Value::Map(_) => "a map",
        Value::SimpleString(_) | Value::Okay => "a status",
        _ => "another type",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Manifest {
    size: u64,
    chunk_size: u64,
    chunks: u64,
}

impl Manifest {
    fn encode(&self, d: &Digest) -> String {
        format!("cachefs-blob v1 size={} chunk_size={} chunks={} digest={d}", self.size, self.chunk_size, self.chunks)
    }

    /// Parses and checks a manifest for `d`; `None` if it is not exactly what `encode` writes for a
    /// consistent blob.
    fn parse(bytes: &[u8], d: &Digest) -> Option<Manifest> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        if parts.next()? != "cachefs-blob" || parts.next()? != "v1" {
            return None;
        }
        let mut next =
            |name: &str| -> Option<String> { parts.next()?.strip_prefix(name)?.strip_prefix('=').map(str::to_string) };
        let size: u64 = next("size")?.parse().ok()?;
        let chunk_size: u64 = next("chunk_size")?.parse().ok()?;
        let chunks: u64 = next("chunks")?.parse().ok()?;
        let digest = next("digest")?;
        if parts.next().is_some() || digest != d.to_string() {
            return None;
        }
        let consistent = (1..=MAX_CHUNK).contains(&chunk_size) && size.div_ceil(chunk_size) == chunks;
        consistent.then_some(Manifest { size, chunk_size, chunks })
    }
}

/// The manifest codec, for the `blob_names` fuzz target (`fuzz/`): parses `bytes` as the manifest of `d`,
/// and writes the manifest a blob of `size` bytes in chunks of `chunk_size` would have.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_manifest(bytes: &[u8], d: &Digest, size: u64, chunk_size: u64) -> (Option<(u64, u64, u64)>, String) {
    let parsed = Manifest::parse(bytes, d).map(|m| (m.size, m.chunk_size, m.chunks));
    let chunks = size.div_ceil(chunk_size.max(1));
    (parsed, Manifest { size, chunk_size, chunks }.encode(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_only_when_consistent() {
        let d = Digest::of(b"x");
        let m = Manifest { size: 10, chunk_size: 4, chunks: 3 };
        assert_eq!(Manifest::parse(m.encode(&d).as_bytes(), &d), Some(m));
        let empty = Manifest { size: 0, chunk_size: 4, chunks: 0 };
        assert_eq!(Manifest::parse(empty.encode(&d).as_bytes(), &d), Some(empty));
        let other = Digest::of(b"y");
        let good = m.encode(&d);
        for bad in [
            String::new(),
            good[..good.len() - 3].to_string(),
            format!("{good} extra"),
            good.replace("v1", "v2"),
            good.replace("chunks=3", "chunks=2"),
            good.replace("chunks=3", "chunks=4"),
            good.replace("chunk_size=4", "chunk_size=0"),
            good.replace("size=10", "size=-1"),
            good.replace("chunk_size=4", &format!("chunk_size={}", MAX_CHUNK + 1)),
            m.encode(&other),
            "cachefs-blob v1 size=10".into(),
        ] {
            assert_eq!(Manifest::parse(bad.as_bytes(), &d), None, "{bad:?}");
        }
        assert_eq!(Manifest::parse(&[0xff, 0xfe], &d), None);
    }

    #[test]
    fn builder_refuses_what_cannot_work() {
        assert!(matches!(RedisTier::builder("redis://127.0.0.1:1").chunk_size(0).build(), Err(Error::Config { .. })));
        assert!(matches!(RedisTier::builder("not a url").build(), Err(Error::Config { .. })));
        assert!(matches!(RedisTier::builder("redis://x").timeout(Duration::ZERO).build(), Err(Error::Config { .. })));
        let none: [&str; 0] = [];
        assert!(matches!(RedisTier::cluster_builder(none).build(), Err(Error::Config { .. })));
        assert!(format!("{:?}", RedisTier::builder("redis://127.0.0.1:1").build().unwrap()).contains("RedisTier"));
    }
}
