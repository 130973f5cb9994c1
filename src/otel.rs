//! OpenTelemetry export (cargo feature `otel`): a cache's metrics as observable instruments on the
//! caller's [`Meter`], named in the semantic-convention style (`cachefs.cache.hits`, units in UCUM).
//!
//! ```
//! use cachefs::Cache;
//! use opentelemetry::global;
//!
//! let cache: Cache<u32, u32> = Cache::builder().name("sessions").build();
//! let meter = global::meter("my-service");
//! let _registration = cachefs::otel::register(&meter, &cache);
//! ```

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};

use crate::fs::{CacheFs, FsStats};
use crate::latency::LatencySummary;
use crate::{Cache, CacheStats, RemovalCause};

/// The instruments registered for one cache. Keep it as long as the cache should be reported.
#[must_use = "the instruments report only while the registration is kept"]
#[derive(Debug)]
pub struct Registration {
    _counters: Vec<ObservableCounter<u64>>,
    _gauges: Vec<ObservableGauge<u64>>,
    _latency: Option<ObservableGauge<f64>>,
}

type Pick = fn(&CacheStats) -> u64;

/// Registers observable counters, gauges and the latency distribution of `cache` on `meter`.
///
/// Every instrument carries the attribute `cache` (the cache's name). Counters: `cachefs.cache.hits`,
/// `.misses`, `.inserts`, `.updates`, `.rejections`, `.loads` (attribute `result`: `ok` or `failed`),
/// `.removals` (attribute `cause`). Gauges: `cachefs.cache.entries`, `.weighted_size`, `.capacity`.
/// Latency: `cachefs.cache.operation.duration` (seconds), a gauge per `op` and `quantile`
/// (0.5, 0.95, 0.99, 0.999, 1 for the maximum), present when latency recording is on.
pub fn register<K, V, S>(meter: &Meter, cache: &Cache<K, V, S>) -> Registration
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: Send + Sync + 'static,
{
    let name = KeyValue::new("cache", cache.name().to_string());
    let counter = |metric: &'static str, unit: &'static str, help: &'static str, pick: Pick| {
        let (c, attr) = (cache.clone(), name.clone());
        meter
            .u64_observable_counter(metric)
            .with_unit(unit)
            .with_description(help)
            .with_callback(move |o| o.observe(pick(&c.stats()), std::slice::from_ref(&attr)))
            .build()
    };
    let mut counters = vec![
        counter("cachefs.cache.hits", "{hit}", "Lookups that found a live entry", |s| s.hits),
        counter("cachefs.cache.misses", "{miss}", "Lookups that found no live entry", |s| s.misses),
        counter("cachefs.cache.inserts", "{entry}", "Entries stored under an absent key", |s| s.inserts),
        counter("cachefs.cache.updates", "{entry}", "Entries stored over a present key", |s| s.updates),
        counter("cachefs.cache.rejections", "{entry}", "Inserts refused as heavier than a shard", |s| s.rejections),
    ];
    let (c, attr) = (cache.clone(), name.clone());
    counters.push(
        meter
            .u64_observable_counter("cachefs.cache.loads")
            .with_unit("{load}")
            .with_description("Loader calls, by result")
            .with_callback(move |o| {
                let s = c.stats();
                o.observe(s.loads_ok, &[attr.clone(), KeyValue::new("result", "ok")]);
                o.observe(s.loads_failed, &[attr.clone(), KeyValue::new("result", "failed")]);
            })
            .build(),
    );
    let (c, attr) = (cache.clone(), name.clone());
    counters.push(
        meter
            .u64_observable_counter("cachefs.cache.removals")
            .with_unit("{entry}")
            .with_description("Entries that left the cache, by cause")
            .with_callback(move |o| {
                let s = c.stats();
                for cause in RemovalCause::ALL {
                    o.observe(s.removed(cause), &[attr.clone(), KeyValue::new("cause", cause.name())]);
                }
            })
            .build(),
    );
    let gauge = |metric: &'static str, unit: &'static str, help: &'static str, pick: Pick| {
        let (c, attr) = (cache.clone(), name.clone());
        meter
            .u64_observable_gauge(metric)
            .with_unit(unit)
            .with_description(help)
            .with_callback(move |o| o.observe(pick(&c.stats()), std::slice::from_ref(&attr)))
            .build()
    };
    let gauges = vec![
        gauge("cachefs.cache.entries", "{entry}", "Entries held now", |s| s.entries),
        gauge("cachefs.cache.weighted_size", "1", "Sum of the weights of the entries held now", |s| s.weighted_size),
        gauge("cachefs.cache.capacity", "1", "Maximum weighted size", |s| s.capacity),
    ];
    let c = cache.clone();
    let latency = latency_gauge(meter, "cachefs.cache.operation.duration", name, move || c.metrics().latency);
    Registration { _counters: counters, _gauges: gauges, _latency: Some(latency) }
}

