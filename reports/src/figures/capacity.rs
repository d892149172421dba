// The headline figures (paper Fig. 11/12 v4): T_forget vs state size with the linear law and
// T_recall vs state size with the exponential law (plus, for T_recall, one point series per
// training length); the fitted equation and R² in the legend, optional log y. The legend lists
// only what is drawn (the paper's laws are in the report's text and fit table). Units as in the
// paper: S in millions of state parameters, T in K tokens.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{Axis, Scale, TickFmt};
use super::{colour, draw_curve, frame, legend, render, split, Figure, Sample, POINT_RADIUS};
use crate::derive::{s_millions, t_kilo, ForgetRow, JobRecall, StateRecall};
use crate::fit::Fit;
use crate::Error;

/// Radius of "not reached" (lower-bound) markers; distinct from data markers so they are not
/// counted as data points.
const BOUND_RADIUS: u32 = 6;
/// Samples along a fitted curve.
const CURVE_SAMPLES: usize = 200;
/// Half side of the hollow squares of extra point series.
const SERIES_HALF: i32 = 8;
/// Palette colours of extra point series (0 is the measured points, 1 the fit).
const SERIES_COLOURS: [usize; 5] = [2, 3, 4, 5, 6];

/// An extra labelled point series on a capacity figure (e.g. T_recall of the models trained at
/// one length), drawn as hollow squares, consecutive points joined by thin lines; not fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSeries {
    pub label: String,
    /// (S in millions, T in K tokens), ascending by S; a NaN T marks a state size without a
    /// value (nothing drawn there, and the line breaks)
    pub points: Vec<(f64, f64)>,
}

/// A capacity-law figure: measured points, lower bounds and an optional fitted law.
#[derive(Debug, Clone)]
pub struct CapacityPlot<'a> {
    pub title: &'a str,
    /// y axis title, e.g. "T_forget (K tokens)"
    pub y_desc: &'a str,
    /// legend label of the measured points
    pub point_label: &'a str,
    /// (S in millions, T in K tokens)
    pub points: Vec<(f64, f64)>,
    /// (S in millions, the longest length tried in K tokens) where the threshold was not reached
    pub lower_bounds: Vec<(f64, f64)>,
    /// (S in millions, the shortest length tried in K tokens) where it was reached at once: the
    /// threshold is at or below that length
    pub upper_bounds: Vec<(f64, f64)>,
    /// (S in millions, lo, hi in K tokens): the threshold lies in (lo, hi], drawn as a bar
    pub intervals: Vec<(f64, f64, f64)>,
    pub fit: Option<&'a Fit>,
    pub log_y: bool,
    /// extra point series, drawn under the measured points (at most 5 get distinct colours)
    pub series: Vec<PointSeries>,
}

struct CapacityFigure<'a> {
    plot: &'a CapacityPlot<'a>,
    x: Axis,
    y: Axis,
    curve: Vec<(f64, f64)>,
}

