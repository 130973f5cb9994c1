//! Paths inside a [`CacheFs`](super::CacheFs): relative, `/`-separated, UTF-8, and never leaving the root;
//! the cache keys built from them; and glob patterns over them.
//!
//! A path is *canonical* when it has no empty, `.` or `..` components and no leading or trailing `/`.
//! Only canonical paths are ever stored as cache keys, so a lookup can try the caller's string first and
//! validate only on a miss: a hit proves the string was canonical.
//!
//! # Keys
//! A whole file is cached under its canonical path. Chunk `i` of a large file read under chunk generation
//! `g` is cached under `path\0g.i`: NUL never occurs in a path (a caller's string containing it is refused
//! before any lookup), so chunk keys never collide with file keys, and a chunk of one version of a file is
//! never found by a reader of another.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use glob::{MatchOptions, Pattern};

use super::error::Error;

/// Longest component most file systems accept.
pub(crate) const MAX_COMPONENT: usize = 255;

/// The caller's path as a string, without copying when it is UTF-8.
pub(crate) fn as_str(path: &Path) -> Result<&str, Error> {
    path.to_str().ok_or_else(|| invalid(&path.to_string_lossy(), "not UTF-8"))
}

fn invalid(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath { path: path.to_string(), reason }
}

/// Checks `path` and returns its canonical form: borrowed when it already is canonical, normalised
/// (`a/./b` → `a/b`, `a/../b` → `b`) otherwise. The empty path (the root) is refused unless `allow_root`.
pub(crate) fn canonical(path: &str, allow_root: bool) -> Result<Cow<'_, str>, Error> {
    if path.as_bytes().contains(&0) {
        return Err(invalid(path, "contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(invalid(path, "absolute paths are not allowed"));
    }
    let mut plain = true;
    let mut depth = 0usize;
    for part in path.split('/') {
        match part {
            "" | "." => plain = false,
            ".." => {
                plain = false;
                depth = depth.checked_sub(1).ok_or_else(|| invalid(path, "`..` leads above the root"))?;
            }
            _ if part.len() > MAX_COMPONENT => return Err(invalid(path, "a component is longer than 255 bytes")),
            _ => depth += 1,
        }
    }
    if depth == 0 && !allow_root {
        return Err(invalid(path, "names the root, not a file"));
    }
    if plain {
        return Ok(Cow::Borrowed(path));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    Ok(Cow::Owned(parts.join("/")))
}

/// A path argument after checking: borrowed when the caller's string was already canonical.
pub(crate) fn checked(path: &Path) -> Result<Cow<'_, str>, Error> {
    canonical(as_str(path)?, false)
}

/// A directory argument after checking (the empty path, the root, is allowed).
pub(crate) fn checked_dir(dir: &Path) -> Result<Cow<'_, str>, Error> {
    canonical(as_str(dir)?, true)
}

/// Room to reserve beyond a path for its chunk keys' suffix (`\0`, two u64s and a dot).
pub(crate) const CHUNK_SUFFIX: usize = 42;

/// The cache key of chunk `idx` of `path` under chunk generation `generation`, built in `buf`.
pub(crate) fn chunk_key<'a>(buf: &'a mut String, path: &str, generation: u64, idx: u64) -> &'a str {
    buf.clear();
    buf.push_str(path);
    buf.push('\0');
    let _ = write!(buf, "{generation}.{idx}");
    buf
}

/// The file a cache key belongs to.
pub(crate) fn file_of(key: &str) -> &str {
    key.split_once('\0').map_or(key, |(file, _)| file)
}

/// `*` and `?` do not cross `/`; `**` does.
pub(crate) const GLOB_OPTIONS: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// A compiled glob pattern over canonical paths.
#[derive(Debug)]
pub(crate) struct Glob {
    pattern: Pattern,
    /// The directory below which every match lies (the pattern's literal leading components).
    base: String,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Result<Self, Error> {
        let compiled = Pattern::new(pattern)
            .map_err(|e| Error::InvalidPattern { pattern: pattern.to_string(), reason: e.msg.to_string() })?;
        let literal = pattern.find(['*', '?', '[']).map_or(pattern, |i| &pattern[..i]);
        let base = literal.rfind('/').map_or("", |i| &literal[..i]);
        let base = canonical(base, true)?.into_owned();
        Ok(Glob { pattern: compiled, base })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.pattern.matches_with(path, GLOB_OPTIONS)
    }