/// A gauge of latency quantiles (0.5, 0.95, 0.99, 0.999, and 1 for the maximum) per `op`, in seconds.
fn latency_gauge(
    meter: &Meter,
    metric: &'static str,
    attr: KeyValue,
    read: impl Fn() -> Vec<LatencySummary> + Send + Sync + 'static,
) -> ObservableGauge<f64> {
    meter
        .f64_observable_gauge(metric)
        .with_unit("s")
        .with_description("Latency of sampled operations, by operation and quantile")
        .with_callback(move |o| {
            for l in read() {
                let op = KeyValue::new("op", l.op.clone());
                for (q, ns) in
                    [(0.5, l.p50_ns), (0.95, l.p95_ns), (0.99, l.p99_ns), (0.999, l.p999_ns), (1.0, l.max_ns)]
                {
                    o.observe(ns as f64 / 1e9, &[attr.clone(), op.clone(), KeyValue::new("quantile", q)]);
                }
            }
        })
        .build()
}

type PickFs = fn(&FsStats) -> u64;

/// Registers a [`CacheFs`]'s counters, gauges and latency on `meter`, attribute `cache` (its name).
/// Counters `cachefs.fs.*`: `read_hits`, `read_misses`, `bytes_from_cache`, `bytes_from_backend`,
/// `metadata_hits`, `metadata_misses`, `writes`, `bytes_written`, `flushes`, `flushed_bytes`,
/// `flush_errors`, `backpressure_waits`, `invalidated`, `removed`, `warmed`, `warm_skipped`,
/// `abandoned_writers`. Gauges:
/// `cachefs.fs.dirty_entries`, `.dirty_bytes`, `.cached_bytes`, `.capacity_bytes`, `.cached_entries`,
/// `.metadata_entries`. Latency: `cachefs.fs.operation.duration` (read, write, flush) when recorded.
///
/// ```
/// use cachefs::fs::{CacheFs, MemBackend};
/// use opentelemetry::global;
///
/// let fs = CacheFs::builder(MemBackend::new()).name("models").build();
/// let _registration = cachefs::otel::register_fs(&global::meter("my-service"), &fs);
/// ```
pub fn register_fs(meter: &Meter, fs: &CacheFs) -> Registration {
    let source = fs.stats_source();
    let name = KeyValue::new("cache", fs.stats().name);
    let observer = |pick: PickFs| {
        let (s, attr) = (source.clone(), name.clone());
        move |o: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
            o.observe(pick(&s.stats()), std::slice::from_ref(&attr))
        }
    };
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    let specs: [(bool, &'static str, &'static str, PickFs); 23] = [
        (true, "cachefs.fs.read_hits", "{read}", |s| s.read_hits),
        (true, "cachefs.fs.read_misses", "{read}", |s| s.read_misses),
        (true, "cachefs.fs.bytes_from_cache", "By", |s| s.bytes_from_cache),
        (true, "cachefs.fs.bytes_from_backend", "By", |s| s.bytes_from_backend),
        (true, "cachefs.fs.metadata_hits", "{lookup}", |s| s.metadata_hits),
        (true, "cachefs.fs.metadata_misses", "{lookup}", |s| s.metadata_misses),
        (true, "cachefs.fs.writes", "{file}", |s| s.writes),
        (true, "cachefs.fs.bytes_written", "By", |s| s.bytes_written),
        (true, "cachefs.fs.flushes", "{file}", |s| s.flushes),
        (true, "cachefs.fs.flushed_bytes", "By", |s| s.flushed_bytes),
        (true, "cachefs.fs.flush_errors", "{error}", |s| s.flush_errors),
        (true, "cachefs.fs.backpressure_waits", "{wait}", |s| s.backpressure_waits),
        (true, "cachefs.fs.invalidated", "{entry}", |s| s.invalidated),
        (true, "cachefs.fs.removed", "{file}", |s| s.removed),
        (true, "cachefs.fs.warmed", "{file}", |s| s.warmed),
        (true, "cachefs.fs.warm_skipped", "{file}", |s| s.warm_skipped),
        (true, "cachefs.fs.abandoned_writers", "{writer}", |s| s.abandoned_writers),
        (false, "cachefs.fs.dirty_entries", "{file}", |s| s.dirty_entries),
        (false, "cachefs.fs.dirty_bytes", "By", |s| s.dirty_bytes),
        (false, "cachefs.fs.cached_bytes", "By", |s| s.data.weighted_size),
        (false, "cachefs.fs.capacity_bytes", "By", |s| s.data.capacity),
        (false, "cachefs.fs.cached_entries", "{entry}", |s| s.data.entries),
        (false, "cachefs.fs.metadata_entries", "{file}", |s| s.metadata_entries),
    ];
    for (is_counter, metric, unit, pick) in specs {
        let observe = observer(pick);
        if is_counter {
            counters
                .push(meter.u64_observable_counter(metric).with_unit(unit).with_callback(move |o| observe(o)).build());
        } else {
            gauges.push(meter.u64_observable_gauge(metric).with_unit(unit).with_callback(move |o| observe(o)).build());
        }
    }
    let latency = latency_gauge(meter, "cachefs.fs.operation.duration", name, move || source.stats().latency);
    Registration { _counters: counters, _gauges: gauges, _latency: Some(latency) }
}

