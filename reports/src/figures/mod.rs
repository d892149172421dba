// Figures: the shared style (font, Okabe–Ito palette, canvas, legend panel), the renderer that
// writes every figure as SVG and PNG, and the series-counting convention tests rely on.
//
// Series convention (so the number of series in an SVG is predictable):
// * every data curve is exactly one `<polyline` with `stroke-width="2"` (axes, grid and tick
//   marks are drawn 1 px wide, legend samples are filled rectangles);
// * every data point (scatter marker) is one `<circle` with `r="5"` (legend markers use r=4,
//   hollow "lower bound" markers r=6);
// * every heat-map cell is one `<polygon`;
// * reference lines (training lengths, thresholds) are rows or columns of dashes drawn as `<rect`
//   elements;
// * markers on the points of a curve (passkey accuracy, verdicts during training) are circles of radius 4 or `<rect`
//   squares; per-training-length points of the T_recall figure are hollow `<rect` squares joined
//   by 1-px lines: none of them is counted.
// [`count_series`] applies these rules.
mod axis;
mod capacity;
mod during;
mod loss;
mod passkey;
pub mod smooth;
mod states;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use axis::{binary_tokens, fmt_general, Axis, Scale, TickFmt, Ticked};
pub use capacity::{capacity_plot, forget_law, recall_law, recall_law_by_length, recall_series_by_length, CapacityPlot, PointSeries};
pub use during::{ratio_vs_tokens, RatioPoint, RatioSeries};
pub use loss::{loss_vs_position, mitigation_comparison, position_smoothing, training_curves, Curve};
pub use passkey::{passkey_accuracy, passkey_heatmap, AccuracyCurve, PasskeyGrid, RECALL_THRESHOLD};
pub use states::{retention_per_head, state_histogram, state_variance_per_head};

use crate::Error;

/// Canvas size of every figure, in pixels.
pub const SIZE: (u32, u32) = (1000, 600);
/// Width of the plot part of the canvas; the rest holds the legend or colour bar.
const PLOT_W: u32 = 720;
/// Font family name: what SVG viewers see, and the name the embedded font is registered under
/// for the bitmap backend.
pub const FONT_FAMILY: &str = "DejaVu Sans, sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// Stroke width of data curves (see the series convention above).
pub const SERIES_WIDTH: u32 = 2;
/// Radius of data markers.
pub const POINT_RADIUS: u32 = 5;

/// The Okabe–Ito colour-blind-safe palette, yellow last (it is faint on white).
pub const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];
const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
const MUTED: RGBColor = RGBColor(0x99, 0x99, 0x99);

/// The i-th series colour (the palette repeats after 8 series).
pub fn colour(i: usize) -> RGBColor {
    OKABE_ITO[i % OKABE_ITO.len()]
}

/// Counts of the elements a figure drew, by the series convention of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesCount {
    /// Data curves: `<polyline` with `stroke-width="2"`.
    pub lines: usize,
    /// Data markers: `<circle` with `r="5"`.
    pub points: usize,
    /// Heat-map cells: `<polygon`.
    pub cells: usize,
}

/// Count data series in an SVG written by this module.
pub fn count_series(svg: &str) -> SeriesCount {
    let width = format!("stroke-width=\"{SERIES_WIDTH}\"");
    let radius = format!("r=\"{POINT_RADIUS}\"");
    let mut c = SeriesCount::default();
    for el in svg.split('<').skip(1) {
        let tag_end = el.find('>').unwrap_or(el.len());
        let tag = &el[..tag_end];
        if tag.starts_with("polyline ") && tag.contains(&width) {
            c.lines += 1;
        } else if tag.starts_with("circle ") && tag.contains(&radius) {
            c.points += 1;
        } else if tag.starts_with("polygon ") {
            c.cells += 1;
        }
    }
    c
}

fn register_font() -> Result<(), Error> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::Plot("the embedded DejaVu Sans font could not be loaded".into()))
    }
}

pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

