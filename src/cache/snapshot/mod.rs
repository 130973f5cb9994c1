//! Warm restart: [`Cache::save_snapshot`] writes the hot set to any `Write`, and
//! [`Cache::load_snapshot`] refills a new cache from it, so that a restarted service does not start
//! cold and hammer its origin.
//!
//! What a snapshot holds, per live entry: the key and the value (through `serde`), the time to live it
//! had left, the policy's estimate of how often it was used and where it sat in the policy; and for
//! W-TinyLFU the window its miniature simulation chose, with the candidates' scores. Entries come most
//! valuable first (see [`Cache::hot_keys`] for each policy's order), so a smaller cache keeps the best
//! of a larger one.
//!
//! Loading skips entries whose time to live ran out meanwhile (the downtime is measured by the system
//! clock between save and load). Each shard holds its share of the capacity, and hashes are seeded per
//! process, so the entries spread over the new cache's shards afresh: an entry is kept only if the
//! shard it belongs to still has room for it, so a load never evicts anything (of the snapshot or of
//! what the cache held), each shard keeps the most valuable entries that belong to it, and reading stops
//! once every shard is full. The kept entries are inserted least valuable first, so that the most
//! valuable end up the most recently used, with their frequency estimates (W-TinyLFU's sketch, LFU's
//! counts) and W-TinyLFU segments, so the restarted cache admits and evicts like the old one.
//!
//! The stream is versioned, names the key and value types (`std::any::type_name`; entries of other
//! types could decode without error: a `u64` as an `i64`) and every frame carries a CRC-32 (format:
//! `frame.rs`). Loading is all or nothing: a truncated, corrupt or wrong-version stream, or one holding
//! other key or value types, gives a [`SnapshotError`] and inserts nothing. Entries past the point where
//! every shard is full are not read, so damage there goes unnoticed. A build whose compiler names the
//! types differently refuses its predecessor's snapshots ([`SnapshotError::WrongTypes`]): it starts cold
//! rather than risk misreading them.
//!
//! Saving visits one shard at a time (each shard's lock is held only while its order is read) and
//! encodes the entries in memory before writing: it needs memory for the encoded snapshot, and is
//! weakly consistent, as [`Cache::iter`] is. Loading holds the entries it keeps in memory before
//! inserting them (the shards' room is taken as it was when the load began: concurrent writers may
//! still cause evictions). Time-to-idle restarts at load, as if every restored entry had just been read.

mod error;
mod frame;

pub use error::SnapshotError;

use std::hash::{BuildHasher, Hash};
use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::batch::Stored;
use super::hot::interleave;
use super::policy::{Adaptation, MiniatureState};
use super::shard::Shard;
use super::{Cache, builder};
use crate::sync::Ordering::Relaxed;
use frame::{FRAME_TARGET, FrameReader, FrameWriter};

/// Restored entries stored per turn of a shard's lock: long enough to amortise the lock, short enough
/// that writers to that shard do not wait long.
const RESTORE_GROUP: usize = 256;

/// What [`Cache::save_snapshot`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotSaved {
    /// Entries written.
    pub entries: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// What [`Cache::load_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SnapshotLoad {
    /// Entries in the snapshot.
    pub saved: u64,
    /// Entries inserted.
    pub loaded: u64,
    /// Entries skipped because their time to live ran out before the load.
    pub expired: u64,
    /// Entries not loaded for lack of room: those whose shard was full when their turn came (the least
    /// valuable of that shard), and those not read once every shard was full.
    pub beyond_capacity: u64,
}

/// The first frame.
#[derive(Serialize, Deserialize)]
struct Header {
    /// When the snapshot was taken: nanoseconds since the Unix epoch, by the system clock.
    saved_at: u64,
    /// Entries in the records that follow.
    entries: u64,
    /// W-TinyLFU's window, as a share of the capacity (the mean over shards).
    window: Option<f64>,
    /// W-TinyLFU's miniature simulation: the window it chose and its candidates' scores.
    miniature: Option<MiniatureState>,
    /// How far LFU's counts were towards their next halving (0 to 1, the mean over shards).
    ageing: Option<f64>,
    /// The key and value types' names (`std::any::type_name`): entries of other types can decode without
    /// error (a `u64` as an `i64`), so the names are checked first.
    types: (String, String),
}