impl Figure for CapacityFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let p = self.plot;
        let (area, panel) = split(root);
        let mut chart = frame(&area, p.title, &self.x, &self.y)?;
        let tf = |(x, y): &(f64, f64)| Some((self.x.t(*x)?, self.y.t(*y)?));
        let mut entries = Vec::new();
        for (i, series) in p.series.iter().enumerate() {
            let c = colour(SERIES_COLOURS[i % SERIES_COLOURS.len()]);
            // thin lines join runs of consecutive points; a gap (NaN) breaks the line
            for run in series.points.split(|p| !p.1.is_finite()) {
                let line: Vec<(f64, f64)> = run.iter().filter_map(tf).collect();
                if line.len() >= 2 {
                    chart.draw_series(std::iter::once(PathElement::new(line, c.stroke_width(1))))?;
                }
            }
            let pts: Vec<(f64, f64)> = series.points.iter().filter_map(tf).collect();
            for pt in &pts {
                let (px, py) = chart.backend_coord(pt);
                let (h, w) = (SERIES_HALF, 2);
                root.draw(&Rectangle::new([(px - h, py - h), (px + h, py + h)], c.stroke_width(w)))?;
            }
            entries.push((series.label.clone(), Sample::Frame(c)));
        }
        if let Some(fit) = p.fit {
            draw_curve(&mut chart, self.curve.iter().filter_map(tf).collect(), colour(1))?;
            entries.push((format!("fit: {}", fit.equation()), Sample::Line(colour(1))));
        }
        for &(x, lo, hi) in &p.intervals {
            if let (Some(a), Some(b)) = (tf(&(x, lo)), tf(&(x, hi))) {
                // width 3: an error bar, not a series (SERIES_WIDTH)
                chart.draw_series(std::iter::once(PathElement::new(vec![a, b], colour(0).stroke_width(3))))?;
                for end in [a, b] {
                    let (px, py) = chart.backend_coord(&end);
                    root.draw(&PathElement::new(vec![(px - 5, py), (px + 5, py)], colour(0).stroke_width(3)))?;
                }
            }
        }
        if !p.intervals.is_empty() {
            entries.push(("interval between grid lengths".into(), Sample::Line(colour(0))));
        }
        let pts: Vec<(f64, f64)> = p.points.iter().filter_map(tf).collect();
        chart.draw_series(pts.iter().map(|c| Circle::new(*c, POINT_RADIUS, colour(0).filled())))?;
        // The legend lists only what is drawn (issue 24 item 3: "measured" with no point drawn).
        if !pts.is_empty() {
            entries.insert(0, (p.point_label.to_string(), Sample::Point(colour(0))));
        }
        if !p.lower_bounds.is_empty() {
            let style = colour(0).stroke_width(2);
            let b: Vec<(f64, f64)> = p.lower_bounds.iter().filter_map(tf).collect();
            chart.draw_series(b.iter().map(|c| Circle::new(*c, BOUND_RADIUS, style)))?;
            entries.push(("not reached (> longest length tried)".into(), Sample::Hollow(colour(0))));
        }
        if !p.upper_bounds.is_empty() {
            let style = colour(2).stroke_width(2);
            let b: Vec<(f64, f64)> = p.upper_bounds.iter().filter_map(tf).collect();
            chart.draw_series(b.iter().map(|c| Circle::new(*c, BOUND_RADIUS, style)))?;
            entries.push(("at or below the shortest length tried".into(), Sample::Hollow(colour(2))));
        }
        legend(&panel, &entries)
    }
}

/// Draw a capacity-law figure; writes `<stem>.svg` and `<stem>.png`.
pub fn capacity_plot(plot: &CapacityPlot<'_>, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    if plot.points.is_empty()
        && plot.lower_bounds.is_empty()
        && plot.upper_bounds.is_empty()
        && plot.series.iter().all(|s| s.points.iter().all(|p| !p.1.is_finite()))
    {
        return Err(Error::Plot(format!("{}: no points", plot.title)));
    }
    let extra: Vec<(f64, f64)> = plot.series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.1.is_finite()).collect();
    let mut xs: Vec<f64> = plot.points.iter().chain(&plot.lower_bounds).chain(&plot.upper_bounds).chain(&extra).map(|p| p.0).collect();
    xs.push(0.0);
    let x = Axis::new(Scale::Linear, &xs, "state size S (millions of state parameters)", TickFmt::Plain);
    let curve: Vec<(f64, f64)> = match plot.fit {
        Some(f) => {
            let (lo, hi) = (x.lo.max(0.0), x.hi);
            (0..=CURVE_SAMPLES)
                .map(|i| lo + (hi - lo) * i as f64 / CURVE_SAMPLES as f64)
                .map(|s| (s, f.predict(s)))
                .filter(|(_, t)| t.is_finite() && (!plot.log_y || *t > 0.0))
                .collect()
        }
        None => Vec::new(),
    };
    let mut ys: Vec<f64> = plot
        .points
        .iter()
        .chain(&plot.lower_bounds)
        .chain(&plot.upper_bounds)
        .chain(&extra)
        .map(|p| p.1)
        .chain(plot.intervals.iter().flat_map(|i| [i.1, i.2]))
        .collect();
    ys.extend(curve.iter().map(|p| p.1));
    if !plot.log_y {
        ys.push(0.0); // lengths start at zero on a linear axis
    }
    let y_scale = if plot.log_y { Scale::Log10 } else { Scale::Linear };
    let y = Axis::new(y_scale, &ys, plot.y_desc, TickFmt::Plain);
    render(&CapacityFigure { plot, x, y, curve }, stem)
}

