//! Hot lists: the files a [`CacheFs`] holds, most valuable first, saved to a local file, so that a
//! restarted process (or another machine serving the same data) warms the same files through the
//! warming machinery, with its workers, priorities and progress.
//!
//! Format (JSON lines, UTF-8; JSON escapes whatever characters a path holds):
//!
//! ```text
//! {"format":"cachefs-hot-list","version":1,"files":2}
//! {"path":"models/a.bin","bytes":1048576}
//! {"path":"index/b.idx","bytes":4096}
//! ```
//!
//! The header's count tells a truncated list from a whole one. A list is written to a temporary file
//! beside its target, synced, then renamed over it: a crash leaves the old list or the new one, never
//! half of one.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::content::weight;
use super::{CacheFs, Error, WarmOptions, WarmReport};

const FORMAT: &str = "cachefs-hot-list";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    files: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    path: String,
    bytes: u64,
}

fn invalid(list: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidHotList { path: list.display().to_string(), reason: reason.into() }
}

/// One JSON value and a newline.
fn write_line(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

fn io_error(list: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(list.display().to_string(), e)
}

impl CacheFs {
    /// Writes the list of the files whose content is cached, most valuable first (the content cache's
    /// policy order, see [`Cache::hot_keys`](crate::Cache::hot_keys)), with the bytes cached of each, to
    /// the local file `list` (replaced whole, atomically). Returns how many files it lists. The list
    /// names files, not their content: warming reads them from the backend again.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cachefs::fs::{CacheFs, MemBackend, WarmOptions};
    ///
    /// let backend = Arc::new(MemBackend::new());
    /// let fs = CacheFs::builder(backend.clone()).build();
    /// fs.write("a.txt", "hot")?;
    /// fs.write("b.txt", "hotter")?;
    /// fs.read("b.txt")?;
    /// let dir = tempfile::tempdir().unwrap();
    /// assert_eq!(fs.save_hot_list(dir.path().join("hot.jsonl"))?, 2);
    ///
    /// let restarted = CacheFs::builder(backend).build();
    /// let report = restarted.warm_from_hot_list(dir.path().join("hot.jsonl"), WarmOptions::default())?;
    /// assert_eq!(report.files, 2);
    /// restarted.read("b.txt")?;
    /// assert_eq!(restarted.stats().read_hits, 1);
    /// # Ok::<(), cachefs::fs::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] (or the kind it maps to) if the list cannot be written; the old list, if any, is
    /// then left as it was.
    pub fn save_hot_list(&self, list: impl AsRef<Path>) -> Result<u64, Error> {
        let list = list.as_ref();
        let files = self.inner.content.hot_files();
        let dir = match list.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new().prefix(".hot-list-").tempfile_in(dir).map_err(io_error(list))?;
        {
            let mut out = std::io::BufWriter::new(temp.as_file_mut());
            let header = Header { format: FORMAT.into(), version: VERSION, files: files.len() as u64 };
            write_line(&mut out, &header).map_err(io_error(list))?;
            for (path, bytes) in files.iter() {
                write_line(&mut out, &Line { path: path.clone(), bytes: *bytes }).map_err(io_error(list))?;
            }
            out.flush().map_err(io_error(list))?;
        }
        temp.as_file().sync_all().map_err(io_error(list))?;
        temp.persist(list).map_err(|e| Error::io(list.display().to_string(), e.error))?;
        Ok(files.len() as u64)
    }

    /// Warms the files of a hot list written by [`save_hot_list`](Self::save_hot_list): the most valuable
    /// that fit in the cache's capacity by the sizes listed (each with the cache's per-file overhead), loaded least valuable first so that the most
    /// valuable end most recently used (with several workers the order is approximate). Files gone from
    /// the backend since are reported in [`WarmReport::errors`] (or stop the warm, without
    /// `skip_errors`), as for any warm.
    ///
    /// # Errors
    /// [`Error::InvalidHotList`] if the file is not a whole hot list of a version this build reads
    /// (nothing is warmed then); [`Error::Io`] and kin if it cannot be read; then as
    /// [`warm`](Self::warm).
    pub fn warm_from_hot_list(&self, list: impl AsRef<Path>, options: WarmOptions) -> Result<WarmReport, Error> {
        let list = list.as_ref();
        let file = std::fs::File::open(list).map_err(io_error(list))?;
        let mut lines = BufReader::new(file).lines();
        let header = lines.next().ok_or_else(|| invalid(list, "empty file"))?.map_err(io_error(list))?;
        let header: Header =
            serde_json::from_str(&header).map_err(|e| invalid(list, format!("not a hot list header: {e}")))?;
        if header.format != FORMAT {
            return Err(invalid(list, format!("format {:?}, expected {FORMAT:?}", header.format)));
        }
        if header.version != VERSION {
            return Err(invalid(list, format!("version {}, this build reads version {VERSION}", header.version)));
        }
        let mut files = Vec::new();
        for (n, line) in lines.enumerate() {
            let line = line.map_err(io_error(list))?;
            let entry: Line = serde_json::from_str(&line).map_err(|e| invalid(list, format!("line {}: {e}", n + 2)))?;
            files.push(entry);
        }
        if files.len() as u64 != header.files {
            let reason = format!("{} files listed, the header announces {} (truncated?)", files.len(), header.files);
            return Err(invalid(list, reason));
        }
        // What fits, by what the cache charges for each file's listed size.
        let capacity = self.inner.content.capacity();
        let mut total = 0u64;
        let fitting = files
            .iter()
            .take_while(|f| {
                total = total.saturating_add(weight(f.path.len(), usize::try_from(f.bytes).unwrap_or(usize::MAX)));
                total <= capacity
            })
            .count();
        self.warm(files[..fitting].iter().rev().map(|f| f.path.as_str()), options)
    }
}