    /// The directory to list to find every match.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
}

/// The directories above `path`, deepest last: `a/b/c` gives `a`, `a/b`.
pub(crate) fn parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// A dataset name: one plain component.
pub(crate) fn dataset(name: &str) -> Result<&str, Error> {
    match canonical(name, false)? {
        Cow::Borrowed(n) if !n.contains('/') => Ok(n),
        _ => Err(invalid(name, "a dataset name is one plain component")),
    }
}

/// True when `path` is `dir` or lies below it (`dir` canonical; the empty `dir` is the root).
pub(crate) fn is_within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in ["a", "a/b.bin", "models/v1/weights.safetensors", "..a/b..", ".hidden"] {
            assert!(matches!(canonical(p, false), Ok(Cow::Borrowed(q)) if q == p), "{p}");
        }
    }

    #[test]
    fn other_valid_paths_are_normalised() {
        for (p, want) in [("a//b", "a/b"), ("./a", "a"), ("a/./b/", "a/b"), ("a/../b", "b"), ("a/b/../../c", "c")] {
            assert_eq!(canonical(p, false).unwrap(), want, "{p}");
        }
        assert_eq!(canonical("", true).unwrap(), "");
        assert_eq!(canonical("a/..", true).unwrap(), "");
    }

    #[test]
    fn unsafe_paths_are_refused_with_a_reason() {
        let long = "x".repeat(256);
        for (p, reason) in [
            ("/etc/passwd", "absolute"),
            ("..", "above the root"),
            ("a/../../b", "above the root"),
            ("a\0b", "NUL"),
            (long.as_str(), "255"),
            ("", "root"),
            ("a/..", "root"),
        ] {
            match canonical(p, false) {
                Err(Error::InvalidPath { reason: r, .. }) => assert!(r.contains(reason), "{p}: {r}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        assert!(canonical(&"x".repeat(255), false).is_ok());
    }

    #[test]
    fn non_utf8_is_refused() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(OsStr::from_bytes(b"a\xffb"));
        assert!(matches!(as_str(p), Err(Error::InvalidPath { .. })));
    }

    #[test]
    fn datasets_are_one_component_and_within_is_by_component() {
        assert_eq!(dataset("imagenet").unwrap(), "imagenet");
        assert!(dataset("a/b").is_err() && dataset("..").is_err() && dataset("").is_err());
        assert!(is_within("a/b", "a") && is_within("a", "a") && is_within("x", ""));
        assert!(!is_within("ab/c", "a"));
    }

    #[test]
    fn chunk_keys_name_their_file_and_generation() {
        let mut buf = String::new();
        assert_eq!(chunk_key(&mut buf, "a/b", 7, 3), "a/b\x007.3");
        assert_eq!(file_of(chunk_key(&mut buf, "a/b", 7, 3)), "a/b");
        assert_ne!(chunk_key(&mut String::new(), "f", 1, 2), chunk_key(&mut buf, "f", 2, 1));
        assert_eq!(chunk_key(&mut buf, "", u64::MAX, u64::MAX).len(), CHUNK_SUFFIX, "the longest suffix fits");
        assert_eq!(file_of("plain"), "plain");
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(parents("a").count(), 0);
    }

    #[test]
    fn globs_know_where_to_list() {
        let g = Glob::new("data/**/x?.bin").unwrap();
        assert_eq!(g.base(), "data");
        assert!(g.matches("data/a/b/x1.bin") && !g.matches("data/x12.bin"));
        assert_eq!(Glob::new("*.txt").unwrap().base(), "");
        assert!(!Glob::new("a/*").unwrap().matches("a/b/c"), "* stays within a component");
        assert!(matches!(Glob::new("a/[").unwrap_err(), Error::InvalidPattern { .. }));
    }
}
