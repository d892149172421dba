// Axes of every figure: linear or logarithmic scales, chosen tick positions and tick labels.
// Series are drawn in *transformed* coordinates (log10 or log2 of the value on log axes), so
// every chart has the same coordinate type and tick marks fall on round values.
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Powers of ten as ticks.
    Log10,
    /// Powers of two as ticks (token positions and lengths).
    Log2,
}

/// How tick values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickFmt {
    /// Plain numbers.
    Plain,
    /// Token counts: 512, 1K, 16K, 1M (binary multiples on log2 axes, decimal otherwise).
    Tokens,
    /// The axis holds log10 of the quantity; ticks read 1, 1e-2, 1e-4, ...
    Pow10,
}

/// One axis: its scale, transformed range, tick positions and title.
#[derive(Debug, Clone)]
pub struct Axis {
    pub scale: Scale,
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
    pub desc: String,
    pub fmt: TickFmt,
    decimals: usize,
}

/// Use a log scale when every value is positive and they span at least `ratio`.
pub fn wide(values: &[f64], ratio: f64) -> bool {
    let (lo, hi) = min_max(values.iter().copied().filter(|v| v.is_finite()));
    lo > 0.0 && hi / lo >= ratio
}

pub fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about `target` intervals over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.5 {
        1.0
    } else if f <= 3.5 {
        2.0
    } else if f <= 7.5 {
        5.0
    } else {
        10.0
    };
    m * mag
}

impl Axis {
    /// An axis covering `values` (raw, untransformed). Non-positive values are ignored on log
    /// scales. `integer_ticks` forces a step of at least 1 (used by `Pow10` axes).
    pub fn new(scale: Scale, values: &[f64], desc: &str, fmt: TickFmt) -> Axis {
        let tv: Vec<f64> = values.iter().filter_map(|v| transform(scale, *v)).collect();
        let (mut lo, mut hi) = min_max(tv.iter().copied());
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            let pad = if scale == Scale::Linear { lo.abs().max(1.0) * 0.1 } else { 0.5 };
            lo -= pad;
            hi += pad;
        }
        let pad = 0.04 * (hi - lo);
        let (lo, hi) = (lo - pad, hi + pad);
        let (ticks, decimals) = match (scale, fmt) {
            (Scale::Linear, TickFmt::Pow10) => linear_ticks(lo, hi, 1.0),
            (Scale::Linear, _) => linear_ticks(lo, hi, 0.0),
            (Scale::Log2, _) => (log_ticks(lo, hi, &[1.0]), 0),
            (Scale::Log10, _) => {
                let t = log_ticks(lo, hi, &[1.0]);
                if t.len() >= 4 {
                    (t, 0)
                } else {
                    (log_ticks(lo, hi, &[1.0, 2.0, 5.0]), 0)
                }
            }
        };
        Axis { scale, lo, hi, ticks, desc: desc.to_string(), fmt, decimals }
    }

    /// Raw value → chart coordinate; `None` for non-positive values on log scales.
    pub fn t(&self, v: f64) -> Option<f64> {
        transform(self.scale, v)
    }

    /// The coordinate spec for plotters.
    pub fn range(&self) -> Ticked {
        Ticked { lo: self.lo, hi: self.hi, ticks: self.ticks.clone() }
    }

    /// Label of a tick at chart coordinate `t`.
    pub fn label(&self, t: f64) -> String {
        match (self.scale, self.fmt) {
            (_, TickFmt::Pow10) => pow10_label(t),
            (Scale::Linear, TickFmt::Tokens) => decimal_tokens(t, self.decimals),
            (Scale::Linear, TickFmt::Plain) => fmt_fixed(t, self.decimals),
            (Scale::Log2, TickFmt::Tokens) => binary_tokens(2f64.powf(t)),
            (Scale::Log10, TickFmt::Tokens) => decimal_tokens(10f64.powf(t), 0),
            (Scale::Log2, TickFmt::Plain) => fmt_general(2f64.powf(t)),
            (Scale::Log10, TickFmt::Plain) => fmt_general(10f64.powf(t)),
        }
    }
}

