//! The disk tier: complete, verified blobs in one directory, an index of them, and the LRU bound.
//!
//! # Layout
//!
//! `sha256_<hex>` is a blob; `sha256_<hex>.verified` records that it was verified, as the file's
//! fingerprint (inode, size, mtime and ctime in ns) at that moment; `.tmp.*` are fills (or markers) in
//! progress; `.lock` is held (`flock`) by the one store using the directory.
//!
//! # Crash safety
//!
//! A blob gets its name only complete and verified: the fill writes a temporary file, checks its
//! sha256, fsyncs it, renames it and fsyncs the directory (see `temp.rs`), then writes the marker.
//! After a crash, a temporary is garbage (deleted when the next store opens the directory), a blob
//! with no marker (the crash fell between rename and marker) or a marker that no longer matches the
//! file (the file was written to since) is *unverified*: it is hashed again before its first read, and
//! deleted if it does not match. A matching marker lets a restart adopt a directory of large blobs
//! without reading them. Opening a blob also compares the open file's fingerprint with the recorded one,
//! so a blob modified while the store runs is re-verified before it is served.
//!
//! # One store per directory
//!
//! Two processes filling one directory would each delete the other's temporaries on start-up, so
//! `open` takes an exclusive `flock` on `.lock` and fails with [`Error::Locked`] if another process
//! holds it. The kernel releases it when the process dies, even by SIGKILL.
//!
//! # The index and its lock
//!
//! `index` (a mutex) protects the map of blobs (size, last use, open count, fingerprint, verified
//! flag) and the byte total. It is held for map operations only, never across I/O: callers unlink,
//! hash and rename outside it. Eviction removes an entry from the index *before* unlinking its file,
//! and only while no handle has it open; the store runs it under the blob's flight (see `flight.rs`),
//! so no fill of the same digest can rename a new file into place between the two steps.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::temp::TEMP_PREFIX;
use super::{Digest, Error};
use crate::sync::Mutex;

const MARKER_SUFFIX: &str = ".verified";
const LOCK_FILE: &str = ".lock";
/// Hashing reads the file this much at a time.
const HASH_BUFFER: usize = 1 << 20;

/// What identifies one version of a file: a write changes mtime and ctime, a replacement the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Fingerprint {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Fingerprint {
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn encode(&self) -> String {
        format!("v1 {} {} {} {}\n", self.ino, self.size, self.mtime_ns, self.ctime_ns)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.trim_end().split(' ');
        if parts.next()? != "v1" {
            return None;
        }
        let f = Fingerprint {
            ino: parts.next()?.parse().ok()?,
            size: parts.next()?.parse().ok()?,
            mtime_ns: parts.next()?.parse().ok()?,
            ctime_ns: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(f)
    }
}

#[derive(Debug)]
struct Entry {
    size: u64,
    last_use: u64,
    /// Handles (and reads in progress) that have the blob open; eviction skips it while non-zero.
    opens: u32,
    /// The fingerprint recorded when the blob was last verified; `None` when it must be verified.
    verified: Option<Fingerprint>,
    /// Which version of the blob this is: a pin of an evicted and re-filled blob must not release a
    /// pin of the new one.
    generation: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Digest, Entry>,
    bytes: u64,
    tick: u64,
}

/// The answer of [`DiskTier::pin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// On disk and verified; now pinned (call `unpin` with the generation). The fingerprint to check
    /// the open file against.
    Pinned { size: u64, verified: Fingerprint, generation: u64 },
    /// On disk but not (or no longer) verified: verify before serving.
    Unverified,
    /// Not on disk.
    Absent,
}

/// What hashing a blob on disk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No file.
    Missing,
    /// It hashes to its digest (now recorded as verified).
    Good,
    /// It hashes to this instead.
    Corrupt(Digest),
}

/// What a store found in its directory when it opened it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Adopted {
    pub(crate) blobs: u64,
    pub(crate) unverified: u64,
    pub(crate) temps_removed: u64,
}

#[derive(Debug)]
pub(crate) struct DiskTier {
    dir: PathBuf,
    max_bytes: u64,
    /// Held (flock) for the tier's life; the kernel releases it with the process.
    _lock: File,
    index: Mutex<Index>,
}

