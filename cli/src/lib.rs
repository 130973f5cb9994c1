//! The `cachefs` command's machinery, as a library so that its tests can reach it: trace loading,
//! capacity parsing, replays of the cachefs policies, the peer caches and Belady's optimum, and the
//! reports (Markdown, JSON, SVG); `ring` inspects and benchmarks the disk ring buffer; `fetch` fills blobs
//! through the tiered blob store; `mount`, `warm` and `status` serve, warm and watch a CacheFs mounted with
//! FUSE (`http` is their metrics endpoint and client).

pub mod capacity;
pub mod compare;
pub mod fetch;
pub mod http;
pub mod mount;
pub mod peers;
pub mod replay;
pub mod report;
pub mod ring;
pub mod status;
pub mod trace;
pub mod warm;
pub mod workload;
