//! What a tier writes a blob into during a fill, and how a fill reports progress.
//!
//! A [`BlobSink`] is handed to [`RemoteTier::get`](super::RemoteTier::get) and
//! [`Origin::fetch`](super::Origin::fetch). Behind it the store decompresses (when the origin serves
//! gzip), hashes and writes to a temporary file, so a tier never holds more than its own transfer buffer
//! and never decides on its own that bytes are good: the store verifies the digest at the end.

use std::fmt;
use std::io::{self, Write};

/// Which tier a blob came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Already on local disk.
    Disk,
    /// Filled from the remote tier (Redis).
    Remote,
    /// Filled from the origin (a directory, an OCI registry).
    Origin,
}

impl Source {
    /// `disk`, `remote` or `origin`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Disk => "disk",
            Source::Remote => "remote",
            Source::Origin => "origin",
        }
    }
}

/// How far a fill has got: bytes received from `source` so far, out of `total` when the tier said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The tier the bytes come from.
    pub source: Source,
    /// Bytes received (as the tier sends them: compressed, for a gzip origin).
    pub received: u64,
    /// What the tier announced it would send, if it did.
    pub total: Option<u64>,
}

/// The destination of a fill: a tier writes the blob's bytes here, in order, from the first.
///
/// Its `Write` fails when the store cannot keep the bytes (the disk is full, the blob exceeds the disk
/// bound); the tier should then return that error. [`received`](Self::received) is how many bytes it
/// has accepted, which is where a resumed transfer (an HTTP `Range` request) starts.
pub struct BlobSink<'a> {
    inner: &'a mut dyn Write,
    source: Source,
    received: u64,
    total: Option<u64>,
    progress: Option<&'a dyn Fn(Progress)>,
}

impl<'a> BlobSink<'a> {
    /// A sink over any writer, for calling a tier directly (a tool, a test of a tier of your own).
    ///
    /// ```
    /// use cachefs::tier::{BlobSink, Digest, DirOrigin, Origin};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let d = Digest::of(b"abc");
    /// std::fs::write(dir.path().join(d.file_name()), b"abc")?;
    /// let mut out = Vec::new();
    /// DirOrigin::new(dir.path()).fetch(&d, &mut BlobSink::new(&mut out))?;
    /// assert_eq!(out, b"abc");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: &'a mut dyn Write) -> Self {
        BlobSink { inner, source: Source::Origin, received: 0, total: None, progress: None }
    }

    pub(crate) fn reporting(inner: &'a mut dyn Write, source: Source, progress: Option<&'a dyn Fn(Progress)>) -> Self {
        BlobSink { inner, source, received: 0, total: None, progress }
    }

    /// Bytes accepted so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Announces how many bytes the tier will send (for progress reports; the store does not rely on it).
    pub fn expect_len(&mut self, total: u64) {
        self.total = Some(total);
        self.report();
    }

    fn report(&self) {
        if let Some(p) = self.progress {
            p(Progress { source: self.source, received: self.received, total: self.total });
        }
    }
}

impl Write for BlobSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        self.received += buf.len() as u64;
        self.report();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl fmt::Debug for BlobSink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobSink")
            .field("source", &self.source)
            .field("received", &self.received)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn counts_and_reports_what_it_accepts() {
        let seen = RefCell::new(Vec::new());
        let report = |p: Progress| seen.borrow_mut().push((p.received, p.total));
        let mut out = Vec::new();
        let mut sink = BlobSink::reporting(&mut out, Source::Origin, Some(&report));
        sink.expect_len(5);
        sink.write_all(b"abc").unwrap();
        sink.write_all(b"de").unwrap();
        sink.flush().unwrap();
        assert_eq!(sink.received(), 5);
        assert!(format!("{sink:?}").contains("received: 5"));
        assert_eq!(out, b"abcde");
        assert_eq!(*seen.borrow(), vec![(0, Some(5)), (3, Some(5)), (5, Some(5))]);
        assert_eq!(Source::Remote.name(), "remote");
    }
}