#[cfg(feature = "ring")]
type PickRing = fn(&crate::ring::RingStats) -> u64;

/// Registers a [`RingBuffer`](crate::ring::RingBuffer) handle's counters and gauges on `meter`, attribute
/// `cache` (the ring's name). Counters `cachefs.ring.*`: `reads`, `hits`, `misses`, `crc_failures`,
/// `read_bytes`, `writes`, `written_bytes`, `stored_bytes`, `flushes`, `flush_errors`, `pin_waits`,
/// `retries`. Gauges: `cachefs.ring.records`, `.record_size`, and `.latest_id` and
/// `.flushed_id` once there are such ids. The registration keeps reporting the handle's last values after
/// it is closed; it holds no file and no lock.
///
/// ```
/// use cachefs::ring::{RingBuffer, RingOptions};
/// use opentelemetry::global;
///
/// let dir = tempfile::tempdir()?;
/// let ring = RingBuffer::open(dir.path().join("ticks.ring"), RingOptions::new(1024, 128))?;
/// let _registration = cachefs::otel::register_ring(&global::meter("my-service"), &ring);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "ring")]
pub fn register_ring(meter: &Meter, ring: &crate::ring::RingBuffer) -> Registration {
    let telemetry = ring.telemetry();
    let name = KeyValue::new("cache", ring.stats().name);
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    let specs: [(&'static str, &'static str, PickRing); 12] = [
        ("cachefs.ring.reads", "{record}", |s| s.reads),
        ("cachefs.ring.hits", "{record}", |s| s.hits),
        ("cachefs.ring.misses", "{record}", |s| s.misses),
        ("cachefs.ring.crc_failures", "{record}", |s| s.crc_failures),
        ("cachefs.ring.read_bytes", "By", |s| s.bytes_read),
        ("cachefs.ring.writes", "{record}", |s| s.writes),
        ("cachefs.ring.written_bytes", "By", |s| s.bytes_written),
        ("cachefs.ring.stored_bytes", "By", |s| s.bytes_stored),
        ("cachefs.ring.flushes", "{flush}", |s| s.flushes),
        ("cachefs.ring.flush_errors", "{error}", |s| s.flush_errors),
        ("cachefs.ring.pin_waits", "{wait}", |s| s.pin_waits),
        ("cachefs.ring.retries", "{copy}", |s| s.retries),
    ];
    for (metric, unit, pick) in specs {
        let (t, attr) = (telemetry.clone(), name.clone());
        counters.push(
            meter
                .u64_observable_counter(metric)
                .with_unit(unit)
                .with_callback(move |o| o.observe(pick(&t.report()), std::slice::from_ref(&attr)))
                .build(),
        );
    }
    type PickGauge = fn(&crate::ring::RingStats) -> Option<u64>;
    let gauge_specs: [(&'static str, &'static str, PickGauge); 4] = [
        ("cachefs.ring.records", "{record}", |s| Some(s.geometry.records)),
        ("cachefs.ring.record_size", "By", |s| Some(u64::from(s.geometry.record_size))),
        ("cachefs.ring.latest_id", "1", |s| s.latest_id),
        ("cachefs.ring.flushed_id", "1", |s| s.flushed_id),
    ];
    for (metric, unit, pick) in gauge_specs {
        let (t, attr) = (telemetry.clone(), name.clone());
        gauges.push(
            meter
                .u64_observable_gauge(metric)
                .with_unit(unit)
                .with_callback(move |o| {
                    if let Some(v) = pick(&t.report()) {
                        o.observe(v, std::slice::from_ref(&attr));
                    }
                })
                .build(),
        );
    }
    Registration { _counters: counters, _gauges: gauges, _latency: None }
}

#[cfg(feature = "tier")]
type PickTier = fn(&crate::tier::TierStats) -> u64;