impl DiskTier {
    /// Opens (creating) `dir`, takes its lock, deletes stray temporaries and adopts the blobs there.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<(DiskTier, Adopted), Error> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: lock_path.display().to_string() }),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let mut adopted = Adopted::default();
        let mut blobs = Vec::new();
        let mut markers = HashMap::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                // Ours, left by a fill that never finished: nobody else can be using it (we hold the lock).
                fs::remove_file(entry.path()).map_err(|e| Error::io(&entry.path(), e))?;
                adopted.temps_removed += 1;
            } else if let Some(d) = Digest::from_file_name(name) {
                let meta = entry.path().symlink_metadata().map_err(|e| Error::io(&entry.path(), e))?;
                if meta.is_file() {
                    blobs.push((d, Fingerprint::of(&meta)));
                }
            } else if let Some(d) = name.strip_suffix(MARKER_SUFFIX).and_then(Digest::from_file_name) {
                markers.insert(d, entry.path());
            }
        }
        let mut index = Index::default();
        for (d, now) in blobs {
            index.tick += 1;
            let generation = index.tick;
            let recorded = markers.remove(&d).and_then(|p| fs::read_to_string(p).ok());
            let verified = recorded.as_deref().and_then(Fingerprint::decode).filter(|f| *f == now);
            adopted.blobs += 1;
            adopted.unverified += u64::from(verified.is_none());
            index.bytes += now.size;
            index.entries.insert(d, Entry { size: now.size, last_use: 0, opens: 0, verified, generation });
        }
        for orphan in markers.into_values() {
            let _ = fs::remove_file(orphan);
        }
        let tier = DiskTier { dir: dir.to_path_buf(), max_bytes, _lock: lock, index: Mutex::new(index) };
        Ok((tier, adopted))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.file_name())
    }

    fn marker_path(&self, d: &Digest) -> PathBuf {
        self.dir.join(format!("{}{MARKER_SUFFIX}", d.file_name()))
    }

    /// Pins `d` if it is on disk and verified, marking it used now.
    pub(crate) fn pin(&self, d: &Digest) -> Lookup {
        let mut index = self.index.lock();
        index.tick += 1;
        let tick = index.tick;
        match index.entries.get_mut(d) {
            None => Lookup::Absent,
            Some(e) => match e.verified {
                None => Lookup::Unverified,
                Some(verified) => {
                    e.opens += 1;
                    e.last_use = tick;
                    Lookup::Pinned { size: e.size, verified, generation: e.generation }
                }
            },
        }
    }

    /// Releases a pin taken by `pin` (of that generation: a pin of a since-removed blob is void).
    pub(crate) fn unpin(&self, d: &Digest, generation: u64) {
        if let Some(e) = self.index.lock().entries.get_mut(d).filter(|e| e.generation == generation) {
            e.opens = e.opens.saturating_sub(1);
        }
    }

    /// True when `d` is in the index (verified or not).
    pub(crate) fn contains(&self, d: &Digest) -> bool {
        self.index.lock().entries.contains_key(d)
    }

    /// Forgets that `d` was verified (its file changed under us), so the next read verifies it.
    pub(crate) fn distrust(&self, d: &Digest) {
        if let Some(e) = self.index.lock().entries.get_mut(d) {
            e.verified = None;
        }
    }

    /// Records a blob just renamed into place (`file` is it, open): fsyncs the directory so the rename
    /// is durable, writes the marker, and indexes it as verified (and as a new generation).
    pub(crate) fn commit(&self, d: &Digest, file: &File, size: u64) -> Result<(), Error> {
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(|e| Error::io(&self.dir, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&self.blob_path(d), e))?;
        let fingerprint = Fingerprint::of(&meta);
        self.write_marker(d, &fingerprint);
        let mut index = self.index.lock();
        index.tick += 1;
        let tick = index.tick;
        let entry = Entry { size, last_use: tick, opens: 0, verified: Some(fingerprint), generation: tick };
        let old_size = index.entries.insert(*d, entry).map_or(0, |e| e.size);
        index.bytes = index.bytes - old_size + size;
        Ok(())
    }

    /// Hashes `d`'s file; if it matches, records it verified (marker and index).
    pub(crate) fn verify(&self, d: &Digest) -> Result<Verdict, Error> {
        let path = self.blob_path(d);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Missing),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let before = file.metadata().map_err(|e| Error::io(&path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; HASH_BUFFER];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual = Digest::from_hasher(hasher);
        if actual != *d {
            return Ok(Verdict::Corrupt(actual));
        }
        let fingerprint = Fingerprint::of(&before);
        self.write_marker(d, &fingerprint);
        let mut guard = self.index.lock();
        let index = &mut *guard;
        index.tick += 1;
        let size = fingerprint.size;
        match index.entries.get_mut(d) {
            Some(e) => {
                index.bytes = index.bytes - e.size + size;
                e.size = size;
                e.verified = Some(fingerprint);
            }
            None => {
                index.bytes += size;
                let entry = Entry { size, last_use: 0, opens: 0, verified: Some(fingerprint), generation: index.tick };
                index.entries.insert(*d, entry);
            }
        }
        Ok(Verdict::Good)
    }

    /// The marker is a hint: losing it (a crash, a full disk) only costs a re-verification.
    fn write_marker(&self, d: &Digest, f: &Fingerprint) {
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(&self.dir)?;
            tmp.write_all(f.encode().as_bytes())?;
            tmp.persist(self.marker_path(d)).map_err(|e| e.error)?;
            Ok(())
        };
        if write().is_err() {
            let _ = fs::remove_file(self.marker_path(d));
        }
    }

    /// Removes `d` from the index and deletes its file and marker. Unless `force`, only if nothing has
    /// it open. Returns the bytes freed, or `None` if it was not removed.
    pub(crate) fn remove(&self, d: &Digest, force: bool) -> Option<u64> {
        let size = {
            let mut index = self.index.lock();
            let open = index.entries.get(d).map(|e| e.opens > 0)?;
            if open && !force {
                return None;
            }
            let e = index.entries.remove(d)?;
            index.bytes -= e.size;
            e.size
        };
        // An open handle keeps reading the unlinked file (Linux keeps its data until the last close).
        let _ = fs::remove_file(self.blob_path(d));
        let _ = fs::remove_file(self.marker_path(d));
        Some(size)
    }

    /// Blobs nobody has open, least recently used first, as many as eviction needs to get under the bound.
    pub(crate) fn eviction_candidates(&self) -> Vec<Digest> {
        let index = self.index.lock();
        let Some(mut excess) = index.bytes.checked_sub(self.max_bytes).filter(|&x| x > 0) else {
            return Vec::new();
        };
        let mut idle: Vec<(u64, Digest, u64)> =
            index.entries.iter().filter(|(_, e)| e.opens == 0).map(|(d, e)| (e.last_use, *d, e.size)).collect();
        idle.sort_unstable_by_key(|&(last_use, d, _)| (last_use, d));
        let mut out = Vec::new();
        for (_, d, size) in idle {
            if excess == 0 {
                break;
            }
            excess = excess.saturating_sub(size.max(1));
            out.push(d);
        }
        out
    }

    pub(crate) fn over_bound(&self) -> bool {
        self.index.lock().bytes > self.max_bytes
    }

    /// (blobs, bytes, blobs open now).
    pub(crate) fn usage(&self) -> (u64, u64, u64) {
        let index = self.index.lock();
        let open = index.entries.values().filter(|e| e.opens > 0).count() as u64;
        (index.entries.len() as u64, index.bytes, open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::temp::TempBlob;

    fn put(tier: &DiskTier, bytes: &[u8]) -> Digest {
        let d = Digest::of(bytes);
        let mut t = TempBlob::create(tier.dir(), &d, u64::MAX).unwrap();
        t.write_all(bytes).unwrap();
        let (file, size) = t.finish(&tier.blob_path(&d)).unwrap();
        tier.commit(&d, &file, size).unwrap();
        d
    }

    #[test]
    fn adopts_verified_blobs_reverifies_changed_ones_and_deletes_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let (tier, adopted) = DiskTier::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(adopted.blobs, 0);
            assert!(matches!(DiskTier::open(dir.path(), 1), Err(Error::Locked { .. })));
            (put(&tier, b"aaaa"), put(&tier, b"bbbbbb"))
        };
        fs::write(dir.path().join(format!("{TEMP_PREFIX}sha256_x.123")), b"partial").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.path().join(b.file_name()), b"bbbbbB").unwrap();
        fs::write(dir.path().join(format!("{}{MARKER_SUFFIX}", Digest::of(b"gone").file_name())), "v1").unwrap();
        let (tier, adopted) = DiskTier::open(dir.path(), 1 << 20).unwrap();
        assert_eq!((adopted.blobs, adopted.unverified, adopted.temps_removed), (2, 1, 1));
        assert!(matches!(tier.pin(&a), Lookup::Pinned { size: 4, .. }));
        assert_eq!(tier.pin(&b), Lookup::Unverified);
        assert!(matches!(tier.verify(&b).unwrap(), Verdict::Corrupt(x) if x == Digest::of(b"bbbbbB")));
        assert_eq!(tier.remove(&b, true), Some(6));
        assert_eq!(tier.verify(&b).unwrap(), Verdict::Missing);
        assert_eq!(tier.usage(), (1, 4, 1));
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 3, "blob a, its marker and the lock: {names:?}");
    }

    #[test]
    fn evicts_least_recently_used_blobs_that_are_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let (tier, _) = DiskTier::open(dir.path(), 10).unwrap();
        let a = put(&tier, b"aaaa");
        let b = put(&tier, b"bbbb");
        let c = put(&tier, b"cccc");
        assert!(tier.over_bound());
        let Lookup::Pinned { generation, .. } = tier.pin(&a) else { panic!("a is on disk") }; // open, most recent
        assert_eq!(tier.eviction_candidates(), vec![b]);
        assert_eq!(tier.remove(&a, false), None, "open blobs stay");
        assert_eq!(tier.remove(&b, false), Some(4));
        assert!(!tier.over_bound());
        assert!(tier.eviction_candidates().is_empty());
        tier.unpin(&a, generation + 1);
        assert_eq!(tier.usage().2, 1, "a pin of another generation releases nothing");
        tier.unpin(&a, generation);
        assert_eq!(tier.usage().2, 0);
        assert!(tier.contains(&c) && !tier.contains(&b));
        assert!(!tier.blob_path(&b).exists());
    }

    #[test]
    fn markers_decode_only_what_they_encode() {
        let f = Fingerprint { ino: 1, size: 2, mtime_ns: 3, ctime_ns: -4 };
        assert_eq!(Fingerprint::decode(&f.encode()), Some(f));
        for bad in ["", "v1", "v1 1 2 3", "v1 1 2 3 4 5", "v2 1 2 3 4", "v1 a 2 3 4"] {
            assert_eq!(Fingerprint::decode(bad), None, "{bad:?}");
        }
    }
}
