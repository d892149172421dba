// State diagnostics from a `states` eval: cumulative retention of the first token per head
// (paper Fig. 3), state variance per head (Fig. 5), and a histogram of one head's state
// channels at chosen positions (Fig. 6). One polyline per head / per position.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{binary_tokens, wide, Axis, Scale, TickFmt};
use super::{colour, dashed_vline, draw_curve, frame, legend, render, split, Figure, Sample, MUTED};
use crate::results::{HeadStates, StateHistogram, StatesResult};
use crate::Error;

/// Heads drawn in colour when a layer has more heads than the palette; the rest are grey.
const HIGHLIGHTED: usize = 7;

struct HeadsFigure<'a> {
    title: &'a str,
    x: Axis,
    y: Axis,
    /// (head index, points in raw x / chart y)
    series: Vec<(i64, Vec<(f64, f64)>)>,
    /// heads drawn in colour, in legend order
    highlighted: Vec<i64>,
    train_len: Option<f64>,
}

impl Figure for HeadsFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let (plot, panel) = split(root);
        let mut chart = frame(&plot, self.title, &self.x, &self.y)?;
        let pts = |s: &Vec<(f64, f64)>| -> Vec<(f64, f64)> { s.iter().filter_map(|(x, y)| Some((self.x.t(*x)?, self.y.t(*y)?))).collect() };
        let muted: Vec<&(i64, Vec<(f64, f64)>)> = self.series.iter().filter(|(h, _)| !self.highlighted.contains(h)).collect();
        for (_, s) in &muted {
            draw_curve(&mut chart, pts(s), MUTED)?;
        }
        let mut entries = Vec::new();
        for (i, h) in self.highlighted.iter().enumerate() {
            if let Some((_, s)) = self.series.iter().find(|(hh, _)| hh == h) {
                draw_curve(&mut chart, pts(s), colour(i))?;
                entries.push((format!("head {h}"), Sample::Line(colour(i))));
            }
        }
        if !muted.is_empty() {
            entries.push((format!("other heads ({})", muted.len()), Sample::Line(MUTED)));
        }
        if let Some(xt) = self.train_len.and_then(|t| self.x.t(t)) {
            dashed_vline(root, &chart, xt, &self.y, BLACK)?;
            entries.push(("training length".into(), Sample::Dashed(BLACK)));
        }
        legend(&panel, &entries)
    }
}

/// Which per-head series a figure shows and how its y axis looks.
#[derive(Clone, Copy)]
struct HeadSpec {
    /// The head's series.
    pick: fn(&HeadStates) -> &Vec<f64>,
    /// Raw series value -> value on the y axis (before the axis scale).
    value: fn(f64) -> f64,
    /// `None`: log10 when the values span 100x, else linear.
    y_scale: Option<Scale>,
    y_desc: &'static str,
    y_fmt: TickFmt,
}

/// Build a per-head figure of one layer; when there are more heads than colours, the heads
/// ending highest are highlighted.
fn heads_figure<'a>(
    states: &StatesResult,
    layer: i64,
    title: &'a str,
    spec: &HeadSpec,
    train_len: Option<f64>,
) -> Result<HeadsFigure<'a>, Error> {
    let HeadSpec { pick, value, y_scale, y_desc, y_fmt } = *spec;
    let l = states.layer(layer).ok_or_else(|| Error::Plot(format!("{title}: no layer {layer} in the states result")))?;
    let mut series: Vec<(i64, Vec<(f64, f64)>)> = l
        .heads
        .iter()
        .filter(|h| pick(h).len() == states.positions.len() && !pick(h).is_empty())
        .map(|h| {
            let pts = states.positions.iter().zip(pick(h)).map(|(p, v)| (*p as f64, value(*v)));
            (h.head, pts.filter(|(_, v)| v.is_finite()).collect())
        })
        .collect();
    series.sort_by_key(|(h, _)| *h);
    if series.is_empty() {
        return Err(Error::Plot(format!("{title}: layer {layer} has no per-head series")));
    }
    let mut xs: Vec<f64> = states.positions.iter().map(|&p| p as f64).collect();
    xs.extend(train_len);
    let ys: Vec<f64> = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).collect();
    let x = if wide(&xs, 16.0) {
        Axis::new(Scale::Log2, &xs, "token position", TickFmt::Tokens)
    } else {
        Axis::new(Scale::Linear, &xs, "token position", TickFmt::Tokens)
    };
    let ys_scale = y_scale.unwrap_or(if wide(&ys, 100.0) { Scale::Log10 } else { Scale::Linear });
    let y = Axis::new(ys_scale, &ys, y_desc, y_fmt);
    let highlighted = if series.len() <= HIGHLIGHTED + 1 {
        series.iter().map(|(h, _)| *h).collect()
    } else {
        // the heads ending highest, ties to the lower head index
        let last = |s: &Vec<(f64, f64)>| s.last().map(|p| p.1).unwrap_or(f64::NEG_INFINITY);
        let mut ranked: Vec<(f64, i64)> = series.iter().map(|(h, s)| (last(s), *h)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut top: Vec<i64> = ranked.iter().take(HIGHLIGHTED).map(|r| r.1).collect();
        top.sort_unstable();
        top
    };
    Ok(HeadsFigure { title, x, y, series, highlighted, train_len })
}