/// Something that can draw itself on any plotters backend.
pub(crate) trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), Error>;
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Draw `fig` into `<stem>.svg` and `<stem>.png`; returns both paths.
pub(crate) fn render<F: Figure>(fig: &F, stem: &Path) -> Result<Vec<PathBuf>, Error> {
    register_font()?;
    if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let svg_path = with_ext(stem, "svg");
    let png_path = with_ext(stem, "png");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        fig.draw(&root)?;
        root.present()?;
    }
    std::fs::write(&svg_path, svg).map_err(|e| Error::io(&svg_path, e))?;
    {
        let root = BitMapBackend::new(&png_path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        fig.draw(&root)?;
        root.present().map_err(|e| Error::Plot(format!("{}: {e}", png_path.display())))?;
    }
    Ok(vec![svg_path, png_path])
}

pub(crate) type Coords = Cartesian2d<Ticked, Ticked>;
pub(crate) type Chart<'a, DB> = ChartContext<'a, DB, Coords>;

/// Split the canvas into the plot part and the side panel (legend or colour bar).
pub(crate) fn split<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    root.split_horizontally(PLOT_W)
}

/// A titled chart with labelled axes and a light grid.
pub(crate) fn frame<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: &Axis,
    y: &Axis,
) -> Result<Chart<'a, DB>, Error> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(24.0))
        .margin(12)
        .x_label_area_size(58)
        .y_label_area_size(84)
        .build_cartesian_2d(x.range(), y.range())?;
    let xf = |v: &f64| x.label(*v);
    let yf = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.stroke_width(1))
        .x_desc(x.desc.as_str())
        .y_desc(y.desc.as_str())
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style(font(16.0))
        .axis_desc_style(font(18.0))
        .draw()?;
    Ok(chart)
}

/// Draw one data curve (already in chart coordinates) as a single polyline.
pub(crate) fn draw_curve<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, points: Vec<(f64, f64)>, colour: RGBColor) -> Result<(), Error> {
    if points.len() >= 2 {
        chart.draw_series(std::iter::once(PathElement::new(points, colour.stroke_width(SERIES_WIDTH))))?;
    }
    Ok(())
}

/// A dashed vertical line at chart x coordinate `xt`, as 2-px-wide dashes on `root`.
pub(crate) fn dashed_vline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'_, DB>,
    xt: f64,
    y: &Axis,
    colour: RGBColor,
) -> Result<(), Error> {
    let (px, top) = chart.backend_coord(&(xt, y.hi));
    let (_, bottom) = chart.backend_coord(&(xt, y.lo));
    let (dash, gap) = (9, 6);
    let mut y0 = top;
    while y0 < bottom {
        let y1 = (y0 + dash).min(bottom);
        root.draw(&Rectangle::new([(px - 1, y0), (px + 1, y1)], colour.filled()))?;
        y0 += dash + gap;
    }
    Ok(())
}

/// A dashed horizontal line at chart y coordinate `yt` across the plot, as 2-px-high dashes on
/// `root`.
pub(crate) fn dashed_hline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'_, DB>,
    yt: f64,
    x: &Axis,
    colour: RGBColor,
) -> Result<(), Error> {
    let (left, py) = chart.backend_coord(&(x.lo, yt));
    let (right, _) = chart.backend_coord(&(x.hi, yt));
    let (dash, gap) = (9, 6);
    let mut x0 = left;
    while x0 < right {
        let x1 = (x0 + dash).min(right);
        root.draw(&Rectangle::new([(x0, py - 1), (x1, py + 1)], colour.filled()))?;
        x0 += dash + gap;
    }
    Ok(())
}

/// Marker shapes that tell apart curves sharing a colour (none is counted as a data point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Dot,
    Square,
    Ring,
    Frame,
}

impl Marker {
    /// The i-th marker shape (repeats after 4).
    pub fn nth(i: usize) -> Marker {
        [Marker::Dot, Marker::Square, Marker::Ring, Marker::Frame][i % 4]
    }
}

