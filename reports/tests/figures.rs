// Every figure renders from the fixture as SVG + PNG with the expected number of series (see
// the series convention in src/figures/mod.rs).
mod common;

use std::path::{Path, PathBuf};

use stuffed_reports::derive::{self, ForgetRow, JobRecall, StateRecall};
use stuffed_reports::figures::{self, count_series, AccuracyCurve, Curve, Marker, PasskeyGrid, SeriesCount};
use stuffed_reports::results::{LossResult, PasskeyResult, StatesResult};
use stuffed_reports::{fit, FitModel};

fn check_written(paths: &[PathBuf], stem: &Path) -> String {
    assert_eq!(paths.len(), 2);
    assert_eq!(paths[0], stem.with_extension("svg"));
    assert_eq!(paths[1], stem.with_extension("png"));
    let png = std::fs::read(&paths[1]).expect("png written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "suspiciously small PNG ({} bytes)", png.len());
    let svg = std::fs::read_to_string(&paths[0]).expect("svg written");
    assert!(svg.contains("<svg width=\"1000\" height=\"600\""));
    assert!(svg.contains("font-family=\"DejaVu Sans, sans-serif\""));
    svg
}

fn loss_curve(d: i64, len: i64) -> Curve {
    let r = serde_json::from_value::<LossResult>(common::loss_result(len, common::collapses(d, len), "none", "corpus", 4.0))
        .expect("loss result");
    Curve { label: format!("d_state={d} seq_len={len}"), points: r.midpoints(), mark_x: Some(len as f64), weights: Vec::new() }
}

#[test]
fn loss_vs_position_has_one_curve_per_model_and_dashed_training_lengths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("loss");
    let curves: Vec<Curve> = common::LENGTHS.iter().map(|&l| loss_curve(16, l)).collect();
    let written = figures::loss_vs_position(&curves, "Loss vs position", &stem).expect("drawn");
    let svg = check_written(&written, &stem);
    assert_eq!(count_series(&svg).lines, 2);
    // dashed training-length lines in each curve's colour
    for colour in ["#0072B2", "#D55E00"] {
        let dashes = svg.matches(&format!("fill=\"{colour}\" stroke=\"none\"")).count();
        assert!(dashes >= 10, "{dashes} dashes in {colour}");
    }
    assert!(svg.contains("d_state=16 seq_len=256"));
    assert!(svg.contains("token position") && svg.contains("loss (nats)"));
}

#[test]
fn mitigation_comparison_has_one_curve_per_mitigation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("mit");
    let curves: Vec<Curve> = [("none", true, 4.0), ("rri:decay=0.9999,b=0.75", false, 0.0), ("dt-scale:c=0.5", true, 8.0)]
        .iter()
        .map(|(m, c, s)| {
            let r = serde_json::from_value::<LossResult>(common::loss_result(256, *c, m, "corpus", *s)).expect("loss");
            Curve { label: m.to_string(), points: r.midpoints(), mark_x: None, weights: Vec::new() }
        })
        .collect();
    let written = figures::mitigation_comparison(&curves, Some(256.0), "Mitigations", &stem).expect("drawn");
    let svg = check_written(&written, &stem);
    assert_eq!(count_series(&svg).lines, 3);
    assert!(svg.contains("training length"));
}

#[test]
fn passkey_heatmap_has_one_cell_per_depth_and_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("passkey");
    let r = serde_json::from_value::<PasskeyResult>(common::passkey_result(512)).expect("passkey");
    let grid = PasskeyGrid::from_result(&r);
    assert_eq!(grid.lengths, [256, 512, 1024, 2048]);
    assert_eq!(grid.depths.len(), 3);
    let written = figures::passkey_heatmap(&grid, "Passkey", &stem).expect("drawn");
    let svg = check_written(&written, &stem);
    assert_eq!(count_series(&svg), SeriesCount { lines: 0, points: 0, cells: 12 });
    assert!(svg.contains("accuracy") && svg.contains("2K"));
}