/// Cumulative retention of the first token, prod exp(dt·A), per head of `layer` over position,
/// on a log scale (paper Fig. 3). Heads that retain the most are highlighted when there are
/// more than 8.
pub fn retention_per_head(
    states: &StatesResult,
    layer: i64,
    train_len: Option<f64>,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let spec = HeadSpec {
        pick: |h| &h.log_retention,
        value: |v| v / std::f64::consts::LN_10,
        y_scale: Some(Scale::Linear),
        y_desc: "retention of token 1 (log scale)",
        y_fmt: TickFmt::Pow10,
    };
    let fig = heads_figure(states, layer, title, &spec, train_len)?;
    render(&fig, stem)
}

/// Variance of each head's SSM state over position (paper Fig. 5); log y when it spans 100x.
/// The heads with the largest final variance are highlighted when there are more than 8.
pub fn state_variance_per_head(
    states: &StatesResult,
    layer: i64,
    train_len: Option<f64>,
    title: &str,
    stem: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let spec = HeadSpec { pick: |h| &h.state_var, value: |v| v, y_scale: None, y_desc: "state variance", y_fmt: TickFmt::Plain };
    let fig = heads_figure(states, layer, title, &spec, train_len)?;
    render(&fig, stem)
}

struct HistFigure<'a> {
    title: &'a str,
    x: Axis,
    y: Axis,
    /// (label, step outline in raw units)
    series: Vec<(String, Vec<(f64, f64)>)>,
}

impl Figure for HistFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error> {
        let (plot, panel) = split(root);
        let mut chart = frame(&plot, self.title, &self.x, &self.y)?;
        let mut entries = Vec::new();
        for (i, (label, s)) in self.series.iter().enumerate() {
            let pts = s.iter().filter_map(|(x, y)| Some((self.x.t(*x)?, self.y.t(*y)?))).collect();
            draw_curve(&mut chart, pts, colour(i))?;
            entries.push((label.clone(), Sample::Line(colour(i))));
        }
        legend(&panel, &entries)
    }
}

/// Bin edges of a histogram: `bins` are edges (one more than counts) or left edges.
fn edges(bins: &[f64], n: usize) -> Result<Vec<f64>, Error> {
    if bins.len() == n + 1 {
        Ok(bins.to_vec())
    } else if bins.len() == n && n >= 1 {
        let w = if n >= 2 { bins[n - 1] - bins[n - 2] } else { 1.0 };
        let mut e = bins.to_vec();
        e.push(bins[n - 1] + w);
        Ok(e)
    } else {
        Err(Error::Plot(format!("histogram has {} bins for {n} counts", bins.len())))
    }
}

/// Histogram of one head's state channel values at the chosen positions, one step outline per
/// position (paper Fig. 6); log y when the counts span 1000x.
pub fn state_histogram(hist: &StateHistogram, title: &str, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    let n = hist.counts.first().map(Vec::len).unwrap_or(0);
    if n == 0 || hist.counts.iter().any(|c| c.len() != n) {
        return Err(Error::Plot(format!("{title}: histogram has no or ragged counts")));
    }
    let e = edges(&hist.bins, n)?;
    let positive: Vec<f64> = hist.counts.iter().flatten().map(|&c| c as f64).filter(|c| *c > 0.0).collect();
    let log_y = wide(&positive, 1000.0);
    let floor = if log_y { positive.iter().copied().fold(f64::INFINITY, f64::min) / 2.0 } else { 0.0 };
    let mut series = Vec::new();
    for (k, counts) in hist.counts.iter().enumerate() {
        let label = match hist.positions.get(k) {
            Some(p) => format!("position {}", binary_tokens(*p as f64)),
            None => format!("position #{k}"),
        };
        let mut pts = vec![(e[0], floor)];
        for (i, c) in counts.iter().enumerate() {
            let c = (*c as f64).max(floor);
            pts.push((e[i], c));
            pts.push((e[i + 1], c));
        }
        pts.push((e[n], floor));
        series.push((label, pts));
    }
    let xs: Vec<f64> = e.clone();
    let mut ys: Vec<f64> = series.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).collect();
    ys.push(floor.max(if log_y { f64::MIN_POSITIVE } else { 0.0 }));
    let x = Axis::new(Scale::Linear, &xs, "state channel value", TickFmt::Plain);
    let y_scale = if log_y { Scale::Log10 } else { Scale::Linear };
    let y = Axis::new(y_scale, &ys, "count", TickFmt::Plain);
    render(&HistFigure { title, x, y, series }, stem)
}