/// T_forget vs state size with its linear law (paper Fig. 11 v4 / Fig. 12 v1).
pub fn forget_law(rows: &[ForgetRow], fit: Option<&Fit>, log_y: bool, title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let points =
        rows.iter().filter(|r| !r.is_upper_bound()).filter_map(|r| Some((s_millions(r.state_size), t_kilo(r.t_forget?)))).collect();
    let upper_bounds =
        rows.iter().filter(|r| r.is_upper_bound()).filter_map(|r| Some((s_millions(r.state_size), t_kilo(r.t_forget?)))).collect();
    let lower_bounds =
        rows.iter().filter(|r| r.t_forget.is_none()).filter_map(|r| Some((s_millions(r.state_size), t_kilo(r.largest_tried()?)))).collect();
    let intervals = rows
        .iter()
        .filter_map(|r| {
            let c = r.censored()?;
            Some((c.x, c.lo?, c.hi?))
        })
        .collect();
    let plot = CapacityPlot {
        title,
        y_desc: "T_forget (K tokens)",
        point_label: "T_forget (smallest length without collapse)",
        points,
        lower_bounds,
        upper_bounds,
        intervals,
        fit,
        log_y,
        series: Vec::new(),
    };
    capacity_plot(&plot, stem)
}

/// T_recall vs state size with its exponential law (paper Fig. 12 v4).
pub fn recall_law(rows: &[StateRecall], fit: Option<&Fit>, log_y: bool, title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    recall_law_by_length(rows, &[], fit, log_y, title, stem)
}

/// Per training length, T_recall vs state size of the models trained at that length (the
/// maximum over such jobs per state size), as labelled series "trained at T=256". Only lengths
/// with a T_recall at two or more state sizes make a series, and only when there are at least
/// two such lengths (one series would repeat the measured points); at most five series, the
/// shortest lengths first.
pub fn recall_series_by_length(jobs: &[JobRecall]) -> Vec<PointSeries> {
    // train length -> state size -> best T_recall (None: no length recalled)
    let mut by_len: BTreeMap<i64, BTreeMap<i64, Option<i64>>> = BTreeMap::new();
    for j in jobs {
        if let Some(len) = j.train_len {
            let best = by_len.entry(len).or_default().entry(j.state_size).or_insert(None);
            *best = (*best).max(j.t_recall);
        }
    }
    let series: Vec<PointSeries> = by_len
        .into_iter()
        .filter(|(_, per_size)| per_size.values().filter(|t| t.is_some()).count() >= 2)
        .map(|(len, per_size)| PointSeries {
            label: format!("trained at T={len}"),
            points: per_size.into_iter().map(|(s, t)| (s_millions(s), t.map_or(f64::NAN, t_kilo))).collect(),
        })
        .take(SERIES_COLOURS.len())
        .collect();
    if series.len() >= 2 {
        series
    } else {
        Vec::new()
    }
}

/// T_recall vs state size with its exponential law (paper Fig. 12 v4), plus, when the jobs were
/// trained at several lengths, one point series per training length
/// ([`recall_series_by_length`]); the law is fitted to the maximum over all jobs.
pub fn recall_law_by_length(
    rows: &[StateRecall],
    jobs: &[JobRecall],
    fit: Option<&Fit>,
    log_y: bool,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let points = rows.iter().filter_map(|r| Some((s_millions(r.state_size), t_kilo(r.t_recall?)))).collect();
    let series = recall_series_by_length(jobs);
    let point_label = match (series.is_empty(), fit.is_some()) {
        (true, _) => "measured T_recall",
        (false, true) => "T_recall: best job per state size (fitted)",
        (false, false) => "T_recall: best job per state size",
    };
    let censored: Vec<_> = rows.iter().filter_map(|r| r.censored()).collect();
    let plot = CapacityPlot {
        title,
        y_desc: "T_recall (K tokens)",
        point_label,
        points,
        lower_bounds: censored.iter().filter(|c| c.hi.is_none()).filter_map(|c| Some((c.x, c.lo?))).collect(),
        upper_bounds: censored.iter().filter(|c| c.lo.is_none()).filter_map(|c| Some((c.x, c.hi?))).collect(),
        intervals: censored.iter().filter_map(|c| Some((c.x, c.lo?, c.hi?))).collect(),
        fit,
        log_y,
        series,
    };
    capacity_plot(&plot, stem)
}
