//! Cache traces: one unsigned 64-bit key per line, gzip-compressed or plain (see `shared/traces/README.md`).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Why a trace could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened, read or decompressed.
    #[error("cannot read trace {}: {source}", path.display())]
    Io {
        /// The trace file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A line is not an unsigned 64-bit integer.
    #[error("{}:{line}: not an unsigned 64-bit key: {text:?}", path.display())]
    Parse {
        /// The trace file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The offending line (cut to 80 characters).
        text: String,
    },
    /// The file holds no keys.
    #[error("trace {} holds no accesses", path.display())]
    Empty {
        /// The trace file.
        path: PathBuf,
    },
}

/// A loaded trace.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Short name: the file name without `.keys.gz`, `.gz` or `.txt`.
    pub name: String,
    /// The accesses, in order.
    pub keys: Vec<u64>,
    /// Number of distinct keys.
    pub unique: usize,
}

impl Trace {
    /// Builds a trace from keys in memory.
    pub fn from_keys(name: impl Into<String>, keys: Vec<u64>) -> Self {
        let unique = keys.iter().collect::<HashSet<_>>().len();
        Trace { name: name.into(), keys, unique }
    }

    /// The best hit ratio any cache can reach: every first access is a miss.
    pub fn ceiling(&self) -> f64 {
        1.0 - self.unique as f64 / self.keys.len() as f64
    }
}

fn short_name(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    for suffix in [".keys.gz", ".gz", ".txt", ".keys"] {
        if let Some(stem) = file.strip_suffix(suffix) {
            return stem.to_string();
        }
    }
    file
}

/// Loads a trace; gzip is recognised by its magic bytes, anything else is read as plain text.
/// Blank lines are skipped.
pub fn load(path: &Path) -> Result<Trace, TraceError> {
    let io_err = |source| TraceError::Io { path: path.to_path_buf(), source };
    let mut file = BufReader::new(File::open(path).map_err(io_err)?);
    let gzipped = file.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead> =
        if gzipped { Box::new(BufReader::new(GzDecoder::new(file))) } else { Box::new(file) };
    let keys = parse(reader, path)?;
    if keys.is_empty() {
        return Err(TraceError::Empty { path: path.to_path_buf() });
    }
    Ok(Trace::from_keys(short_name(path), keys))
}

fn parse(mut reader: impl BufRead, path: &Path) -> Result<Vec<u64>, TraceError> {
    let mut keys = Vec::new();
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|source| TraceError::Io { path: path.to_path_buf(), source })?;
        if n == 0 {
            return Ok(keys);
        }
        number += 1;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let key = text.parse::<u64>().map_err(|_| TraceError::Parse {
            path: path.to_path_buf(),
            line: number,
            text: text.chars().take(80).collect(),
        })?;
        keys.push(key);
    }
}

/// Reads everything from `r` (for tests of non-file sources).
#[doc(hidden)]
pub fn parse_reader(r: impl Read, name: &str) -> Result<Trace, TraceError> {
    let keys = parse(BufReader::new(r), Path::new(name))?;
    Ok(Trace::from_keys(name, keys))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("t.txt");
        std::fs::write(&plain, "1\n2\n\n1\n").unwrap();
        let t = load(&plain).unwrap();
        assert_eq!((t.name.as_str(), t.keys.as_slice(), t.unique), ("t", &[1, 2, 1][..], 2));
        assert!((t.ceiling() - 1.0 / 3.0).abs() < 1e-12);

        let gz = dir.path().join("g.keys.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"5\n6\n").unwrap();
        enc.finish().unwrap();
        let t = load(&gz).unwrap();
        assert_eq!((t.name.as_str(), t.keys.as_slice()), ("g", &[5, 6][..]));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "1\n2\nxyz\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.txt:3") && e.contains("xyz"), "{e}");

        let neg = dir.path().join("neg.txt");
        std::fs::write(&neg, "-4\n").unwrap();
        assert!(matches!(load(&neg), Err(TraceError::Parse { line: 1, .. })));

        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n\n").unwrap();
        assert!(matches!(load(&empty), Err(TraceError::Empty { .. })));

        let missing = dir.path().join("missing.gz");
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.gz"), "{e}");

        let corrupt = dir.path().join("corrupt.gz");
        std::fs::write(&corrupt, [0x1f, 0x8b, 0, 1, 2, 3]).unwrap();
        assert!(matches!(load(&corrupt), Err(TraceError::Io { .. })));
    }
}
