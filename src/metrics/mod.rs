//! Observability: counters, gauges and latency percentiles, exported as Prometheus text, JSON and (with
//! the `otel` feature) OpenTelemetry metrics.
//!
//! This layer only reads what it is handed: a cache's public stats and latency summaries (see
//! [`Cache::metrics`](crate::Cache::metrics)), a file layer's [`FsStats`](crate::fs::FsStats). Nothing
//! below it imports it; recording itself lives with the recorders (`crate::latency`).

pub(crate) mod prometheus;
mod snapshot;

pub use snapshot::MetricsSnapshot;
