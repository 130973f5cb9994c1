//! The throughput chart: Mops/s per workload, one line per cache, one panel per thread count.

use std::path::Path;

use plotters::prelude::*;

use super::Row;
use crate::peers::Peer;
use crate::report::PlotError;
use crate::report::plot::{COLOURS, legend, line};

/// Draws `rows` into an SVG at `path`.
pub fn plot_throughput(rows: &[Row], path: &Path) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), message: e.to_string() };
    let mut threads: Vec<usize> = rows.iter().map(|r| r.threads).collect();
    threads.sort_unstable();
    threads.dedup();
    if threads.is_empty() {
        return Err(err(&"no results to draw"));
    }
    let root = SVGBackend::new(path, (560 * threads.len() as u32, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, &t) in root.split_evenly((1, threads.len())).iter().zip(&threads) {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.threads == t).collect();
        let y_max = mine.iter().flat_map(|r| r.mops.iter().flatten()).fold(1.0f64, |a, &b| a.max(b)) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{t} thread(s): Mops/s by workload"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0f64..(mine.len() as f64 - 0.5).max(0.5), 0f64..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(mine.len())
            .x_label_formatter(&|x| format!("W{}", x.round() as usize + 1))
            .y_desc("Mops/s")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, peer) in Peer::ALL.iter().enumerate() {
            let points: Vec<(f64, f64)> =
                mine.iter().enumerate().filter_map(|(x, r)| r.mops[i].map(|m| (x as f64, m))).collect();
            line(&mut chart, points, COLOURS[i % COLOURS.len()], peer.name()).map_err(|e| err(&e))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