#[test]
fn state_figures_have_one_curve_per_head_and_per_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = serde_json::from_value::<StatesResult>(common::states_result()).expect("states");
    assert_eq!(s.loudest_layer(), Some(1));
    let stem = dir.path().join("retention");
    let svg = check_written(&figures::retention_per_head(&s, 0, Some(256.0), "Retention", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg).lines, 3);
    assert!(svg.contains("1e-"), "log-scale retention ticks");
    let stem = dir.path().join("var");
    let svg = check_written(&figures::state_variance_per_head(&s, 1, Some(256.0), "Variance", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg).lines, 3);
    let stem = dir.path().join("hist");
    let h = s.histogram.as_ref().expect("histogram");
    let svg = check_written(&figures::state_histogram(h, "Histogram", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg).lines, 2);
    assert!(svg.contains("position 1K") && svg.contains("position 8K"));
}

#[test]
fn capacity_figures_show_points_and_fit_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    // fixture: 1 measured T_forget, 1 reached at the shortest length tried (only an upper
    // bound), 1 not reached; too few for a fit
    let rows = derive::t_forget(&common::fixture());
    assert_eq!(rows.iter().filter(|r| r.is_upper_bound()).count(), 1);
    let stem = dir.path().join("t_forget_fixture");
    let svg = check_written(&figures::forget_law(&rows, None, false, "T_forget", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg), SeriesCount { lines: 0, points: 1, cells: 0 });
    assert!(svg.contains("not reached") && svg.contains("at or below"));

    let rows: Vec<ForgetRow> = (1..=5)
        .map(|k| ForgetRow {
            state_size: k * 1_000_000,
            t_forget: Some(((5.172 * k as f64 - 4.469) * 1000.0) as i64),
            lengths_tried: vec![],
            collapsed_lengths: vec![],
            inconclusive_lengths: vec![],
        })
        .collect();
    let (xs, ys) = derive::forget_points(&rows);
    let f = fit(FitModel::Linear, &xs, &ys, 100, 0).expect("fit");
    let stem = dir.path().join("t_forget");
    let svg = check_written(&figures::forget_law(&rows, Some(&f), false, "T_forget", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg), SeriesCount { lines: 1, points: 5, cells: 0 });
    assert!(svg.contains("R² = 1.000"), "equation in the legend");

    let rows: Vec<StateRecall> = (1..=6)
        .map(|k| StateRecall {
            state_size: k * 2_000_000,
            t_recall: Some(((4.756 * (1.365f64.powf(2.0 * k as f64) - 1.0) - 0.742) * 1000.0) as i64),
            t_recall_strict: None,
            job_id: Some(format!("j{k}")),
            jobs: 1,
            next_len: None,
            shortest_len: None,
            searched: false,
            learned: 1,
        })
        .collect();
    let (xs, ys) = derive::recall_points(&rows);
    let f = fit(FitModel::Exp, &xs, &ys, 100, 0).expect("fit");
    for log_y in [false, true] {
        let stem = dir.path().join(format!("t_recall_{log_y}"));
        let svg = check_written(&figures::recall_law(&rows, Some(&f), log_y, "T_recall", &stem).expect("drawn"), &stem);
        assert_eq!(count_series(&svg), SeriesCount { lines: 1, points: 6, cells: 0 });
    }
}

/// Issue 24 item 3: the legend lists only what is drawn: no entry for measured points when
/// there are none (only bounds), and no paper law (it is not drawn; the report's text has it).
#[test]
fn capacity_legend_lists_only_what_is_drawn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = vec![ForgetRow {
        state_size: 1_000_000,
        t_forget: None,
        lengths_tried: vec![256, 1024],
        collapsed_lengths: vec![256, 1024],
        inconclusive_lengths: vec![],
    }];
    let stem = dir.path().join("t_forget_bounds");
    let svg = check_written(&figures::forget_law(&rows, None, false, "T_forget", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg), SeriesCount { lines: 0, points: 0, cells: 0 });
    assert!(svg.contains("not reached"), "the bound is drawn and in the legend");
    assert!(!svg.contains("smallest length without collapse"), "no entry for points not drawn");
    assert!(!svg.contains("paper:"), "no entry for a law not drawn");
}

