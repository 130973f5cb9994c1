//! `cachefs fetch`: fill blobs through the tiers of a [`TieredStore`] (disk, then Redis, then the
//! origin), with a progress bar per blob.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use cachefs::tier::{Digest, Error as TierError};
use cachefs::tier::{DirOrigin, OciOrigin, RedisTier, Source, TieredStore};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Where `fetch` looks, from the command line.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The disk tier.
    pub disk_dir: PathBuf,
    /// Its bound in bytes.
    pub disk_max_bytes: u64,
    /// A single Redis server URL.
    pub redis: Option<String>,
    /// Redis Cluster node URLs.
    pub redis_cluster: Vec<String>,
    /// The per-request Redis time budget.
    pub redis_timeout: Duration,
    /// A directory origin.
    pub origin_dir: Option<PathBuf>,
    /// An OCI registry origin and its repository.
    pub registry: Option<(String, String)>,
    /// The origin serves gzip; digests name the decompressed content.
    pub gzip: bool,
    /// Blobs filled at once.
    pub parallel: usize,
}

/// What `fetch` could not do.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A digest on the command line is malformed.
    #[error(transparent)]
    Digest(TierError),
    /// The store could not be built (bad URL, locked directory, ...).
    #[error("cannot open the store: {0}")]
    Store(TierError),
    /// The origin directory given does not exist (or is not a directory).
    #[error("--origin-dir {}: not a directory", path.display())]
    OriginDir {
        /// The path given.
        path: PathBuf,
    },
    /// Some blobs failed; each with its error. (The others were filled: see `Report::done`.)
    #[error("{} of {total} blob(s) failed:\n{}", failures.len(), list(failures))]
    Failed {
        /// Blobs asked for.
        total: usize,
        /// Each failure.
        failures: Vec<(Digest, TierError)>,
    },
}

/// One line per failure, naming the digest once (the store's errors name it already).
fn list(failures: &[(Digest, TierError)]) -> String {
    let line = |(d, e): &(Digest, TierError)| {
        let message = e.to_string();
        if message.contains(&d.to_string()) { format!("  {message}") } else { format!("  {d}: {message}") }
    };
    failures.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// What a fetch did: the blobs filled, and the error if some failed.
#[derive(Debug)]
pub struct Report {
    /// Each blob filled (even when others failed).
    pub done: Vec<Fetched>,
    /// `Err` if any blob failed.
    pub outcome: Result<(), FetchError>,
}

/// One blob fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Where it came from.
    pub source: Source,
}

/// Parses every digest first, so a typo fails before anything is fetched.
pub fn parse_digests(args: &[String]) -> Result<Vec<Digest>, FetchError> {
    args.iter().map(|a| a.parse::<Digest>().map_err(FetchError::Digest)).collect()
}

fn build(o: &FetchOptions) -> Result<TieredStore, TierError> {
    let mut b = TieredStore::builder().name("fetch").disk_dir(&o.disk_dir).disk_max_bytes(o.disk_max_bytes);
    if let Some(url) = &o.redis {
        b = b.remote(RedisTier::builder(url).timeout(o.redis_timeout).build()?);
    } else if !o.redis_cluster.is_empty() {
        b = b.remote(RedisTier::cluster_builder(&o.redis_cluster).timeout(o.redis_timeout).build()?);
    }
    if let Some(dir) = &o.origin_dir {
        b = b.origin(DirOrigin::new(dir));
    } else if let Some((url, repo)) = &o.registry {
        b = b.origin(OciOrigin::builder(url, repo).build()?);
    }
    b.origin_gzip(o.gzip).build()
}

/// Fills `digests` (up to `parallel` at once), one progress bar each on stderr, then waits (at most a
/// minute) for the uploads to the remote tier so the fleet gets the blobs too.
pub fn fetch(o: &FetchOptions, digests: &[Digest]) -> Report {
    let failed = |e| Report { done: Vec::new(), outcome: Err(e) };
    if let Some(dir) = &o.origin_dir
        && !dir.is_dir()
    {
        return failed(FetchError::OriginDir { path: dir.clone() });
    }
    let store = match build(o) {
        Ok(store) => store,
        Err(e) => return failed(FetchError::Store(e)),
    };
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for group in digests.chunks(o.parallel.max(1)) {
        let results: Vec<(Digest, Result<Fetched, TierError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|d| {
                    let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
                    bar.set_prefix(format!("{}…", &d.to_string()[..19]));
                    let store = &store;
                    s.spawn(move || (*d, fetch_one(store, d, &bar)))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a fetch thread panicked")).collect()
        });
        for (d, r) in results {
            match r {
                Ok(f) => done.push(f),
                Err(e) => failures.push((d, e)),
            }
        }
    }
    store.wait_for_uploads(Duration::from_secs(60));
    let outcome = if failures.is_empty() { Ok(()) } else { Err(FetchError::Failed { total: digests.len(), failures }) };
    Report { done, outcome }
}

fn fetch_one(store: &TieredStore, d: &Digest, bar: &ProgressBar) -> Result<Fetched, TierError> {
    let started = Instant::now();
    let result = store.fill_with_progress(d, &|p| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.received);
        bar.set_message(format!("from {}", p.source.name()));
    });
    match result {
        Ok(source) => {
            let size = store.open(d).map(|b| b.len())?;
            bar.set_length(size.max(1));
            bar.set_position(size.max(1));
            bar.finish_with_message(format!(
                "{} in {:.1} s",
                match source {
                    Source::Disk => "already on disk",
                    Source::Remote => "from Redis",
                    Source::Origin => "from the origin",
                },
                started.elapsed().as_secs_f64()
            ));
            Ok(Fetched { digest: *d, size, source })
        }
        Err(e) => {
            bar.abandon_with_message(format!("failed: {e}"));
            Err(e)
        }
    }
}

/// Parses a byte count: `1024`, `512K`, `64M`, `10G`, `1T` (powers of 1024; a trailing `iB`/`B` is
/// allowed).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("{s:?} is not a byte count (e.g. 1048576, 512M, 10G)"))?;
    n.checked_mul(1 << shift).filter(|&b| b > 0).ok_or_else(|| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("10G"), Ok(10 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in ["", "G", "-1", "0", "1.5G", "99999999999T"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
