//! Operations over many paths at once.

use std::path::Path;

use super::path::checked;
use super::{CacheFs, Error, FlushFailure, Metadata, WarmOptions, WarmReport};

impl CacheFs {
    /// Drops the cached copies of the given files; returns how many had something cached. Invalid paths
    /// cached nothing and are skipped.
    pub fn batch_invalidate<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>) -> usize {
        paths.into_iter().filter(|p| self.invalidate(p).unwrap_or(false)).count()
    }

    /// Metadata of each file, in order; each entry is its own result.
    pub fn batch_stats<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>) -> Vec<Result<Metadata, Error>> {
        paths.into_iter().map(|p| self.stat(p)).collect()
    }

    /// Flushes the given files if they are dirty, attempting every one even after failures. Returns how
    /// many were written; the error lists every failure (including invalid paths).
    pub fn batch_flush<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>) -> Result<u64, Error> {
        let inner = &self.inner;
        let mut failures = Vec::new();
        let mut written = 0;
        inner.with_env(|env| {
            for p in paths {
                let p = p.as_ref();
                match checked(p).and_then(|key| inner.write_back.flush_path(env, &key)) {
                    Ok(flushed) => written += u64::from(flushed),
                    Err(e) => {
                        failures.push(FlushFailure { path: p.to_string_lossy().into_owned(), error: Box::new(e) })
                    }
                }
            }
        });
        if failures.is_empty() { Ok(written) } else { Err(Error::Flush { failures }) }
    }

    /// Loads the given files into the cache with `workers` threads, skipping (and reporting) failures.
    /// The same as [`warm`](Self::warm) at normal priority with `skip_errors`.
    pub fn prefetch<P: AsRef<Path>>(&self, paths: impl IntoIterator<Item = P>, workers: usize) -> WarmReport {
        let options = WarmOptions { workers, skip_errors: true, ..WarmOptions::default() };
        let paths: Vec<String> = paths.into_iter().map(|p| p.as_ref().to_string_lossy().into_owned()).collect();
        // With skip_errors a warm cannot stop early, so this is always `Ok`.
        self.inner.warm(paths, &options, &Default::default()).unwrap_or_else(|_| WarmReport::default())
    }
}
