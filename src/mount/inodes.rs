//! Inode numbers for the paths the kernel knows: handed out at lookup, kept while the kernel holds a
//! reference, moved with their paths on rename.

use std::collections::HashMap;
use std::ffi::OsStr;

use fuser::Errno;
use parking_lot::Mutex;

/// The root's inode number (FUSE's fixed 1); its path is `""`.
pub(crate) const ROOT: u64 = 1;

/// What the mount remembers of one path the kernel holds.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) path: String,
    pub(crate) dir: bool,
    /// Permission bits (the backing entry's when looked up; as set through the mount since).
    pub(crate) perm: u16,
    /// Kernel references (lookups not yet forgotten).
    lookups: u64,
}

#[derive(Debug)]
struct Table {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<String, u64>,
    next: u64,
}

/// The inode table. One mutex: every operation is a few map lookups, never I/O.
#[derive(Debug)]
pub(crate) struct Inodes {
    table: Mutex<Table>,
}

/// `parent/name` as a relative path; `name` must be one UTF-8 component.
pub(crate) fn join(parent: &str, name: &OsStr) -> Result<String, Errno> {
    let name = name.to_str().ok_or(Errno::EINVAL)?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(Errno::EINVAL);
    }
    if name.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(if parent.is_empty() { name.to_string() } else { format!("{parent}/{name}") })
}

/// `path`'s parent directory and last component (`""` is the root).
pub(crate) fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// True if `path` is `dir` or below it (by component).
pub(crate) fn within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

impl Inodes {
    pub(crate) fn new(root_perm: u16) -> Self {
        let root = Node { path: String::new(), dir: true, perm: root_perm, lookups: 1 };
        let table =
            Table { nodes: HashMap::from([(ROOT, root)]), by_path: HashMap::from([(String::new(), ROOT)]), next: 2 };
        Inodes { table: Mutex::new(table) }
    }

    pub(crate) fn get(&self, ino: u64) -> Result<Node, Errno> {
        self.table.lock().nodes.get(&ino).cloned().ok_or(Errno::ENOENT)
    }

    pub(crate) fn path(&self, ino: u64) -> Result<String, Errno> {
        self.table.lock().nodes.get(&ino).map(|n| n.path.clone()).ok_or(Errno::ENOENT)
    }

    /// The node known for `path`, if the kernel holds one.
    pub(crate) fn find(&self, path: &str) -> Option<(u64, Node)> {
        let t = self.table.lock();
        let ino = *t.by_path.get(path)?;
        Some((ino, t.nodes[&ino].clone()))
    }

    /// Counts one kernel reference to `path`, creating its node (with `dir` and `perm`) if it has none;
    /// returns its inode number.
    pub(crate) fn remember(&self, path: &str, dir: bool, perm: u16) -> u64 {
        let mut t = self.table.lock();
        if let Some(&ino) = t.by_path.get(path) {
            let node = t.nodes.get_mut(&ino).expect("by_path and nodes agree");
            node.lookups += 1;
            node.dir = dir;
            return ino;
        }
        let ino = t.next;
        t.next += 1;
        t.nodes.insert(ino, Node { path: path.to_string(), dir, perm, lookups: 1 });
        t.by_path.insert(path.to_string(), ino);
        ino
    }

    pub(crate) fn set_perm(&self, ino: u64, perm: u16) {
        if let Some(n) = self.table.lock().nodes.get_mut(&ino) {
            n.perm = perm;
        }
    }

    /// Drops `n` kernel references; the node goes with the last.
    pub(crate) fn forget(&self, ino: u64, n: u64) {
        let mut t = self.table.lock();
        let Some(node) = t.nodes.get_mut(&ino) else { return };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 && ino != ROOT {
            let path = node.path.clone();
            t.nodes.remove(&ino);
            if t.by_path.get(&path) == Some(&ino) {
                t.by_path.remove(&path);
            }
        }
    }

    /// `path` is gone: its node (if any) keeps its number for open handles but no longer answers to
    /// the name.
    pub(crate) fn unlinked(&self, path: &str) {
        let mut t = self.table.lock();
        if let Some(ino) = t.by_path.remove(path)
            && let Some(n) = t.nodes.get_mut(&ino)
        {
            n.path = format!("\0unlinked/{ino}");
        }
    }

    /// `from` (and, for a directory, everything below it) is now at `to`; whatever was at `to` is gone.
    pub(crate) fn renamed(&self, from: &str, to: &str) {
        self.unlinked(to);
        let mut t = self.table.lock();
        let moved: Vec<(String, u64)> = t
            .by_path
            .iter()
            .filter(|(p, _)| within(p, from) && !from.is_empty())
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            let new = format!("{to}{}", &old[from.len()..]);
            t.by_path.remove(&old);
            t.by_path.insert(new.clone(), ino);
            if let Some(n) = t.nodes.get_mut(&ino) {
                n.path = new;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_moves_descendants_and_unlink_detaches() {
        let inodes = Inodes::new(0o755);
        let a = inodes.remember("a", true, 0o755);
        let ab = inodes.remember("a/b", false, 0o644);
        let ax = inodes.remember("ax", false, 0o644);
        let c = inodes.remember("c", false, 0o644);
        inodes.renamed("a", "c");
        assert_eq!(inodes.path(a).unwrap(), "c");
        assert_eq!(inodes.path(ab).unwrap(), "c/b");
        assert_eq!(inodes.path(ax).unwrap(), "ax", "a sibling sharing the prefix stays");
        assert!(inodes.path(c).unwrap().starts_with('\0'), "the replaced file no longer has a name");
        assert_eq!(inodes.find("c").unwrap().0, a);
        inodes.forget(ab, 1);
        assert_eq!(inodes.get(ab).unwrap_err(), Errno::ENOENT);
        assert!(inodes.find("c/b").is_none());
    }

    #[test]
    fn names_are_single_components() {
        assert_eq!(join("", OsStr::new("x")).unwrap(), "x");
        assert_eq!(join("a", OsStr::new("x")).unwrap(), "a/x");
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(join("a", OsStr::new(bad)).unwrap_err(), Errno::EINVAL);
        }
        assert_eq!(join("a", OsStr::new(&"n".repeat(256))).unwrap_err(), Errno::ENAMETOOLONG);
    }
}
