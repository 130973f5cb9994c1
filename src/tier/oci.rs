//! [`OciOrigin`]: blobs from an OCI registry over the distribution API (cargo feature `oci`, over the
//! `ureq` HTTP client).
//!
//! A fetch is `GET <registry>/v2/<repo>/blobs/<digest>`, streamed into the sink through a fixed
//! buffer. If the connection drops mid-blob (a read error, or fewer bytes than `Content-Length`), the
//! fetch resumes with `Range: bytes=<received>-` and checks that the `206` answer's `Content-Range`
//! starts there (a server that ignores `Range` and answers `200` has its first `received` bytes
//! skipped). Resumption is bounded: `max_retries` attempts in a row without progress. Redirects (to a
//! storage backend's signed URL) are followed; credentials are not sent across them. `404` is
//! [`Error::NotFound`]; any other status, or running out of retries, is [`Error::Origin`].
//!
//! A registry addresses a compressed layer by the digest of its compressed bytes, while a store that
//! keeps layers decompressed (`origin_gzip(true)`) asks for the digest of the content (the image
//! config's `diff_id`). [`OciOrigin::layer`] records which registry blob holds which content; a digest
//! with no such record is fetched as itself.
//!
//! Authentication: a static bearer token. Basic credentials and the token exchange of public registries
//! (`WWW-Authenticate: Bearer realm=...`) are not implemented.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

use ureq::Agent;

use super::{BlobSink, Digest, Error, Origin};
use crate::sync::{Arc, Mutex};

/// Transfer buffer.
const BUFFER: usize = 256 << 10;

/// An [`Origin`] reading an OCI registry (distribution API v2). Cheap to clone: clones share the
/// layer map, so a clone kept by the caller can record layers after the store has taken the origin.
///
/// ```no_run
/// use cachefs::tier::{Digest, OciOrigin, TieredStore};
///
/// let origin = OciOrigin::builder("https://registry.example.com", "library/python").build()?;
/// let diff_id: Digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".parse()?;
/// let layer: Digest = "sha256:486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7".parse()?;
/// origin.layer(diff_id, layer);   // the content `diff_id` is the gzip blob `layer` in the registry
/// let store = TieredStore::builder().disk_dir("/var/cache/layers").origin(origin).origin_gzip(true).build()?;
/// # Ok::<(), cachefs::tier::Error>(())
/// ```
#[derive(Clone)]
pub struct OciOrigin {
    inner: Arc<Inner>,
}

struct Inner {
    agent: Agent,
    base: String,
    repo: String,
    authorization: Option<String>,
    max_retries: u32,
    /// Content digest → registry blob digest; held only to look up or insert.
    layers: Mutex<HashMap<Digest, Digest>>,
}

impl fmt::Debug for OciOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciOrigin")
            .field("registry", &self.inner.base)
            .field("repo", &self.inner.repo)
            .field("max_retries", &self.inner.max_retries)
            .finish_non_exhaustive()
    }
}

/// Configures an [`OciOrigin`].
#[derive(Debug, Clone)]
pub struct OciOriginBuilder {
    base: String,
    repo: String,
    timeout: Duration,
    authorization: Option<String>,
    max_retries: u32,
}

impl OciOrigin {
    /// A registry at `base` (`http://host:port` or `https://host`), repository `repo` (`library/python`).
    pub fn builder(base: &str, repo: &str) -> OciOriginBuilder {
        OciOriginBuilder {
            base: base.trim_end_matches('/').to_string(),
            repo: repo.to_string(),
            timeout: Duration::from_secs(30),
            authorization: None,
            max_retries: 5,
        }
    }

    /// Records that the content `content` is the (compressed) registry blob `blob`.
    pub fn layer(&self, content: Digest, blob: Digest) {
        self.inner.layers.lock().insert(content, blob);
    }

    fn blob_of(&self, content: &Digest) -> Digest {
        self.inner.layers.lock().get(content).copied().unwrap_or(*content)
    }

