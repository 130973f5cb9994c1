//! `cachefs warm`: reads files through a cachefs mount so that they are served from memory afterwards.
//! Paths may be given inside the mount or inside its backing directory (mapped to the mount through
//! `/proc/self/mountinfo`); directories are walked; `--glob` filters, `--list` adds paths from a file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a warm failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// A path is neither in a cachefs mount nor in the backing directory of one.
    #[error("{0}: not inside a cachefs mount or the backing directory of one (see `cachefs mount`)")]
    NotCached(PathBuf),
    /// A path, the list or the mount table could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The glob pattern is malformed.
    #[error("--glob {pattern:?}: {reason}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// Some files could not be read (the rest were warmed).
    #[error("{failed} file(s) could not be read; first: {first}")]
    Partial {
        /// How many.
        failed: u64,
        /// The first failure.
        first: String,
    },
}

/// One cachefs mount: its backing directory (the mount's source) and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachefsMount {
    /// The backing directory.
    pub backing: PathBuf,
    /// The mount point.
    pub mountpoint: PathBuf,
}

/// The cachefs mounts in a `/proc/self/mountinfo` text: type `fuse` or `fuse.cachefs`, source
/// `cachefs:<backing directory>`.
pub fn mounts(mountinfo: &str) -> Vec<CachefsMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mountpoint = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let (kind, source) = (r.next()?, r.next()?);
            let backing = source.strip_prefix("cachefs:").filter(|_| kind == "fuse" || kind == "fuse.cachefs")?;
            Some(CachefsMount { backing: unescape(backing), mountpoint })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal =
            b.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        if let (b'\\', Some(v)) = (b[i], octal) {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Where to read `path` so that a cachefs mount caches it: itself if it is inside a mount, the matching
/// path in the mount if it is inside a backing directory.
pub fn through_mount(path: &Path, mounts: &[CachefsMount]) -> Result<PathBuf, WarmError> {
    let abs = path.canonicalize().map_err(|source| WarmError::Io { path: path.to_path_buf(), source })?;
    // The deepest mount point first: a mount inside another mount's tree wins.
    let mut by_depth: Vec<&CachefsMount> = mounts.iter().collect();
    by_depth.sort_by_key(|m| std::cmp::Reverse(m.mountpoint.components().count()));
    if by_depth.iter().any(|m| abs.starts_with(&m.mountpoint)) {
        return Ok(abs);
    }
    for m in by_depth {
        if let Ok(rest) = abs.strip_prefix(&m.backing) {
            return Ok(m.mountpoint.join(rest));
        }
    }
    Err(WarmError::NotCached(path.to_path_buf()))
}

/// Every regular file at or below `root` whose path relative to `root` matches `glob` (all if None).
pub fn files(root: &Path, glob: Option<&glob::Pattern>, out: &mut Vec<(PathBuf, u64)>) -> Result<(), WarmError> {
    fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WarmError + '_ {
        move |source| WarmError::Io { path: path.to_path_buf(), source }
    }
    let meta = std::fs::symlink_metadata(root).map_err(io_err(root))?;
    if meta.is_file() {
        out.push((root.to_path_buf(), meta.len()));
        return Ok(());
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io_err(&path))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
                if glob.is_none_or(|g| g.matches_path_with(rel, options)) {
                    out.push((path, meta.len()));
                }
            }
        }
    }
    Ok(())
}

/// Parses a glob pattern.
pub fn pattern(p: &str) -> Result<glob::Pattern, WarmError> {
    glob::Pattern::new(p).map_err(|e| WarmError::Glob { pattern: p.to_string(), reason: e.msg.to_string() })
}

/// Reads the list file: one path per line, blank lines and `#` comments skipped.
pub fn list(path: &Path) -> Result<Vec<PathBuf>, WarmError> {
    let text = std::fs::read_to_string(path).map_err(|source| WarmError::Io { path: path.to_path_buf(), source })?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(PathBuf::from).collect())
}

/// Progress so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files read.
    pub files: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
}

