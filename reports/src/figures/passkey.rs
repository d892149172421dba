// Passkey figures. The heat map (paper Fig. 2): depth (y, shallow at the top) x context length
// (x, one category per length, log2-spaced in practice), colour = accuracy on a viridis-like
// scale, with a colour bar in the side panel; one `<polygon` per cell. Accuracy vs length: the
// mean accuracy over depths per prompt length, one polyline (with markers) per job, and the
// T_recall threshold as a dashed horizontal line.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::{binary_tokens, wide, Axis, Scale, TickFmt, Ticked};
use super::{colour, dashed_hline, draw_curve, draw_marker, font, frame, legend, render, split, Figure, Marker, Sample, GRID};
use crate::results::PasskeyResult;
use crate::Error;

/// The accuracy a length needs to count towards T_recall (strictly above; the protocol's).
pub use stuffed_protocol::eval::RECALL_THRESHOLD;

/// Accuracy per (depth, length); `accuracy[d][l]` is `None` where no cell was evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct PasskeyGrid {
    pub lengths: Vec<i64>,
    pub depths: Vec<f64>,
    pub accuracy: Vec<Vec<Option<f64>>>,
}

impl PasskeyGrid {
    /// Arrange the cells of a passkey result on a grid (lengths and depths ascending; when a
    /// cell appears twice the later one wins).
    pub fn from_result(r: &PasskeyResult) -> PasskeyGrid {
        let mut lengths: Vec<i64> = r.cells.iter().map(|c| c.len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut depths: Vec<f64> = r.cells.iter().map(|c| c.depth).filter(|d| d.is_finite()).collect();
        depths.sort_by(f64::total_cmp);
        depths.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let mut accuracy = vec![vec![None; lengths.len()]; depths.len()];
        for c in &r.cells {
            let l = lengths.iter().position(|x| *x == c.len);
            let d = depths.iter().position(|x| (x - c.depth).abs() < 1e-9);
            if let (Some(l), Some(d)) = (l, d) {
                accuracy[d][l] = c.accuracy.is_finite().then_some(c.accuracy.clamp(0.0, 1.0));
            }
        }
        PasskeyGrid { lengths, depths, accuracy }
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty() || self.depths.is_empty()
    }

    /// (length, mean accuracy over the depths evaluated at that length), ascending by length;
    /// lengths without any evaluated cell are left out.
    pub fn mean_by_length(&self) -> Vec<(i64, f64)> {
        self.lengths
            .iter()
            .enumerate()
            .filter_map(|(l, len)| {
                let accs: Vec<f64> = self.accuracy.iter().filter_map(|row| row[l]).collect();
                (!accs.is_empty()).then(|| (*len, accs.iter().sum::<f64>() / accs.len() as f64))
            })
            .collect()
    }
}

/// One job's curve on the accuracy-vs-length figure: (length, mean accuracy) points, drawn in
/// palette colour `colour` with marker `marker` on every point.
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyCurve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub colour: usize,
    pub marker: Marker,
}

struct AccuracyFigure<'a> {
    title: &'a str,
    curves: &'a [AccuracyCurve],
    x: Axis,
    y: Axis,
}

impl Figure for AccuracyFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let (plot, panel) = split(root);
        let mut chart = frame(&plot, self.title, &self.x, &self.y)?;
        if let Some(yt) = self.y.t(RECALL_THRESHOLD) {
            dashed_hline(root, &chart, yt, &self.x, BLACK)?;
        }
        let mut entries = Vec::new();
        for c in self.curves {
            let pts: Vec<(f64, f64)> = c.points.iter().filter_map(|(x, y)| Some((self.x.t(*x)?, self.y.t(*y)?))).collect();
            let rgb = colour(c.colour);
            draw_curve(&mut chart, pts.clone(), rgb)?;
            for p in &pts {
                let px = chart.backend_coord(p);
                draw_marker(root, px, c.marker, rgb)?;
            }
            entries.push((c.label.clone(), Sample::LineMarker(rgb, c.marker)));
        }
        entries.push((format!("T_recall threshold {RECALL_THRESHOLD} (on the mean over depths)"), Sample::Dashed(BLACK)));
        legend(&panel, &entries)
    }
}

/// Mean passkey accuracy over depths vs prompt length, one curve per job, with the T_recall
/// threshold ([`RECALL_THRESHOLD`]) as a dashed line. x is log2-scaled when the lengths span 4x
/// or more; y runs from 0 to 1. Writes `<stem>.svg` and `<stem>.png`.
pub fn passkey_accuracy(curves: &[AccuracyCurve], title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    if curves.iter().all(|c| c.points.is_empty()) {
        return Err(Error::Plot(format!("{title}: no passkey accuracies")));
    }
    let xs: Vec<f64> = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).collect();
    let x_desc = "prompt length (tokens)";
    let x = if wide(&xs, 4.0) {
        Axis::new(Scale::Log2, &xs, x_desc, TickFmt::Tokens)
    } else {
        Axis::new(Scale::Linear, &xs, x_desc, TickFmt::Tokens)
    };
    let y = Axis::new(Scale::Linear, &[0.0, 1.0], "passkey accuracy (mean over depths)", TickFmt::Plain);
    render(&AccuracyFigure { title, curves, x, y }, stem)
}

