//! `cachefs mount`: serves a `CacheFs` over a directory as a FUSE file system until it is unmounted
//! (`fusermount3 -u`) or the process gets Ctrl-C, SIGTERM or SIGHUP; then writes every dirty file and
//! exits non-zero if one could not be written.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cachefs::fs::WriteMode;
use cachefs::mount::{self, MountError, MountHandle, MountOptions};

use crate::http;

/// Why `cachefs mount` failed.
#[derive(Debug, thiserror::Error)]
pub enum MountCliError {
    /// Mounting, unmounting or the final flush failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The metrics address could not be bound.
    #[error("--metrics {addr}: {source}")]
    Metrics {
        /// The address given.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The signals could not be set up.
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
}

/// Parses `500ms`, `5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is out of range"))
}

/// The write mode a `--mode` name and `--flush-delay` give.
pub fn write_mode(name: &str, flush_delay: Duration) -> WriteMode {
    match name {
        "write-back" => match WriteMode::write_back() {
            WriteMode::WriteBack { max_dirty_bytes, .. } => {
                WriteMode::WriteBack { delay: flush_delay, max_dirty_bytes }
            }
            other => other,
        },
        "write-around" => WriteMode::WriteAround,
        _ => WriteMode::WriteThrough,
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and in every thread it starts from now on (the
/// mount's workers), so that only the thread of [`on_signal`] receives them.
fn block_signals() -> Result<libc::sigset_t, std::io::Error> {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before use; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Starts the thread that waits for a signal, then shuts the mount down (refuses changes, stores open
/// files, flushes dirty ones) and unmounts it, so that the mount's `wait` returns. If files are still
/// open the unmount is lazy (the mount point is detached at once) and the process exits after the
/// flush: programs holding files get errors instead of a process that never ends.
fn on_signal(set: libc::sigset_t, mountpoint: &Path, handle: MountHandle) -> Result<(), std::io::Error> {
    let mountpoint = mountpoint.to_path_buf();
    std::thread::Builder::new().name("cachefs-signals".into()).spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is an initialised sigset_t owned by this closure; `sig` is a valid out pointer.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        eprintln!("cachefs mount: signal {sig}: flushing and unmounting {}", mountpoint.display());
        let flushed = handle.shutdown();
        if let Err(e) = &flushed {
            eprintln!("error: {e}");
        }
        let plain = Command::new("fusermount3").arg("-u").arg(&mountpoint).status();
        if plain.is_ok_and(|s| s.success()) {
            return; // the main thread's `wait` returns and reports
        }
        eprintln!("cachefs mount: {} is busy; detached it (its open files now fail)", mountpoint.display());
        let _ = Command::new("fusermount3").args(["-u", "-z"]).arg(&mountpoint).status();
        std::process::exit(if flushed.is_ok() { 0 } else { 2 });
    })?;
    Ok(())
}

/// Everything `cachefs mount` takes.
#[derive(Debug)]
pub struct Args {
    /// The slow directory.
    pub backing: PathBuf,
    /// Where to mount it.
    pub mountpoint: PathBuf,
    /// Mount options.
    pub options: MountOptions,
    /// Where to serve `/metrics` and `/stats.json`.
    pub metrics: Option<String>,
}

/// Runs the mount until it ends; the final flush's failure is the error.
pub fn run(args: Args) -> Result<(), MountCliError> {
    let listener = match &args.metrics {
        Some(addr) => {
            Some(TcpListener::bind(addr).map_err(|source| MountCliError::Metrics { addr: addr.clone(), source })?)
        }
        None => None,
    };
    let signals = block_signals().map_err(MountCliError::Signals)?;
    let mounted = mount::mount(&args.backing, &args.mountpoint, args.options)?;
    on_signal(signals, &args.mountpoint, mounted.handle()).map_err(MountCliError::Signals)?;
    if let Some(listener) = listener {
        let source = mounted.handle();
        eprintln!(
            "cachefs mount: metrics at http://{}/metrics and /stats.json",
            listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string())
        );
        http::serve(listener, move |path| match path {
            "/metrics" => Some(("text/plain; version=0.0.4", source.stats().to_prometheus())),
            "/stats.json" => Some(("application/json", source.stats().to_json())),
            _ => None,
        });
    }
    eprintln!("cachefs mount: {} mounted at {}", args.backing.display(), args.mountpoint.display());
    if let Err(e) = mounted.wait() {
        if let MountError::Flush(cachefs::fs::Error::Flush { failures }) = &e {
            // Every file whose data is lost with this process, not just the first.
            for f in failures {
                eprintln!("cachefs mount: not written: {}: {}", f.path, f.error);
            }
        }
        return Err(e.into());
    }
    eprintln!("cachefs mount: unmounted; every dirty file written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(write_mode("write-around", Duration::ZERO), WriteMode::WriteAround);
        assert!(
            matches!(write_mode("write-back", Duration::from_secs(5)), WriteMode::WriteBack { delay, .. } if delay == Duration::from_secs(5))
        );
        assert_eq!(write_mode("write-through", Duration::ZERO), WriteMode::WriteThrough);
    }
}
