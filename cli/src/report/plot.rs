//! An SVG chart of a sweep: one panel per trace, hit ratio against capacity, one line per contender.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::replay::TraceResult;

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart {path}: {message}")]
pub struct PlotError {
    /// Where it was to go.
    pub path: String,
    /// What the drawing library said.
    pub message: String,
}

/// The palette of both charts: one colour per line, in order.
pub(crate) const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(0, 0, 0),
];

/// A chart with `f64` axes drawn to SVG, as both charts of the `cachefs` command use.
pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one labelled line with a dot at each point.
pub(crate) fn line(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    label: &str,
) -> Result<(), String> {
    chart
        .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
    chart.draw_series(points.into_iter().map(|p| Circle::new(p, 2, colour.filled()))).map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws the legend of the lines drawn so far.
pub(crate) fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(|e| e.to_string())
}

/// Draws `results` into an SVG file at `path`.
pub fn plot(results: &[TraceResult], path: &Path) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), message: e.to_string() };
    if results.is_empty() {
        return Err(err(&"no results to draw"));
    }
    let columns = 3usize.min(results.len());
    let rows = results.len().div_ceil(columns);
    let root = SVGBackend::new(path, (420 * columns as u32, 320 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    for (area, r) in root.split_evenly((rows, columns)).iter().zip(results) {
        let x_max = r.rows.iter().map(|row| row.percent).fold(1.0, f64::max) * 1.05;
        let y_max = (r.ceiling * 1.05).clamp(1.0, 100.0);
        let mut chart = ChartBuilder::on(area)
            .caption(&r.name, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("capacity, % of unique keys")
            .y_desc("hit ratio %")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, name) in r.contenders.iter().enumerate() {
            let points: Vec<(f64, f64)> = r.rows.iter().map(|row| (row.percent, row.hit_ratio[i])).collect();
            line(&mut chart, points, COLOURS[i % COLOURS.len()], name).map_err(|e| err(&e))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Row;

    #[test]
    fn draws_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let r = TraceResult {
            name: "t".into(),
            accesses: 100,
            unique: 10,
            ceiling: 90.0,
            contenders: vec!["lru".into(), "opt".into()],
            rows: vec![
                Row { entries: 1, percent: 10.0, hit_ratio: vec![40.0, 55.5] },
                Row { entries: 2, percent: 20.0, hit_ratio: vec![50.0, 65.5] },
            ],
        };
        plot(&[r], &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("hit ratio"), "{}", &svg[..200.min(svg.len())]);
        assert!(plot(&[], &path).is_err());
        let e = plot(&[], Path::new("/nonexistent-dir/x.svg")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x.svg"));
    }
}