/// Draw one marker centred at backend pixel `c`.
pub(crate) fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    c: (i32, i32),
    m: Marker,
    colour: RGBColor,
) -> Result<(), Error> {
    const R: i32 = 4;
    let square = [(c.0 - R, c.1 - R), (c.0 + R, c.1 + R)];
    match m {
        Marker::Dot => area.draw(&Circle::new(c, R, colour.filled()))?,
        Marker::Square => area.draw(&Rectangle::new(square, colour.filled()))?,
        Marker::Ring => area.draw(&Circle::new(c, R, colour.stroke_width(2)))?,
        Marker::Frame => area.draw(&Rectangle::new(square, colour.stroke_width(2)))?,
    }
    Ok(())
}

/// What a legend entry's sample looks like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sample {
    Line(RGBColor),
    /// A line with a marker in its middle.
    LineMarker(RGBColor, Marker),
    Dashed(RGBColor),
    Point(RGBColor),
    Hollow(RGBColor),
    /// A hollow square.
    Frame(RGBColor),
    /// Text only.
    Blank,
}

/// Wrap a label into lines of at most `width` characters (at spaces where possible).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            lines.push(head);
        }
        if cur.is_empty() {
            cur = word;
        } else if cur.chars().count() + 1 + word.chars().count() <= width {
            cur.push(' ');
            cur.push_str(&word);
        } else {
            lines.push(std::mem::replace(&mut cur, word));
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Draw a legend in the side panel, top to bottom; entries that do not fit are summarised as
/// "+N more".
pub(crate) fn legend<DB: DrawingBackend>(panel: &DrawingArea<DB, Shift>, entries: &[(String, Sample)]) -> Result<(), Error> {
    let (_, h) = panel.dim_in_pixel();
    let (x0, line_h) = (8, 19);
    let mut y = 56;
    for (i, (label, sample)) in entries.iter().enumerate() {
        let lines = wrap(label, 27);
        let need = line_h * lines.len() as i32 + 8;
        if y + need + line_h > h as i32 - 10 && i + 1 < entries.len() {
            let more = format!("+{} more", entries.len() - i);
            panel.draw(&Text::new(more, (x0 + 34, y), font(15.0)))?;
            break;
        }
        let cy = y + line_h / 2;
        match sample {
            Sample::Line(c) => panel.draw(&Rectangle::new([(x0, cy - 2), (x0 + 26, cy + 2)], c.filled()))?,
            Sample::Dashed(c) => {
                for k in 0..3 {
                    let a = x0 + k * 10;
                    panel.draw(&Rectangle::new([(a, cy - 1), (a + 6, cy + 1)], c.filled()))?;
                }
            }
            Sample::Point(c) => panel.draw(&Circle::new((x0 + 13, cy), 4, c.filled()))?,
            Sample::LineMarker(c, m) => {
                panel.draw(&Rectangle::new([(x0, cy - 1), (x0 + 26, cy + 1)], c.filled()))?;
                draw_marker(panel, (x0 + 13, cy), *m, *c)?;
            }
            Sample::Hollow(c) => panel.draw(&Circle::new((x0 + 13, cy), 4, c.stroke_width(2)))?,
            Sample::Frame(c) => panel.draw(&Rectangle::new([(x0 + 8, cy - 5), (x0 + 18, cy + 5)], c.stroke_width(2)))?,
            Sample::Blank => {}
        }
        for (k, line) in lines.iter().enumerate() {
            let pos = (x0 + 34, y + line_h * k as i32 + 2);
            panel.draw(&Text::new(line.clone(), pos, font(15.0)))?;
        }
        y += need;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words() {
        assert_eq!(wrap("d_state=16 seq_len=256", 12), ["d_state=16", "seq_len=256"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn counts_follow_the_convention() {
        let svg = "<svg><polyline fill=\"none\" stroke-width=\"2\" points=\"\"/>\
                   <polyline fill=\"none\" stroke-width=\"1\" points=\"\"/>\
                   <circle cx=\"1\" cy=\"1\" r=\"5\"/><circle r=\"4\"/><polygon points=\"\"/></svg>";
        assert_eq!(count_series(svg), SeriesCount { lines: 1, points: 1, cells: 1 });
    }
}