/// Registers a [`TieredStore`](crate::tier::TieredStore)'s counters, gauges and fill latency on `meter`,
/// attribute `cache` (its name); with features `otel` and `tier`. The registration does not keep the
/// store alive: once it is dropped, nothing more is reported.
///
/// Counters `cachefs.tier.*`: `disk_hits`, `bytes_read`, `remote_hits`, `remote_bytes`,
/// `remote_misses`, `remote_errors`, `remote_invalid`, `remote_skipped`, `origin_fetches`,
/// `origin_bytes`, `origin_errors`, `fills`, `fill_errors`, `verified`, `corrupt`, `evictions`,
/// `evicted_bytes`, `uploads`, `upload_bytes`, `upload_errors`, `uploads_dropped`, `breaker_opened`.
/// Gauges: `cachefs.tier.upload_queue`, `.breaker_state` (0 closed, 1 open, 2 half-open),
/// `.disk_blobs`, `.disk_bytes`, `.disk_max_bytes`, `.open_blobs`. Latency:
/// `cachefs.tier.operation.duration` (`fill_remote`, `fill_origin`).
///
/// ```
/// use cachefs::tier::TieredStore;
/// use opentelemetry::global;
///
/// let dir = tempfile::tempdir()?;
/// let store = TieredStore::builder().name("layers").disk_dir(dir.path()).build()?;
/// let _registration = cachefs::otel::register_tier(&global::meter("my-service"), &store);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "tier")]
pub fn register_tier(meter: &Meter, store: &crate::tier::TieredStore) -> Registration {
    let source = store.stats_source();
    let name = KeyValue::new("cache", store.stats().name);
    let observer = |pick: PickTier| {
        let (s, attr) = (source.clone(), name.clone());
        move |o: &dyn opentelemetry::metrics::AsyncInstrument<u64>| {
            if let Some(stats) = s.stats() {
                o.observe(pick(&stats), std::slice::from_ref(&attr))
            }
        }
    };
    let specs: [(bool, &'static str, &'static str, PickTier); 28] = [
        (true, "cachefs.tier.disk_hits", "{read}", |s| s.disk_hits),
        (true, "cachefs.tier.bytes_read", "By", |s| s.bytes_read),
        (true, "cachefs.tier.remote_hits", "{blob}", |s| s.remote_hits),
        (true, "cachefs.tier.remote_bytes", "By", |s| s.remote_bytes),
        (true, "cachefs.tier.remote_misses", "{blob}", |s| s.remote_misses),
        (true, "cachefs.tier.remote_errors", "{error}", |s| s.remote_errors),
        (true, "cachefs.tier.remote_invalid", "{blob}", |s| s.remote_invalid),
        (true, "cachefs.tier.remote_skipped", "{call}", |s| s.remote_skipped),
        (true, "cachefs.tier.origin_fetches", "{blob}", |s| s.origin_fetches),
        (true, "cachefs.tier.origin_bytes", "By", |s| s.origin_bytes),
        (true, "cachefs.tier.origin_errors", "{error}", |s| s.origin_errors),
        (true, "cachefs.tier.fills", "{blob}", |s| s.fills),
        (true, "cachefs.tier.fill_errors", "{error}", |s| s.fill_errors),
        (true, "cachefs.tier.verified", "{blob}", |s| s.verified),
        (true, "cachefs.tier.corrupt", "{blob}", |s| s.corrupt),
        (true, "cachefs.tier.evictions", "{blob}", |s| s.evictions),
        (true, "cachefs.tier.evicted_bytes", "By", |s| s.evicted_bytes),
        (true, "cachefs.tier.uploads", "{blob}", |s| s.uploads),
        (true, "cachefs.tier.upload_bytes", "By", |s| s.upload_bytes),
        (true, "cachefs.tier.upload_errors", "{error}", |s| s.upload_errors),
        (true, "cachefs.tier.uploads_dropped", "{blob}", |s| s.uploads_dropped),
        (true, "cachefs.tier.breaker_opened", "{event}", |s| s.breaker_opened),
        (false, "cachefs.tier.upload_queue", "{blob}", |s| s.upload_queue),
        (false, "cachefs.tier.breaker_state", "1", |s| s.breaker.code()),
        (false, "cachefs.tier.disk_blobs", "{blob}", |s| s.disk_blobs),
        (false, "cachefs.tier.disk_bytes", "By", |s| s.disk_bytes),
        (false, "cachefs.tier.disk_max_bytes", "By", |s| s.disk_max_bytes),
        (false, "cachefs.tier.open_blobs", "{blob}", |s| s.open_blobs),
    ];
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    for (is_counter, metric, unit, pick) in specs {
        let observe = observer(pick);
        if is_counter {
            counters
                .push(meter.u64_observable_counter(metric).with_unit(unit).with_callback(move |o| observe(o)).build());
        } else {
            gauges.push(meter.u64_observable_gauge(metric).with_unit(unit).with_callback(move |o| observe(o)).build());
        }
    }
    let latency = latency_gauge(meter, "cachefs.tier.operation.duration", name, move || {
        source.stats().map(|s| s.latency).unwrap_or_default()
    });
    Registration { _counters: counters, _gauges: gauges, _latency: Some(latency) }
}
