// Line figures: loss vs token position (paper Fig. 1/10), the mitigation comparison (Fig. 4)
// and training-loss curves. One polyline per curve; training lengths as dashed vertical lines.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{wide, Axis, Scale, TickFmt};
use super::{
    colour, dashed_vline, draw_curve, frame, legend, render, split, Figure, Sample, MUTED,
};
use crate::Error;

/// One labelled curve in raw units, with an optional reference x (a training length) drawn as
/// a dashed vertical line in the curve's colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub mark_x: Option<f64>,
}

struct LineFigure<'a> {
    title: &'a str,
    curves: &'a [Curve],
    x: Axis,
    y: Axis,
    /// One shared reference line (black) with its legend label.
    shared_mark: Option<(f64, &'a str)>,
    /// Legend label explaining the per-curve dashed lines.
    mark_note: Option<&'a str>,
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
        let mut xs: Vec<f64> = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .collect();
        xs.extend(curves.iter().filter_map(|c| c.mark_x));
        xs.extend(shared_mark.map(|m| m.0));
        let ys: Vec<f64> = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1))
            .collect();
        let x = if positions && wide(&xs, 16.0) {
            Axis::new(Scale::Log2, &xs, x_desc, TickFmt::Tokens)
        } else if positions {
            Axis::new(Scale::Linear, &xs, x_desc, TickFmt::Tokens)
        } else {
            Axis::new(Scale::Linear, &xs, x_desc, TickFmt::Plain)
        };
        let y = Axis::new(Scale::Linear, &ys, y_desc, TickFmt::Plain);
        let mark_note = curves
            .iter()
            .any(|c| c.mark_x.is_some())
            .then_some("dashed: training length");
        Ok(LineFigure {
            title,
            curves,
            x,
            y,
            shared_mark,
            mark_note,
        })
    }
}

impl Figure for LineFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let (plot, panel) = split(root);
        let mut chart = frame(&plot, self.title, &self.x, &self.y)?;
        let mut entries = Vec::new();
        for (i, c) in self.curves.iter().enumerate() {
            let pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .filter_map(|(x, y)| Some((self.x.t(*x)?, self.y.t(*y)?)))
                .collect();
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
        legend(&panel, &entries)
    }
}

/// Loss (nats) vs token position, one curve per model, each model's training length as a
/// dashed line in its colour (paper Fig. 1/10). x is log2-scaled when the positions span 16x
/// or more. Writes `<stem>.svg` and `<stem>.png`.
pub fn loss_vs_position(curves: &[Curve], title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let fig = LineFigure::new(title, curves, true, "token position", "loss (nats)", None)?;
    render(&fig, stem)
}

/// Loss vs position of one model under several inference-time mitigations, one curve per
/// mitigation, the training length as one black dashed line (paper Fig. 4).
pub fn mitigation_comparison(
    curves: &[Curve],
    train_len: Option<f64>,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let mark = train_len.map(|t| (t, "training length"));
    let fig = LineFigure::new(title, curves, true, "token position", "loss (nats)", mark)?;
    render(&fig, stem)
}

/// Training loss vs optimizer step, one curve per job.
pub fn training_curves(curves: &[Curve], title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let fig = LineFigure::new(
        title,
        curves,
        false,
        "optimizer step",
        "training loss (nats)",
        None,
    )?;
    render(&fig, stem)
}
