//! The origin: the last resort, where every blob exists. A trait, and a directory implementation.
//!
//! An origin writes the blob's bytes *as it stores them* into the [`BlobSink`]: when the store is built
//! with `origin_gzip(true)` those bytes are gzip and the store decompresses them on the way to disk;
//! either way the store hashes what it keeps and compares it with the digest, so an origin never has to
//! verify anything itself (and cannot get a wrong blob stored by mistake).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::{BlobSink, Digest, Error};

/// Where blobs come from when neither the disk nor the remote tier has them.
///
/// Implementations must be safe to call from several threads at once (the store calls `fetch` for
/// different digests concurrently, never twice at once for one digest).
pub trait Origin: Send + Sync + fmt::Debug {
    /// Writes the whole blob `digest` into `sink`, from its first byte. [`Error::NotFound`] when the
    /// origin does not have it; [`Error::Origin`] for any other failure of the origin; when a write to
    /// `sink` fails, return any error (the store reports its own cause).
    fn fetch(&self, digest: &Digest, sink: &mut BlobSink<'_>) -> Result<(), Error>;
}

/// Reads blobs from a directory: `sha256_<hex>` (this store's own layout), else `blobs/sha256/<hex>`
/// (an OCI image layout directory).
///
/// ```
/// use cachefs::tier::{Digest, DirOrigin};
///
/// let dir = tempfile::tempdir()?;
/// let d = Digest::of(b"layer");
/// std::fs::write(dir.path().join(d.file_name()), b"layer")?;
/// let origin = DirOrigin::new(dir.path());
/// assert_eq!(origin.path_of(&d), Some(dir.path().join(d.file_name())));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DirOrigin {
    dir: PathBuf,
}

/// The directory origin copies through a buffer this large.
const COPY_BUFFER: usize = 256 << 10;

impl DirOrigin {
    /// An origin over `dir` (not read until a fetch).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        DirOrigin { dir: dir.as_ref().to_path_buf() }
    }

    /// The file that holds `digest`, if there is one.
    pub fn path_of(&self, digest: &Digest) -> Option<PathBuf> {
        [self.dir.join(digest.file_name()), self.dir.join("blobs").join("sha256").join(digest.hex())]
            .into_iter()
            .find(|p| p.is_file())
    }
}

impl Origin for DirOrigin {
    fn fetch(&self, digest: &Digest, sink: &mut BlobSink<'_>) -> Result<(), Error> {
        let path = self.path_of(digest).ok_or_else(|| Error::not_found(digest))?;
        let failed = |e: io::Error| Error::origin(digest, format!("{}: {e}", path.display()));
        let mut file = File::open(&path).map_err(failed)?;
        if let Ok(meta) = file.metadata() {
            sink.expect_len(meta.len());
        }
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(e)),
            };
            sink.write_all(&buf[..n]).map_err(|e| Error::origin(digest, format!("writing the fill: {e}")))?;
        }
    }
}
