#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod cache;
mod clock;
mod fnv;
pub mod fs;
mod latency;
mod metrics;
#[cfg(feature = "mount")]
pub mod mount;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "ring")]
pub mod ring;
mod stripe;
mod sync;
#[cfg(feature = "tier")]
pub mod tier;

#[cfg(feature = "snapshot")]
pub use cache::snapshot::{self, SnapshotError, SnapshotLoad, SnapshotSaved};
pub use cache::{Cache, CacheBuilder, CacheStats, DEFAULT_MAX_CAPACITY, Iter, Policy, RemovalCause};
pub use clock::ManualClock;
pub use fnv::{FnvBuildHasher, FnvHasher};
pub use latency::{LatencyConfig, LatencySummary};
pub use metrics::MetricsSnapshot;
