//! A [`CacheFs`](crate::fs::CacheFs) mounted as a real file system (FUSE): unmodified programs read and
//! write a slow directory through memory. Needs the `mount` feature, Linux, `/dev/fuse` and
//! `fusermount3` (Debian's `fuse3`).
//!
//! ```no_run
//! use cachefs::mount::{mount, MountOptions};
//!
//! let mounted = mount("/mnt/nfs/datasets".as_ref(), "/run/datasets".as_ref(), MountOptions::default())?;
//! // ... programs use /run/datasets; `fusermount3 -u /run/datasets` (or `mounted.unmount()`) ends it.
//! mounted.wait()?; // returns once unmounted, after every dirty file reached /mnt/nfs/datasets
//! # Ok::<(), cachefs::mount::MountError>(())
//! ```
//!
//! # What the mount promises
//! - File contents go through the `CacheFs` in its write mode: reads of cached files never touch the
//!   backing directory; in write-back a file is stored on `close` and written out within the flush
//!   delay, and `fsync` returns only once the file is on the backing directory.
//! - A file being written is held whole in memory from its first write until its last handle closes
//!   (programs write pieces at offsets; the file layer stores whole files). Working copies together may
//!   hold at most `max_bytes`; a write past that fails with `ENOSPC`.
//! - Directories, permission bits and times live on the backing directory: `mkdir`, `rmdir`, renames and
//!   `chmod`/`utimes` reach it before they are acknowledged (in write-back, a file whose attributes change
//!   is written out first).
//! - Unmounting ([`Mount::unmount`] or `fusermount3 -u`) stores every open file and flushes every dirty
//!   one before [`Mount::wait`] returns; a failure is returned, never dropped. [`MountHandle::shutdown`]
//!   does the same while still mounted, refusing changes from then on (`EIO`): what the CLI does on
//!   Ctrl-C or SIGTERM before it unmounts.
//! - Not supported: symlinks, hard links, special files, extended attributes, ownership changes to
//!   another user (`EPERM`). The backing directory's symlinks and special files are not shown. Names
//!   containing [`TEMP_MARKER`](crate::fs::TEMP_MARKER) (`.cachefs-tmp.`) are the backend's temporary
//!   files: not shown, and refused (`EINVAL`); those a crash left behind are removed when the mount starts.
//! - A file keeps its permission bits when its content is replaced; a file created with a mode other
//!   than `0644` is written out at once in write-back, so it never lands with a wider mode.

mod backing;
mod dir_cache;
mod errno;
mod filesystem;
mod inodes;
mod open_files;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use serde::Serialize;

pub use backing::BackingCounts;

use self::backing::Backing;
use self::filesystem::{MountedFs, Shared};
use crate::fs::{CacheFs, FsStats, WriteMode};
use crate::metrics::prometheus;

/// How to mount; [`Default`] is write-through, 1 GiB, metadata TTL 1 s.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// How writes reach the backing directory.
    pub write_mode: WriteMode,
    /// Bytes of file content held in memory (and, separately, the most held by files being written).
    pub max_bytes: u64,
    /// How long a file's length and time (and the kernel's view of entries) stay cached.
    pub metadata_ttl: Duration,
    /// Refuse every change (mounted `ro`).
    pub read_only: bool,
    /// A delay added to every operation on the backing directory: stands in for a network disk in
    /// benchmarks and tests. Zero in production.
    pub backing_delay: Duration,
    /// Threads serving FUSE requests.
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            write_mode: WriteMode::WriteThrough,
            max_bytes: 1 << 30,
            metadata_ttl: Duration::from_secs(1),
            read_only: false,
            backing_delay: Duration::ZERO,
            threads: 4,
        }
    }
}

/// Why a mount could not start or did not end cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The backing directory is missing or not a directory.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The directory as given.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the mount (no `/dev/fuse`, no `fusermount3`, mount point missing or busy).
    #[error("cannot mount at {mountpoint}: {source}")]
    Mount {
        /// The mount point as given.
        mountpoint: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Unmounting failed.
    #[error("cannot unmount {mountpoint}: {source}")]
    Unmount {
        /// The mount point.
        mountpoint: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Dirty data could not be written to the backing directory at the end: it is lost with the
    /// process. Each failing file is listed.
    #[error("unflushed data at unmount: {0}")]
    Flush(#[source] crate::fs::Error),
}

/// A snapshot of a mount's counters: the file layer's, the backing directory's, the open files'.
#[derive(Debug, Clone, Serialize)]
pub struct MountStats {
    /// The `CacheFs` underneath.
    pub fs: FsStats,
    /// Operations that reached the backing directory.
    pub backing: BackingCounts,
    /// Files open through the mount.
    pub open_files: u64,
    /// Bytes held in working copies of files being written.
    pub open_bytes: u64,
}

impl MountStats {
    /// As pretty-printed JSON (what `/stats.json` serves).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }

    /// In the Prometheus text format: the file layer's `cachefs_fs_*` families and `cachefs_mount_*`.
    pub fn to_prometheus(&self) -> String {
        let mut out = self.fs.to_prometheus();
        let cache = prometheus::label(&self.fs.name);
        for (kind, name, help, value) in [
            (
                "counter",
                "cachefs_mount_backing_reads_total",
                "File reads that reached the backing directory.",
                self.backing.reads,
            ),
            (
                "counter",
                "cachefs_mount_backing_writes_total",
                "Writes, removes and renames on the backing directory.",
                self.backing.writes,
            ),
            (
                "counter",
                "cachefs_mount_backing_metadata_total",
                "Lookups, listings and attribute calls on the backing directory.",
                self.backing.metadata,
            ),
            ("gauge", "cachefs_mount_open_files", "Files open through the mount.", self.open_files),
            ("gauge", "cachefs_mount_open_bytes", "Bytes held by files being written.", self.open_bytes),
        ] {
            prometheus::single(&mut out, kind, &cache, (name, help, value));
        }
        out
    }
}

/// A mount's stats and shutdown, from any thread (a metrics server, a signal handler).
#[derive(Clone)]
pub struct MountHandle(Arc<Shared>);

impl MountHandle {
    /// Stops accepting changes (from now on they fail with `EIO`; changes in flight finish first),
    /// stores every open file and writes every dirty one to the backing directory. The file system
    /// stays mounted and readable until it is unmounted. Call it before a forced unmount so that nothing
    /// acknowledged is lost; a failure lists the files that could not be written.
    pub fn shutdown(&self) -> Result<(), MountError> {
        let stored = self.0.close();
        self.0.cache.flush().map_err(MountError::Flush)?;
        stored.map_err(open_files_error)
    }

    /// The current counters.
    pub fn stats(&self) -> MountStats {
        let s = &self.0;
        MountStats {
            fs: s.cache.stats(),
            backing: s.backing.counts(),
            open_files: s.open.count() as u64,
            open_bytes: s.open.held(),
        }
    }
}

impl std::fmt::Debug for MountHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountHandle").finish_non_exhaustive()
    }
}

