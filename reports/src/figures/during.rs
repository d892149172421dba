// Evaluations during training (`evals_at`): the collapse ratio of each job's loss evaluation
// against the training tokens of its checkpoint ("when did collapse appear"). One polyline per
// job; the 95% interval of each ratio as a 1-px vertical bar; the verdict of each point as a
// marker shape (none counted as a data point); the paper's factor 2 as a dashed line.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{Axis, Scale, TickFmt};
use super::{colour, dashed_hline, draw_curve, draw_marker, frame, legend, render, split, Figure, Marker, Sample, MUTED};
use crate::verdict::{Verdict, FACTOR};
use crate::Error;

/// One evaluation point of a job during training.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioPoint {
    pub tokens: f64,
    pub ratio: f64,
    pub ratio_ci: Option<[f64; 2]>,
    pub verdict: Option<Verdict>,
}

/// A job's ratio series, in training order.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioSeries {
    pub label: String,
    pub points: Vec<RatioPoint>,
}

/// The marker of a verdict (no verdict: a hollow square).
fn marker(v: Option<Verdict>) -> Marker {
    match v {
        Some(Verdict::Collapsed) => Marker::Dot,
        Some(Verdict::NotCollapsed) => Marker::Ring,
        Some(Verdict::Inconclusive) => Marker::Square,
        None => Marker::Frame,
    }
}

struct RatioFigure<'a> {
    title: &'a str,
    series: &'a [RatioSeries],
    x: Axis,
    y: Axis,
}

impl Figure for RatioFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let (plot, panel) = split(root);
        let mut chart = frame(&plot, self.title, &self.x, &self.y)?;
        if let Some(yt) = self.y.t(FACTOR) {
            dashed_hline(root, &chart, yt, &self.x, MUTED)?;
        }
        let mut entries = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let at = |x: f64, y: f64| Some((self.x.t(x)?, self.y.t(y)?));
            let pts: Vec<(f64, f64)> = s.points.iter().filter_map(|p| at(p.tokens, p.ratio)).collect();
            draw_curve(&mut chart, pts, colour(i))?;
            for p in &s.points {
                if let Some((lo, hi)) = p.ratio_ci.and_then(|[lo, hi]| Some((at(p.tokens, lo)?, at(p.tokens, hi)?))) {
                    chart.draw_series(std::iter::once(PathElement::new(vec![lo, hi], colour(i).stroke_width(1))))?;
                }
                if let Some(c) = at(p.tokens, p.ratio) {
                    draw_marker(root, chart.backend_coord(&c), marker(p.verdict), colour(i))?;
                }
            }
            entries.push((s.label.clone(), Sample::Line(colour(i))));
        }
        entries.push((format!("dashed: ratio {FACTOR} (collapse factor)"), Sample::Dashed(MUTED)));
        for v in [Some(Verdict::Collapsed), Some(Verdict::NotCollapsed), Some(Verdict::Inconclusive), None] {
            let words = v.map_or("no verdict", Verdict::words);
            entries.push((words.to_string(), Sample::LineMarker(MUTED, marker(v))));
        }
        entries.push(("bars: 95% interval of the ratio".into(), Sample::Blank));
        legend(&panel, &entries)
    }
}

/// The worst loss ratio past T_train over the in-T maximum against training tokens, one curve
/// per job (series with fewer than two points are still drawn as markers). Writes
/// `<stem>.svg` and `<stem>.png`.
pub fn ratio_vs_tokens(series: &[RatioSeries], title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(Error::Plot(format!("{title}: no points to draw")));
    }
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.tokens)).chain([0.0]).collect();
    let mut ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [Some(p.ratio), p.ratio_ci.map(|c| c[0]), p.ratio_ci.map(|c| c[1])]))
        .flatten()
        .collect();
    ys.retain(|y| y.is_finite());
    ys.extend([FACTOR, 1.0]);
    let fig = RatioFigure {
        title,
        series,
        x: Axis::new(Scale::Linear, &xs, "training tokens", TickFmt::Tokens),
        y: Axis::new(Scale::Linear, &ys, "worst loss ratio past T_train", TickFmt::Plain),
    };
    render(&fig, stem)
}
