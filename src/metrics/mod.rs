//! Observability: latency percentiles, counters and gauges, exported as Prometheus text, JSON and (with
//! the `otel` feature) OpenTelemetry metrics.
//!
//! Exporters read a [`MetricsSnapshot`]; they never reach into the cache. Latency recording is opt-in
//! ([`CacheBuilder::latency`](crate::CacheBuilder::latency)) and costs one branch per operation when off.
//! When on, one operation in `sample_every` per thread is timed (two clock reads) and recorded into a
//! striped HDR histogram (a lock per stripe, threads spread over the stripes), so recording never makes
//! all threads queue on one lock. Histograms keep two significant digits (1% precision) from 1 ns to 60 s.

mod latency;
pub(crate) mod prometheus;
mod snapshot;

pub use latency::LatencyConfig;
pub(crate) use latency::LatencyRecorder;
pub use snapshot::{LatencySummary, MetricsSnapshot};