#[test]
fn training_curves_have_one_curve_per_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("training");
    let data = common::fixture();
    let curves: Vec<Curve> = data
        .jobs
        .iter()
        .map(|j| Curve {
            label: j.label.clone(),
            points: data.metrics.iter().filter(|m| m.job_id == j.id).map(|m| (m.step as f64, m.value)).collect(),
            mark_x: None,
            weights: Vec::new(),
        })
        .collect();
    let svg = check_written(&figures::training_curves(&curves, "Training", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg).lines, 6);
}

#[test]
fn empty_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("x");
    assert!(figures::loss_vs_position(&[], "t", &stem).is_err());
    let grid = PasskeyGrid { lengths: vec![], depths: vec![], accuracy: vec![] };
    assert!(figures::passkey_heatmap(&grid, "t", &stem).is_err());
    assert!(figures::forget_law(&[], None, false, "t", &stem).is_err());
}

#[test]
fn many_heads_are_all_drawn_and_the_loudest_highlighted() {
    let positions: Vec<i64> = (1..=16).map(|i| i * 256).collect();
    let heads: Vec<serde_json::Value> = (0..12)
        .map(|h| {
            let var: Vec<f64> = positions.iter().map(|p| 1.0 + (h as f64) * (*p as f64) / 100.0).collect();
            let ret: Vec<f64> = positions.iter().map(|p| -(h as f64 + 1.0) * (*p as f64) / 1000.0).collect();
            serde_json::json!({"head": h, "state_var": var, "log_retention": ret})
        })
        .collect();
    let s = serde_json::from_value::<StatesResult>(serde_json::json!({"positions": positions, "layers": [{"layer": 0, "heads": heads}]}))
        .expect("states");
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("var");
    let svg = check_written(&figures::state_variance_per_head(&s, 0, None, "Variance", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg).lines, 12);
    assert!(svg.contains("other heads (5)"));
    assert!(svg.contains("head 11\n"), "loudest head in the legend");
    assert!(!svg.contains("head 0\n"), "quiet head not in the legend");
    assert!(figures::state_variance_per_head(&s, 3, None, "Variance", &stem).is_err(), "missing layer");
}

/// The number of points of each data polyline (stroke width 2) of an SVG, in order.
fn polyline_lengths(svg: &str) -> Vec<usize> {
    svg.split("<polyline ")
        .skip(1)
        .filter(|el| el.split('>').next().unwrap_or("").contains("stroke-width=\"2\""))
        .filter_map(|el| {
            let pts = el.split("points=\"").nth(1)?.split('"').next()?;
            Some(pts.split_whitespace().count())
        })
        .collect()
}

/// A noisy loss curve in `bucket`-token buckets up to `len`, with bucket widths as weights.
fn fine_curve(label: &str, bucket: f64, len: f64, offset: f64) -> Curve {
    let n = (len / bucket) as usize;
    Curve {
        label: label.into(),
        points: (0..n)
            .map(|i| {
                let noise = if i % 2 == 0 { 0.4 } else { -0.4 };
                (bucket * (i as f64 + 0.5), 2.0 + offset + noise)
            })
            .collect(),
        mark_x: Some(4.0 * bucket),
        weights: vec![bucket; n],
    }
}

#[test]
fn fine_loss_buckets_are_smoothed_into_log_bins_for_display() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 16-token buckets to 32K (2048 points) and 512-token buckets (64 points)
    let curves = vec![fine_curve("seq_len=64", 16.0, 32768.0, 0.0), fine_curve("seq_len=2048", 512.0, 32768.0, 0.5)];
    assert_eq!(figures::position_smoothing(&curves), Some(5));
    let stem = dir.path().join("fine");
    let svg = check_written(&figures::loss_vs_position(&curves, "Loss vs position", &stem).expect("drawn"), &stem);
    let lens = polyline_lengths(&svg);
    assert_eq!(lens.len(), 2);
    assert!((40..=60).contains(&lens[0]), "{lens:?}");
    assert!(lens[1] < 64, "{lens:?}");
    assert!(svg.contains("log-spaced bins (5 per"), "smoothing noted in the legend");
    // the means wash out the ±0.4 noise: the y axis no longer reaches 2.4
    assert!(!svg.contains(">2.4<"), "y axis still spans the raw noise");
    // the mitigation comparison is smoothed the same way
    let stem = dir.path().join("fine_mit");
    let svg = check_written(&figures::mitigation_comparison(&curves, Some(64.0), "Mitigations", &stem).expect("drawn"), &stem);
    assert!((40..=60).contains(&polyline_lengths(&svg)[0]));

    // a short range on a linear axis is drawn raw
    let short = vec![fine_curve("short", 16.0, 128.0, 0.0)];
    assert_eq!(figures::position_smoothing(&short), None);
    let stem = dir.path().join("short");
    let svg = check_written(&figures::loss_vs_position(&short, "Loss vs position", &stem).expect("drawn"), &stem);
    assert_eq!(polyline_lengths(&svg), vec![8]);
    assert!(!svg.contains("log-spaced"));
}

