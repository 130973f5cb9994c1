//! Datasets: named groups of files stored under `{root}/{dataset}/{path}`, as a model or data
//! distribution system keeps them.

use std::path::Path;

use bytes::Bytes;

use super::path::{self, checked};
use super::{CacheFs, Error, FileReader, FileWriter};

/// `dataset/path`, both checked.
fn join(dataset: &str, file: &Path) -> Result<String, Error> {
    let dataset = path::dataset(dataset)?;
    let file = checked(file)?;
    Ok(format!("{dataset}/{file}"))
}

impl CacheFs {
    /// Stores a file of a dataset (as [`write`](Self::write), in the configured write mode).
    ///
    /// ```
    /// use cachefs::fs::{CacheFs, MemBackend};
    ///
    /// let fs = CacheFs::builder(MemBackend::new()).build();
    /// fs.store_file("imagenet", "train/0001.jpg", vec![1, 2, 3])?;
    /// assert!(fs.has_file("imagenet", "train/0001.jpg")?);
    /// assert_eq!(&fs.get_file("imagenet", "train/0001.jpg")?[..], &[1, 2, 3]);
    /// assert!(fs.backend().stat("imagenet/train/0001.jpg").is_ok()); // the on-backend layout
    /// assert!(fs.get_file("../etc", "passwd").is_err());             // one plain component
    /// # Ok::<(), cachefs::fs::Error>(())
    /// ```
    pub fn store_file(&self, dataset: &str, path: impl AsRef<Path>, data: impl Into<Bytes>) -> Result<(), Error> {
        self.inner.write(&join(dataset, path.as_ref())?, data.into())
    }

    /// A dataset file's whole content (as [`read`](Self::read)).
    pub fn get_file(&self, dataset: &str, path: impl AsRef<Path>) -> Result<Bytes, Error> {
        self.read(join(dataset, path.as_ref())?)
    }

    /// True if the dataset has this file.
    pub fn has_file(&self, dataset: &str, path: impl AsRef<Path>) -> Result<bool, Error> {
        self.exists(join(dataset, path.as_ref())?)
    }

    /// Opens a dataset file for streaming reads (as [`open`](Self::open)).
    pub fn open_reader(&self, dataset: &str, path: impl AsRef<Path>) -> Result<FileReader, Error> {
        self.open(join(dataset, path.as_ref())?)
    }

    /// Creates a dataset file (as [`create`](Self::create)).
    pub fn open_writer(&self, dataset: &str, path: impl AsRef<Path>) -> Result<FileWriter<'_>, Error> {
        self.create(join(dataset, path.as_ref())?)
    }

    /// The files of a dataset on the backend, relative to the dataset (dirty files not yet flushed are
    /// not listed).
    pub fn dataset_files(&self, dataset: &str) -> Result<Vec<String>, Error> {
        let dataset = path::dataset(dataset)?;
        let prefix = format!("{dataset}/");
        Ok(self
            .inner
            .backend
            .list(dataset)?
            .into_iter()
            .filter_map(|p| p.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }
}