    /// One request from `sink.received()` on. `Ok(true)`: complete; `Ok(false)`: the transfer broke
    /// after progress or not (retry); `Err`: give up.
    fn attempt(&self, d: &Digest, url: &str, sink: &mut BlobSink<'_>, why: &mut String) -> Result<bool, Error> {
        let offset = sink.received();
        let mut request = self.inner.agent.get(url);
        if offset > 0 {
            request = request.header("Range", &format!("bytes={offset}-"));
        }
        if let Some(auth) = &self.inner.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                *why = e.to_string();
                return Ok(false);
            }
        };
        let status = response.status().as_u16();
        let mut skip = 0;
        match status {
            200 => {
                skip = offset; // a server that ignores Range sends the whole blob again
                if let Some(len) = response.body().content_length().filter(|_| offset == 0) {
                    sink.expect_len(len);
                }
            }
            206 if offset > 0 => {
                let range = response.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
                let start = range.strip_prefix("bytes ").and_then(|r| r.split('-').next()?.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(Error::origin(
                        d,
                        format!("asked for bytes from {offset}, got Content-Range {range:?}"),
                    ));
                }
            }
            404 => return Err(Error::not_found(d)),
            500..=599 | 429 => {
                *why = format!("HTTP {status}");
                return Ok(false);
            }
            _ => return Err(Error::origin(d, format!("HTTP {status} from {url}"))),
        }
        let mut body = response.body_mut().as_reader();
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    *why = format!("connection dropped after {} bytes: {e}", sink.received());
                    return Ok(false);
                }
            };
            let mut data = &buf[..n];
            if skip > 0 {
                let s = skip.min(n as u64) as usize;
                skip -= s as u64;
                data = &data[s..];
            }
            sink.write_all(data).map_err(|e| Error::origin(d, format!("writing the fill: {e}")))?;
        }
    }
}

impl Origin for OciOrigin {
    fn fetch(&self, digest: &Digest, sink: &mut BlobSink<'_>) -> Result<(), Error> {
        let blob = self.blob_of(digest);
        let url = format!("{}/v2/{}/blobs/{blob}", self.inner.base, self.inner.repo);
        let mut failures = 0;
        let mut why = String::new();
        loop {
            let before = sink.received();
            if self.attempt(digest, &url, sink, &mut why)? {
                return Ok(());
            }
            failures = if sink.received() > before { 1 } else { failures + 1 };
            if failures > self.inner.max_retries {
                return Err(Error::origin(digest, format!("gave up after {failures} attempts: {why}")));
            }
            std::thread::sleep(Duration::from_millis(20 * u64::from(failures)));
        }
    }
}

impl OciOriginBuilder {
    /// Connect, response and per-read timeout. Default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// Attempts in a row without progress before a fetch gives up. Default 5.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Checks the URL and repository name.
    pub fn build(self) -> Result<OciOrigin, Error> {
        let config = |reason: String| Error::Config { reason };
        let rest = self.base.strip_prefix("https://").or_else(|| self.base.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(['/', '?', '#', ' '])) {
            return Err(config(format!("registry URL {:?}: expected http(s)://host[:port]", self.base)));
        }
        if !valid_repo(&self.repo) {
            return Err(config(format!("repository name {:?} is not valid (lowercase a-z, 0-9, . _ - /)", self.repo)));
        }
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(self.timeout))
            .timeout_recv_response(Some(self.timeout))
            .timeout_per_read(Some(self.timeout))
            .build()
            .into();
        let inner = Inner {
            agent,
            base: self.base,
            repo: self.repo,
            authorization: self.authorization,
            max_retries: self.max_retries,
            layers: Mutex::new(HashMap::new()),
        };
        Ok(OciOrigin { inner: Arc::new(inner) })
    }
}

/// The distribution spec's repository name: components of lowercase alphanumerics joined by `.`, `_`,
/// `__` or dashes, separated by `/`.
fn valid_repo(name: &str) -> bool {
    let component = |c: &str| {
        let bytes = c.as_bytes();
        !c.is_empty()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && !c.contains("..")
            && !c.contains("._")
            && !c.contains("_.")
            && !c.contains("___")
    };
    name.len() <= 255 && name.split('/').all(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_and_urls_are_checked() {
        for good in ["a", "library/python", "my-org/my_repo.v2", "a__b", "a---b/c"] {
            assert!(valid_repo(good), "{good}");
        }
        for bad in ["", "A", "a/", "/a", "a//b", "-a", "a.", "a..b", "a/../b", "a b", "a___b", &"a".repeat(256)] {
            assert!(!valid_repo(bad), "{bad}");
        }
        let build = |base: &str, repo: &str| OciOrigin::builder(base, repo).build();
        assert!(build("http://127.0.0.1:5000", "x").is_ok());
        assert!(build("https://registry.example.com/", "x").is_ok());
        for base in ["ftp://x", "http://", "127.0.0.1:5000", "http://h/v2/x", "http://h?x"] {
            assert!(matches!(build(base, "x"), Err(Error::Config { .. })), "{base}");
        }
        assert!(matches!(build("http://h", "UPPER"), Err(Error::Config { .. })));
        let o = build("http://h", "x").unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        o.clone().layer(a, b);
        assert_eq!((o.blob_of(&a), o.blob_of(&b)), (b, b));
        assert!(format!("{o:?}").contains("OciOrigin"));
    }
}