#[test]
fn passkey_accuracy_has_one_curve_per_job_and_the_threshold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let curves: Vec<AccuracyCurve> = [(256, 0usize, 0usize), (512, 0, 1), (1024, 1, 0)]
        .iter()
        .map(|&(t, c, m)| {
            let r = serde_json::from_value::<PasskeyResult>(common::passkey_result(t)).expect("passkey");
            AccuracyCurve {
                label: format!("t_recall={t}"),
                points: PasskeyGrid::from_result(&r).mean_by_length().into_iter().map(|(l, a)| (l as f64, a)).collect(),
                colour: c,
                marker: Marker::nth(m),
            }
        })
        .collect();
    assert_eq!(curves[0].points.len(), 4);
    assert_eq!(curves[0].points[0], (256.0, 1.0));
    let stem = dir.path().join("accuracy");
    let svg = check_written(&figures::passkey_accuracy(&curves, "Passkey accuracy vs length", &stem).expect("drawn"), &stem);
    assert_eq!(count_series(&svg), SeriesCount { lines: 3, points: 0, cells: 0 });
    assert!(svg.contains("T_recall threshold 0.95"));
    assert!(svg.contains("t_recall=1024") && svg.contains("2K"));
    // the dashed threshold: black dashes across the plot
    let dashes = svg.matches("fill=\"#000000\" stroke=\"none\"").count();
    assert!(dashes >= 20, "{dashes} black dashes");
    assert!(figures::passkey_accuracy(&[], "t", &stem).is_err());
}

#[test]
fn recall_figure_shows_one_series_per_training_length() {
    let job = |id: &str, s: i64, len: i64, t: Option<i64>| JobRecall {
        job_id: id.into(),
        state_size: s,
        train_len: Some(len),
        t_recall: t,
        t_recall_strict: t,
        lengths: vec![],
        searched: false,
        learned: true,
    };
    let jobs = vec![
        job("a", 1_000_000, 256, Some(512)),
        job("b", 1_000_000, 1024, None),
        job("c", 2_000_000, 256, Some(256)),
        job("d", 2_000_000, 1024, Some(1024)),
        job("e", 3_000_000, 256, Some(256)),
        job("f", 3_000_000, 1024, Some(2048)),
    ];
    let series = figures::recall_series_by_length(&jobs);
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].label, "trained at T=256");
    assert_eq!(series[0].points, vec![(1.0, 0.512), (2.0, 0.256), (3.0, 0.256)]);
    assert!(series[1].points[0].1.is_nan(), "a gap where nothing was recalled");
    // one training length: the series would repeat the measured points
    assert!(figures::recall_series_by_length(&jobs[..1]).is_empty());

    let rows = derive::state_recalls(&jobs);
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join("t_recall_by_len");
    let svg = check_written(&figures::recall_law_by_length(&rows, &jobs, None, false, "T_recall", &stem).expect("drawn"), &stem);
    // the measured (max over jobs) points are the only counted markers
    assert_eq!(count_series(&svg), SeriesCount { lines: 0, points: 3, cells: 0 });
    assert!(svg.contains("trained at T=256") && svg.contains("trained at T=1024"));
    assert!(svg.contains("T_recall: best job per"), "legend of the measured points");
}