/// A linear f64 coordinate whose grid lines and labels sit exactly at the given ticks.
#[derive(Debug, Clone)]
pub struct Ticked {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 || !v.is_finite() {
            return limit.0 + (limit.1 - limit.0) / 2;
        }
        let f = (v - self.lo) / span;
        limit.0 + ((limit.1 - limit.0) as f64 * f).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

fn transform(scale: Scale, v: f64) -> Option<f64> {
    if !v.is_finite() {
        return None;
    }
    match scale {
        Scale::Linear => Some(v),
        Scale::Log10 => (v > 0.0).then(|| v.log10()),
        Scale::Log2 => (v > 0.0).then(|| v.log2()),
    }
}

/// Nice ticks over [lo, hi] with a step of at least `min_step`; returns (ticks, decimals).
fn linear_ticks(lo: f64, hi: f64, min_step: f64) -> (Vec<f64>, usize) {
    let step = nice_step(hi - lo, 6.0).max(min_step);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last).map(|i| i as f64 * step).collect();
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    (ticks, decimals)
}

/// Ticks at m·base^e for the mantissas given (in transformed units), at most ~10 of them.
fn log_ticks(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let (e0, e1) = (lo.floor() as i64, hi.ceil() as i64);
    let count = (hi.floor() as i64 - lo.ceil() as i64 + 1).max(1);
    let every = if mantissas.len() == 1 { (count + 9) / 10 } else { 1 };
    let mut out = Vec::new();
    for e in e0..=e1 {
        if e.rem_euclid(every) != 0 {
            continue;
        }
        for m in mantissas {
            let t = e as f64 + m.log10();
            if t >= lo && t <= hi {
                out.push(t);
            }
        }
    }
    out
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `v` with a fixed number of decimals ("-0" printed as "0").
pub fn fmt_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        "0".to_string()
    } else {
        s
    }
}

/// Up to 3 significant digits, scientific notation outside [1e-3, 1e5).
pub fn fmt_general(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor();
        let m = trim(format!("{:.2}", v / 10f64.powf(e)));
        format!("{m}e{}", e as i64)
    } else {
        let decimals = (2.0 - a.log10().floor()).max(0.0) as usize;
        trim(format!("{v:.decimals$}"))
    }
}

fn pow10_label(t: f64) -> String {
    let e = t.round() as i64;
    if (t - e as f64).abs() > 1e-9 {
        return fmt_general(10f64.powf(t));
    }
    match e {
        0 => "1".into(),
        1 => "10".into(),
        _ => format!("1e{e}"),
    }
}

/// 512, 1K, 64K, 1M with binary multiples (for lengths that are powers of two).
pub fn binary_tokens(v: f64) -> String {
    let r = v.round();
    if r >= 1048576.0 && (r / 1048576.0).fract() == 0.0 {
        format!("{}M", r / 1048576.0)
    } else if r >= 1024.0 && (r / 1024.0).fract() == 0.0 {
        format!("{}K", r / 1024.0)
    } else {
        fmt_general(v)
    }
}

/// 500, 1.5K, 20K, 1M with decimal multiples.
fn decimal_tokens(v: f64, decimals: usize) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.3}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}K", trim(format!("{:.3}", v / 1e3)))
    } else {
        fmt_fixed(v, decimals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_axis_ticks_are_powers_of_two() {
        let a = Axis::new(Scale::Log2, &[128.0, 65536.0], "pos", TickFmt::Tokens);
        let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels.first().map(String::as_str), Some("128"));
        assert!(labels.contains(&"1K".to_string()), "{labels:?}");
        assert_eq!(labels.last().map(String::as_str), Some("64K"));
    }

    #[test]
    fn linear_ticks_are_round() {
        let a = Axis::new(Scale::Linear, &[0.0, 9.7], "y", TickFmt::Plain);
        let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels, ["0", "2", "4", "6", "8", "10"]);
    }

    #[test]
    fn general_format() {
        assert_eq!(fmt_general(0.25), "0.25");
        assert_eq!(fmt_general(123456.0), "1.23e5");
        assert_eq!(fmt_general(0.0001), "1e-4");
        assert_eq!(pow10_label(-3.0), "1e-3");
    }
}
