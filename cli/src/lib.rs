//! The `cachefs` command's machinery, as a library so that its tests can reach it: trace loading,
//! capacity parsing, replays of the cachefs policies, the peer caches and Belady's optimum, and the
//! reports (Markdown, JSON, SVG); `ring` inspects and benchmarks the disk ring buffer; `fetch` fills blobs
//! through the tiered blob store.

pub mod capacity;
pub mod compare;
pub mod fetch;
pub mod peers;
pub mod replay;
pub mod report;
pub mod ring;
pub mod trace;
pub mod workload;