/// Viridis-like sequential map (perceptually ordered, colour-blind safe), v in [0, 1].
pub fn viridis(v: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.00, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.50, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.00, [253.0, 231.0, 37.0]),
    ];
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let i = STOPS.iter().rposition(|(s, _)| *s <= v).unwrap_or(0).min(STOPS.len() - 2);
    let (s0, c0) = STOPS[i];
    let (s1, c1) = STOPS[i + 1];
    let f = (v - s0) / (s1 - s0);
    let ch = |k: usize| (c0[k] + (c1[k] - c0[k]) * f).round() as u8;
    RGBColor(ch(0), ch(1), ch(2))
}

struct Heatmap<'a> {
    grid: &'a PasskeyGrid,
    title: &'a str,
}

impl Figure for Heatmap<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let g = self.grid;
        let (plot, panel) = split(root);
        let (nl, nd) = (g.lengths.len(), g.depths.len());
        let centres = |n: usize| (0..n).map(|i| i as f64 + 0.5).collect::<Vec<f64>>();
        let xr = Ticked { lo: 0.0, hi: nl as f64, ticks: centres(nl) };
        let yr = Ticked { lo: 0.0, hi: nd as f64, ticks: centres(nd) };
        let mut chart = ChartBuilder::on(&plot)
            .caption(self.title, font(24.0))
            .margin(12)
            .x_label_area_size(58)
            .y_label_area_size(84)
            .build_cartesian_2d(xr, yr)?;
        // row 0 (top) holds the shallowest depth
        let depth_of_row = |y: f64| g.depths.get(nd.saturating_sub(1 + y.floor() as usize));
        let xf = |x: &f64| g.lengths.get(x.floor() as usize).map(|l| binary_tokens(*l as f64)).unwrap_or_default();
        let yf = |y: &f64| depth_of_row(*y).map(|d| format!("{d:.2}")).unwrap_or_default();
        chart
            .configure_mesh()
            .disable_mesh()
            .axis_style(BLACK.stroke_width(1))
            .x_desc("context length (tokens)")
            .y_desc("needle depth (fraction of the context)")
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .label_style(font(16.0))
            .axis_desc_style(font(18.0))
            .draw()?;
        let show_text = nl <= 16 && nd <= 12;
        for (d, row) in g.accuracy.iter().enumerate() {
            let y0 = (nd - 1 - d) as f64;
            for (l, acc) in row.iter().enumerate() {
                let x0 = l as f64;
                let fill = acc.map(viridis).unwrap_or(GRID);
                let cell = vec![(x0, y0), (x0 + 1.0, y0), (x0 + 1.0, y0 + 1.0), (x0, y0 + 1.0)];
                chart.draw_series(std::iter::once(Polygon::new(cell, fill.filled())))?;
                if show_text {
                    let text = acc.map(|a| format!("{a:.2}")).unwrap_or_else(|| "–".into());
                    let ink = if acc.is_some_and(|a| a < 0.6) { WHITE } else { BLACK };
                    let style = font(16.0).color(&ink).pos(Pos::new(HPos::Center, VPos::Center));
                    chart.draw_series(std::iter::once(Text::new(text, (x0 + 0.5, y0 + 0.5), style)))?;
                }
            }
        }
        colour_bar(&panel)
    }
}

/// A vertical accuracy colour bar with ticks at 0, 0.25, ..., 1.
fn colour_bar<DB: DrawingBackend>(panel: &DrawingArea<DB, Shift>) -> Result<(), Error> {
    let (x0, x1, top, bottom) = (30, 58, 80, 500);
    panel.draw(&Text::new("accuracy", (x0 - 6, top - 30), font(16.0)))?;
    let steps = 60;
    let h = (bottom - top) as f64 / steps as f64;
    for i in 0..steps {
        let ya = top + (i as f64 * h).round() as i32;
        let yb = top + ((i + 1) as f64 * h).round() as i32;
        let v = 1.0 - (i as f64 + 0.5) / steps as f64;
        panel.draw(&Rectangle::new([(x0, ya), (x1, yb)], viridis(v).filled()))?;
    }
    panel.draw(&Rectangle::new([(x0, top), (x1, bottom)], BLACK.stroke_width(1)))?;
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let y = bottom - ((bottom - top) as f64 * v).round() as i32;
        panel.draw(&Rectangle::new([(x1, y), (x1 + 5, y + 1)], BLACK.filled()))?;
        let style = font(15.0).pos(Pos::new(HPos::Left, VPos::Center));
        panel.draw(&Text::new(format!("{v:.2}"), (x1 + 9, y), style))?;
    }
    Ok(())
}

/// Passkey accuracy heat map of one job (paper Fig. 2); writes `<stem>.svg` and `<stem>.png`.
pub fn passkey_heatmap(grid: &PasskeyGrid, title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    if grid.is_empty() {
        return Err(Error::Plot(format!("{title}: no passkey cells")));
    }
    render(&Heatmap { grid, title }, stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_by_length_skips_missing_cells() {
        let grid = PasskeyGrid {
            lengths: vec![256, 512, 1024],
            depths: vec![0.1, 0.9],
            accuracy: vec![vec![Some(1.0), Some(0.5), None], vec![Some(0.5), None, None]],
        };
        assert_eq!(grid.mean_by_length(), vec![(256, 0.75), (512, 0.5)]);
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(f64::NAN), RGBColor(68, 1, 84));
    }
}