/// One entry as written: key, value, nanoseconds of time to live left (none: no deadline), frequency,
/// and where it sat in the policy (`Hot::place`).
type Record<K, V> = (K, V, Option<u64>, u8, u8);

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher,
{
    /// Writes the live entries to `writer`, most valuable first, with their remaining time to live and
    /// frequency estimate (see the [module docs](crate::snapshot)). Returns what was written.
    /// `writer` need not be buffered.
    ///
    /// ```
    /// use cachefs::Cache;
    ///
    /// let old: Cache<String, Vec<u8>> = Cache::new(1_000);
    /// old.insert("a".to_string(), vec![1, 2, 3]);
    /// let mut bytes = Vec::new();
    /// old.save_snapshot(&mut bytes)?;
    ///
    /// let new: Cache<String, Vec<u8>> = Cache::new(1_000);
    /// let report = new.load_snapshot(bytes.as_slice())?;
    /// assert_eq!(report.loaded, 1);
    /// assert_eq!(new.get("a"), Some(vec![1, 2, 3]));
    /// # Ok::<(), cachefs::SnapshotError>(())
    /// ```
    ///
    /// # Errors
    /// [`SnapshotError::Io`] if the writer fails, [`SnapshotError::Encode`] if a key or value fails to
    /// serialise; what was written is then not a whole snapshot (a load reports it truncated).
    pub fn save_snapshot<W: Write>(&self, writer: W) -> Result<SnapshotSaved, SnapshotError>
    where
        K: Serialize,
        V: Serialize,
    {
        // Each shard's records, encoded one after another, and where each ends.
        let mut shards: Vec<(Vec<u8>, Vec<usize>)> = Vec::with_capacity(self.inner.shards.len());
        let mut failure = None;
        for i in 0..self.inner.shards.len() {
            let (mut bytes, mut ends) = (Vec::new(), Vec::new());
            self.visit_hot(i, usize::MAX, |key, value, hot| {
                if failure.is_some() {
                    return;
                }
                match postcard::to_io(&(key, value, hot.expires_in, hot.frequency, hot.place), &mut bytes) {
                    Ok(_) => ends.push(bytes.len()),
                    Err(e) => failure = Some(SnapshotError::Encode(e.to_string())),
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
            shards.push((bytes, ends));
        }
        let lens: Vec<usize> = shards.iter().map(|(_, ends)| ends.len()).collect();
        let order = interleave(&lens);

        let mut out = FrameWriter::new(writer)?;
        let header = Header {
            saved_at: unix_nanos(SystemTime::now()),
            entries: order.len() as u64,
            window: self.mean_over_shards(|shard| shard.window_share()),
            miniature: self.inner.adaptation.as_ref().map(Adaptation::state),
            ageing: self.mean_over_shards(|shard| shard.ageing()),
            types: (std::any::type_name::<K>().to_string(), std::any::type_name::<V>().to_string()),
        };
        postcard::to_io(&header, out.payload()).map_err(|e| SnapshotError::Encode(e.to_string()))?;
        out.cut()?;
        for &(s, p) in &order {
            let (bytes, ends) = &shards[s];
            let start = if p == 0 { 0 } else { ends[p - 1] };
            out.payload().extend_from_slice(&bytes[start..ends[p]]);
            if out.payload_len() >= FRAME_TARGET {
                out.cut()?;
            }
        }
        let (_, bytes) = out.finish()?;
        Ok(SnapshotSaved { entries: header.entries, bytes })
    }

    /// The mean over shards of what `f` reads from each (`None` if it reads nothing).
    fn mean_over_shards(&self, f: impl Fn(&Shard<K, V>) -> Option<f64>) -> Option<f64> {
        let guard = crossbeam_epoch::pin();
        let values: Vec<f64> = self.inner.shards.iter().filter_map(|locked| f(&locked.lock(&guard))).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    }

    /// Prepares every shard for its share of `entries` restored entries, before they come back: W-TinyLFU
    /// takes up the old miniature's state (its choice and scores) and starts its window there (the
    /// shards' mean `window` if the miniature's state is missing), and sizes its sketch for them.
    fn prepare_restore(&self, window: Option<f64>, miniature: Option<&MiniatureState>, entries: usize) {
        let share = match (&self.inner.adaptation, miniature) {
            (Some(adaptation), Some(state)) => Some(adaptation.restore(state)),
            _ => window,
        };
        let per_shard = entries.div_ceil(self.inner.shards.len());
        for locked in self.inner.shards.iter() {
            self.write(locked, false, |shard, _, _, _| shard.prepare_restore(share, per_shard));
        }
    }

    /// Refills the cache from a snapshot written by [`save_snapshot`](Self::save_snapshot) (see the
    /// [module docs](crate::snapshot)): skips entries whose time to live ran out since the save, keeps
    /// each entry only if its shard has room for it (a load evicts nothing) and stops reading when every
    /// shard is full, restores frequency estimates, and inserts the kept entries least valuable first. Entries keep the time to live they had left; those saved without
    /// one get the cache's time to live, if it has one. `reader` need not be buffered.
    ///
    /// # Errors
    /// Any [`SnapshotError`]; nothing is inserted then.
    pub fn load_snapshot<R: Read>(&self, reader: R) -> Result<SnapshotLoad, SnapshotError>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        let mut frames = FrameReader::open(reader)?;
        let offset = frames.offset();
        let header: Header = match frames.next()? {
            Some(payload) => postcard::from_bytes(payload)
                .map_err(|e| SnapshotError::Corrupt { offset, reason: format!("unreadable header: {e}") })?,
            None => return Err(SnapshotError::Corrupt { offset, reason: "no header".into() }),
        };
        let (key_type, value_type) = (std::any::type_name::<K>(), std::any::type_name::<V>());
        if header.types.0 != key_type || header.types.1 != value_type {
            return Err(SnapshotError::WrongTypes {
                saved: format!("{} → {}", header.types.0, header.types.1),
                expected: format!("{key_type} → {value_type}"),
            });
        }
        let downtime = Duration::from_nanos(unix_nanos(SystemTime::now()).saturating_sub(header.saved_at));
        let default_ttl = if self.inner.config.expiring() { self.inner.config.load().ttl } else { None };
        // Each shard holds its share of the capacity: an entry is kept only if its own shard has room for
        // it, so that the load evicts nothing, and reading stops once every shard is full.
        let (shards, capacity) = (self.inner.shards.len(), self.capacity());
        let mut room: Vec<u64> = (0..shards)
            .map(|i| {
                builder::shard_capacity(capacity, shards, i).saturating_sub(self.inner.shards[i].weight.load(Relaxed))
            })
            .collect();
        let mut open = room.iter().filter(|&&r| r > 0).count();
        let mut report = SnapshotLoad { saved: header.entries, ..SnapshotLoad::default() };
        let (mut kept, mut read) = (Vec::new(), 0u64);
        'frames: while open > 0 {
            let offset = frames.offset();
            let Some(mut payload) = frames.next()? else { break };
            while !payload.is_empty() {
                if read == header.entries {
                    let reason = format!("more entries than the {} the header announces", header.entries);
                    return Err(SnapshotError::Corrupt { offset, reason });
                }
                let ((key, value, expires_in, frequency, place), rest): (Record<K, V>, &[u8]) =
                    postcard::take_from_bytes(payload)
                        .map_err(|e| SnapshotError::Decode { offset, message: e.to_string() })?;
                payload = rest;
                read += 1;
                let ttl = match expires_in.map(|nanos| Duration::from_nanos(nanos).saturating_sub(downtime)) {
                    Some(left) if left.is_zero() => {
                        report.expired += 1;
                        continue;
                    }
                    other => other,
                };
                let hash = self.hash(&key);
                let (i, weight) = (self.shard_index(hash), u64::from(self.weigh(&key, &value)));
                if weight > room[i] {
                    report.beyond_capacity += 1;
                    continue;
                }
                room[i] -= weight;
                if room[i] == 0 {
                    open -= 1;
                    if open == 0 {
                        report.beyond_capacity += header.entries - read;
                    }
                }
                let ttl = ttl.or(default_ttl);
                kept.push(Stored { hash, key, value, ttl, restored: Some((frequency, place)) });
                if open == 0 {
                    break 'frames;
                }
            }
        }
        if open == 0 && read == 0 {
            report.beyond_capacity = header.entries;
        } else if open > 0 && read != header.entries {
            let reason = format!("the stream ends after {read} of the {} entries its header announces", header.entries);
            return Err(SnapshotError::Corrupt { offset: frames.offset(), reason });
        }
        report.loaded = kept.len() as u64;
        self.prepare_restore(header.window, header.miniature.as_ref(), kept.len());
        kept.reverse();
        self.store_batch(kept, RESTORE_GROUP);
        if let Some(progress) = header.ageing {
            for locked in self.inner.shards.iter() {
                self.write(locked, false, |shard, _, _, _| shard.set_ageing(progress));
            }
        }
        Ok(report)
    }
}
