// Line figures: loss vs token position (paper Fig. 1/10), the mitigation comparison (Fig. 4)
// and training-loss curves. One polyline per curve; training lengths as dashed vertical lines.
// Loss curves on a log2 position axis are smoothed for display into log-spaced bins (see
// `smooth.rs`); the curves passed in keep their raw buckets.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{min_max, wide, Axis, Scale, TickFmt};
use super::smooth::{bins_per_doubling, log_binned};
use super::{colour, dashed_vline, draw_curve, frame, legend, render, split, Figure, Sample, MUTED};
use crate::Error;

/// Positions spanning this ratio or more are drawn on a log2 axis (and loss curves smoothed).
const LOG_POSITIONS: f64 = 16.0;

/// One labelled curve in raw units, with an optional reference x (a training length) drawn as
/// a dashed vertical line in the curve's colour.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub mark_x: Option<f64>,
    /// Weight of each point when the curve is smoothed for display (the bucket width of a loss
    /// curve); empty: equal weights.
    pub weights: Vec<f64>,
}

impl Curve {
    /// A curve without reference line or weights.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Curve {
        Curve { label: label.into(), points, ..Curve::default() }
    }
}

/// The bins per doubling that loss-vs-position figures (and the mitigation comparison) of these
/// curves are smoothed with, or `None` when they are drawn raw: the positions span less than 16x
/// (linear axis), or no bin would hold more than one point.
pub fn position_smoothing(curves: &[Curve]) -> Option<u32> {
    let xs: Vec<f64> = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).collect();
    if !wide(&xs, LOG_POSITIONS) {
        return None;
    }
    let (lo, hi) = min_max(xs.iter().copied().filter(|x| x.is_finite() && *x > 0.0));
    let n = bins_per_doubling(lo, hi);
    curves.iter().any(|c| log_binned(&c.points, &c.weights, n).len() < c.points.len()).then_some(n)
}

/// The curves as drawn: smoothed into `n` log-spaced bins per doubling, or as given.
fn displayed(curves: &[Curve], smoothing: Option<u32>) -> Vec<Curve> {
    curves
        .iter()
        .map(|c| match smoothing {
            Some(n) => Curve { points: log_binned(&c.points, &c.weights, n), weights: Vec::new(), ..c.clone() },
            None => c.clone(),
        })
        .collect()
}

struct LineFigure<'a> {
    title: &'a str,
    curves: Vec<Curve>,
    x: Axis,
    y: Axis,
    /// One shared reference line (black) with its legend label.
    shared_mark: Option<(f64, &'a str)>,
    /// Legend label explaining the per-curve dashed lines.
    mark_note: Option<&'a str>,
    /// Legend note on display smoothing.
    smooth_note: Option<String>,
}

impl<'a> LineFigure<'a> {
    fn new(
        title: &'a str,
        curves: &'a [Curve],
        positions: bool,
        x_desc: &str,
        y_desc: &str,
        shared_mark: Option<(f64, &'a str)>,
    ) -> Result<Self, Error> {
        if curves.iter().all(|c| c.points.is_empty()) {
            return Err(Error::Plot(format!("{title}: no points to draw")));
        }
        let xs_of = |curves: &[Curve]| -> Vec<f64> {
            let mut xs: Vec<f64> = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).collect();
            xs.extend(curves.iter().filter_map(|c| c.mark_x));
            xs.extend(shared_mark.map(|m| m.0));
            xs
        };
        // the scale follows the raw positions; smoothing only happens on a log axis
        let log_x = positions && wide(&xs_of(curves), LOG_POSITIONS);
        let smoothing = if log_x { position_smoothing(curves) } else { None };
        let curves = displayed(curves, smoothing);
        let xs = xs_of(&curves);
        let ys: Vec<f64> = curves.iter().flat_map(|c| c.points.iter().map(|p| p.1)).collect();
        let x = if log_x {
            Axis::new(Scale::Log2, &xs, x_desc, TickFmt::Tokens)
        } else if positions {
            Axis::new(Scale::Linear, &xs, x_desc, TickFmt::Tokens)
        } else {
            Axis::new(Scale::Linear, &xs, x_desc, TickFmt::Plain)
        };
        let y = Axis::new(Scale::Linear, &ys, y_desc, TickFmt::Plain);
        let mark_note = curves.iter().any(|c| c.mark_x.is_some()).then_some("dashed: training length");
        Ok(LineFigure {
            title,
            curves,
            x,
            y,
            shared_mark,
            mark_note,
            smooth_note: smoothing.map(|n| format!("curves: mean loss in log-spaced bins ({n} per doubling)")),
        })
    }
}

impl Figure for LineFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let (plot, panel) = split(root);
        let mut chart = frame(&plot, self.title, &self.x, &self.y)?;
        let mut entries = Vec::new();
        for (i, c) in self.curves.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c.points.iter().filter_map(|(x, y)| Some((self.x.t(*x)?, self.y.t(*y)?))).collect();
            draw_curve(&mut chart, pts, colour(i))?;
            if let Some(xt) = c.mark_x.and_then(|m| self.x.t(m)) {
                dashed_vline(root, &chart, xt, &self.y, colour(i))?;
            }
            entries.push((c.label.clone(), Sample::Line(colour(i))));
        }
        if let Some((m, label)) = self.shared_mark {
            if let Some(xt) = self.x.t(m) {
                dashed_vline(root, &chart, xt, &self.y, BLACK)?;
                entries.push((label.to_string(), Sample::Dashed(BLACK)));
            }
        }
        if let Some(note) = self.mark_note {
            entries.push((note.to_string(), Sample::Dashed(MUTED)));
        }
        if let Some(note) = &self.smooth_note {
            entries.push((note.clone(), Sample::Blank));
        }
        legend(&panel, &entries)
    }
}

/// Loss (nats) vs token position, one curve per model, each model's training length as a
/// dashed line in its colour (paper Fig. 1/10). x is log2-scaled when the positions span 16x
/// or more, and the curves are then smoothed for display into log-spaced bins (width-weighted
/// means by [`Curve::weights`], [`position_smoothing`] bins per doubling). Writes `<stem>.svg`
/// and `<stem>.png`.
pub fn loss_vs_position(curves: &[Curve], title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let fig = LineFigure::new(title, curves, true, "token position", "loss (nats)", None)?;
    render(&fig, stem)
}

/// Loss vs position of one model under several inference-time mitigations, one curve per
/// mitigation, the training length as one black dashed line (paper Fig. 4); smoothed like
/// [`loss_vs_position`].
pub fn mitigation_comparison(curves: &[Curve], train_len: Option<f64>, title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let mark = train_len.map(|t| (t, "training length"));
    let fig = LineFigure::new(title, curves, true, "token position", "loss (nats)", mark)?;
    render(&fig, stem)
}

/// Training loss vs optimizer step, one curve per job.
pub fn training_curves(curves: &[Curve], title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let fig = LineFigure::new(title, curves, false, "optimizer step", "training loss (nats)", None)?;
    render(&fig, stem)
}