/// A mounted file system. Dropping it unmounts (dirty data is flushed by the `CacheFs`'s own drop,
/// failures only counted); call [`unmount`](Self::unmount) or [`wait`](Self::wait) to see them.
pub struct Mount {
    session: BackgroundSession,
    shared: Arc<Shared>,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount").field("mountpoint", &self.mountpoint).finish_non_exhaustive()
    }
}

/// Mounts a `CacheFs` over directory `backing` at `mountpoint` and serves it on background threads.
pub fn mount(backing: &Path, mountpoint: &Path, options: MountOptions) -> Result<Mount, MountError> {
    let backing_err = |source| MountError::Backing { path: backing.to_path_buf(), source };
    let dir = Backing::new(backing, options.backing_delay).map_err(backing_err)?;
    let content = dir.content().map_err(|e| backing_err(io::Error::other(e)))?;
    // Temporaries of writes a crash interrupted: never anyone's data.
    content.remove_temp_files().map_err(|e| backing_err(io::Error::other(e)))?;
    let write_mode = match options.write_mode {
        WriteMode::WriteBack { delay, max_dirty_bytes } => {
            WriteMode::WriteBack { delay, max_dirty_bytes: max_dirty_bytes.max(options.max_bytes / 2) }
        }
        other => other,
    };
    let cache = CacheFs::builder(content)
        .max_bytes(options.max_bytes)
        .write_mode(write_mode)
        .metadata_ttl(options.metadata_ttl)
        .name("mount")
        .latency(crate::latency::LatencyConfig::default())
        .build();
    // The source column of the mount table names the backing directory (`cachefs warm` reads it there);
    // the type column is `fuse` or `fuse.cachefs` depending on how the kernel was asked.
    let mut fsname = format!("cachefs:{}", dir.root().display());
    fsname.retain(|c| c != ',');
    let shared = Arc::new(Shared::new(cache, dir, options.metadata_ttl, write_mode, options.max_bytes));
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(fsname),
        MountOption::Subtype("cachefs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        if options.read_only { MountOption::RO } else { MountOption::RW },
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(options.threads.max(1));
    let session = fuser::spawn_mount(MountedFs(Arc::clone(&shared)), mountpoint, &config)
        .map_err(|source| MountError::Mount { mountpoint: mountpoint.to_path_buf(), source })?;
    Ok(Mount { session, shared, mountpoint: mountpoint.to_path_buf() })
}

impl Mount {
    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The current counters.
    pub fn stats(&self) -> MountStats {
        self.handle().stats()
    }

    /// A handle for stats and shutdown from other threads.
    pub fn handle(&self) -> MountHandle {
        MountHandle(Arc::clone(&self.shared))
    }

    /// Unmounts (fails if files are still open: `EBUSY`), then stores and flushes everything.
    pub fn unmount(self) -> Result<(), MountError> {
        let Mount { session, shared, mountpoint } = self;
        session.umount_and_join().map_err(|source| MountError::Unmount { mountpoint, source })?;
        finish(&shared)
    }

    /// Waits until the file system is unmounted from outside (`fusermount3 -u`), then stores and flushes
    /// everything.
    pub fn wait(self) -> Result<(), MountError> {
        let Mount { session, shared, mountpoint } = self;
        session.join().map_err(|source| MountError::Unmount { mountpoint, source })?;
        finish(&shared)
    }
}

/// Stores files left open and flushes every dirty one.
fn finish(shared: &Shared) -> Result<(), MountError> {
    let stored = shared.store_all();
    shared.cache.flush().map_err(MountError::Flush)?;
    stored.map_err(open_files_error)
}

fn open_files_error(e: fuser::Errno) -> MountError {
    MountError::Flush(crate::fs::Error::io("(files open at the end)", io::Error::from_raw_os_error(e.code())))
}
