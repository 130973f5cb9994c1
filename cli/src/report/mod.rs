//! Reports of a sweep: Markdown tables, JSON and an SVG chart.

pub(crate) mod plot;
mod table;

pub use plot::{PlotError, plot};
pub use table::{markdown, mean_hit_ratio, means};

use crate::replay::TraceResult;

/// The sweep as pretty-printed JSON.
pub fn json(results: &[TraceResult]) -> String {
    serde_json::to_string_pretty(results).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