/// Reads every file whole with `workers` threads, reporting into `progress`; returns how many failed
/// with the first failure.
pub fn read_all(files: &[(PathBuf, u64)], workers: usize, progress: &Progress) -> Result<(), WarmError> {
    let next = AtomicU64::new(0);
    let failures = Mutex::new((0u64, String::new()));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some((path, _)) = files.get(i) else { break };
                    let read = File::open(path).and_then(|mut f| {
                        loop {
                            match f.read(&mut buf)? {
                                0 => break Ok(()),
                                n => progress.bytes.fetch_add(n as u64, Ordering::Relaxed),
                            };
                        }
                    });
                    match read {
                        Ok(()) => {
                            progress.files.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let mut f = failures.lock().unwrap_or_else(|p| p.into_inner());
                            if f.0 == 0 {
                                f.1 = format!("{}: {e}", path.display());
                            }
                            f.0 += 1;
                        }
                    }
                }
            });
        }
    });
    let (failed, first) = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    if failed > 0 { Err(WarmError::Partial { failed, first }) } else { Ok(()) }
}

/// Lowers this process's CPU and I/O priority (a low-priority warm yields to the mount's users).
pub fn lower_priority() {
    // SAFETY: setpriority and the ioprio_set syscall take plain integers and touch no memory; failure
    // only leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        // IOPRIO_CLASS_IDLE (3) << IOPRIO_CLASS_SHIFT (13), for this process (IOPRIO_WHO_PROCESS = 1, pid 0).
        libc::syscall(libc::SYS_ioprio_set, 1, 0, 3 << 13);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "36 35 98:0 / /mnt/m\\040x rw,nosuid - fuse.cachefs cachefs:/data/slow rw,user_id=0\n\
                        38 35 98:0 / /b rw,nosuid - fuse cachefs:/data/other rw,user_id=0\n\
                        39 35 98:0 / /c rw,nosuid - fuse sshfs:/x rw,user_id=0\n\
                        37 35 98:0 / /other rw - ext4 /dev/sda1 rw\n";

    #[test]
    fn finds_cachefs_mounts_and_maps_backing_paths() {
        let m = mounts(INFO);
        assert_eq!(
            m,
            [
                CachefsMount { backing: "/data/slow".into(), mountpoint: "/mnt/m x".into() },
                CachefsMount { backing: "/data/other".into(), mountpoint: "/b".into() }
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("b");
        std::fs::create_dir_all(backing.join("sub")).unwrap();
        let m = [CachefsMount { backing: backing.canonicalize().unwrap(), mountpoint: "/mnt/m".into() }];
        assert_eq!(through_mount(&backing.join("sub"), &m).unwrap(), PathBuf::from("/mnt/m/sub"));
        assert!(matches!(through_mount(dir.path(), &m), Err(WarmError::NotCached(_))));
        assert!(matches!(through_mount(&dir.path().join("missing"), &m), Err(WarmError::Io { .. })));
    }

    #[test]
    fn walks_filters_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.bin"), [1u8; 10]).unwrap();
        std::fs::write(dir.path().join("a/y.txt"), [2u8; 5]).unwrap();
        let mut found = Vec::new();
        files(dir.path(), Some(&pattern("**/*.bin").unwrap()), &mut found).unwrap();
        assert_eq!(found, [(dir.path().join("a/b/x.bin"), 10)]);
        found.clear();
        files(dir.path(), Some(&pattern("*.txt").unwrap()), &mut found).unwrap();
        assert!(found.is_empty(), "`*` stays within one component: {found:?}");
        files(dir.path(), Some(&pattern("*/*.txt").unwrap()), &mut found).unwrap();
        assert_eq!(found, [(dir.path().join("a/y.txt"), 5)]);
        found.clear();
        files(dir.path(), None, &mut found).unwrap();
        assert_eq!(found.len(), 2);
        let p = Progress::default();
        read_all(&found, 2, &p).unwrap();
        assert_eq!((p.files.load(Ordering::Relaxed), p.bytes.load(Ordering::Relaxed)), (2, 15));
        found.push((dir.path().join("gone"), 1));
        assert!(matches!(read_all(&found, 1, &Progress::default()), Err(WarmError::Partial { failed: 1, .. })));
        assert!(matches!(pattern("[").unwrap_err(), WarmError::Glob { .. }));
        std::fs::write(dir.path().join("list"), "# c\n\n/x\n y \n").unwrap();
        assert_eq!(list(&dir.path().join("list")).unwrap(), [PathBuf::from("/x"), PathBuf::from("y")]);
    }
}
