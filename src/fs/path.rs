//! Paths inside a [`CacheFs`](super::CacheFs): relative, `/`-separated, UTF-8, and never leaving the root.
//!
//! A path is *canonical* when it has no empty, `.` or `..` components and no leading or trailing `/`.
//! Only canonical paths are ever stored as cache keys, so a lookup can try the caller's string first and
//! validate only on a miss: a hit proves the string was canonical.

use std::borrow::Cow;
use std::path::Path;

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
}
