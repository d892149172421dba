// Capacity-law fits: recovery of the paper's parameters from noisy synthetic points, bootstrap
// intervals, too few points, and fits from CSV files (including error positions).
use std::io::Write;

use stuffed_reports::rng::SplitMix64;
use stuffed_reports::{fit, fit_csv, Error, FitModel};

fn noisy(f: impl Fn(f64) -> f64, xs: &[f64], rel: f64, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    xs.iter().map(|x| f(*x) * (1.0 + rel * rng.normal())).collect()
}

#[test]
fn linear_recovers_paper_forget_law() {
    // S in 1..13 (millions), 2% multiplicative noise
    let xs: Vec<f64> = (1..=13).map(f64::from).collect();
    let ys = noisy(|s| 5.172 * s - 4.469, &xs, 0.02, 11);
    let f = fit(FitModel::Linear, &xs, &ys, 1000, 0).expect("linear fit");
    let (a, b) = (f.param("a"), f.param("b"));
    assert!((a - 5.172).abs() / 5.172 < 0.02, "a = {a}");
    assert!((b + 4.469).abs() < 1.0, "b = {b}");
    assert!(f.r2 > 0.99, "r2 = {}", f.r2);
    assert_eq!(f.n, xs.len());
    let (lo, hi) = f.ci["a"];
    assert!(lo <= 5.172 && 5.172 <= hi, "a CI [{lo}, {hi}]");
    let (lo, hi) = f.ci["b"];
    assert!(lo <= -4.469 && -4.469 <= hi, "b CI [{lo}, {hi}]");
    let eq = f.equation();
    assert!(eq.starts_with("T = 5.") && eq.contains("·S − 4.") && eq.contains("(R² = 0.99"), "{eq}");
}

#[test]
fn exponential_recovers_paper_recall_law() {
    let (a0, b0, c0): (f64, f64, f64) = (1.365, 4.756, -0.742);
    let xs: Vec<f64> = (1..=13).map(f64::from).collect();
    let ys = noisy(|s| b0 * (a0.powf(s) - 1.0) + c0, &xs, 0.02, 7);
    let f = fit(FitModel::Exp, &xs, &ys, 1000, 0).expect("exp fit");
    let a = f.param("a");
    assert!((a - a0).abs() / a0 < 0.02, "a = {a} ({f:?})");
    assert!(f.r2 > 0.99, "r2 = {}", f.r2);
    for (name, truth) in [("a", a0), ("b", b0), ("c", c0)] {
        let (lo, hi) = f.ci[name];
        assert!(lo <= truth && truth <= hi, "{name}: {truth} outside [{lo}, {hi}]");
    }
    let json = f.to_json();
    let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["a", "b", "c", "r2", "ci", "n"]);
}

#[test]
fn exponential_fit_is_deterministic() {
    let xs: Vec<f64> = (1..=8).map(f64::from).collect();
    let ys = noisy(|s| 2.0 * (1.5f64.powf(s) - 1.0) + 1.0, &xs, 0.05, 3);
    let f1 = fit(FitModel::Exp, &xs, &ys, 200, 9).expect("fit");
    let f2 = fit(FitModel::Exp, &xs, &ys, 200, 9).expect("fit");
    assert_eq!(f1, f2);
    assert_eq!(f1.to_json().to_string(), f2.to_json().to_string());
}

#[test]
fn too_few_points_is_an_error_not_a_panic() {
    let e = fit(FitModel::Linear, &[1.0, 2.0], &[1.0, 2.0], 10, 0).unwrap_err();
    assert!(matches!(e, Error::TooFewPoints { needed: 3, got: 2 }), "{e}");
    let e = fit(FitModel::Exp, &[1.0, 2.0], &[1.0, 2.0], 10, 0).unwrap_err();
    assert!(matches!(e, Error::TooFewPoints { needed: 4, got: 2 }), "{e}");
    assert!(e.to_string().contains("needed at least 4, got 2"));
    let e = fit(FitModel::Exp, &[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0], 10, 0).unwrap_err();
    assert!(matches!(e, Error::TooFewPoints { needed: 4, got: 3 }), "{e}");
}

#[test]
fn degenerate_inputs_are_errors() {
    let e = fit(FitModel::Linear, &[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 0, 0).unwrap_err();
    assert!(matches!(e, Error::Fit(_)), "{e}");
    let e = fit(FitModel::Linear, &[1.0, 2.0, 3.0], &[1.0, f64::NAN, 3.0], 0, 0).unwrap_err();
    assert!(matches!(e, Error::Fit(_)), "{e}");
    let e = fit(FitModel::Linear, &[1.0, 2.0, 3.0], &[1.0, 2.0], 0, 0).unwrap_err();
    assert!(matches!(e, Error::Fit(_)), "{e}");
}

fn csv_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

#[test]
fn fit_csv_reads_named_columns() {
    let mut text = String::from("state_size,S_M,\"T, K\"\n");
    for s in [1.0, 2.0, 4.0, 8.0, 12.0] {
        text.push_str(&format!("{},{s},{}\n", s * 1e6, 5.172 * s - 4.469));
    }
    let f = csv_file(&text);
    let fit = fit_csv(f.path(), FitModel::Linear, "S_M", "T, K").expect("fit from csv");
    assert!((fit.param("a") - 5.172).abs() < 1e-9);
    assert!((fit.param("b") + 4.469).abs() < 1e-9);
    assert_eq!(fit.n, 5);
}

#[test]
fn fit_csv_names_file_line_and_column_of_a_bad_number() {
    let f = csv_file("S,T\n1,1.5\n2,3.1\n3,x4\n4,6\n");
    let e = fit_csv(f.path(), FitModel::Linear, "S", "T").unwrap_err();
    match &e {
        Error::Csv { path, line, msg } => {
            assert_eq!(path, f.path());
            assert_eq!(*line, 4);
            assert!(msg.contains("column 2") && msg.contains("\"T\"") && msg.contains("x4"), "{msg}");
        }
        other => panic!("expected a CSV error, got {other}"),
    }
    let text = e.to_string();
    assert!(text.starts_with(&format!("{}:4:", f.path().display())), "{text}");
}

#[test]
fn fit_csv_missing_column_and_file() {
    let f = csv_file("S,T\n1,2\n");
    let e = fit_csv(f.path(), FitModel::Linear, "S", "T_forget").unwrap_err();
    assert!(matches!(&e, Error::Csv { line: 1, msg, .. } if msg.contains("T_forget")), "{e}");
    let e = fit_csv("/nonexistent/points.csv", FitModel::Linear, "S", "T").unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/points.csv"));
}

#[test]
fn points_that_are_not_exponential_are_reported_in_plain_words() {
    // T_recall (K tokens) vs S (M) of a real sweep: up, up, down, up
    let xs = [0.004096, 0.008192, 0.032768, 0.065536];
    let ys = [0.512, 1.024, 0.256, 2.048];
    let e = fit(FitModel::Exp, &xs, &ys, 10, 0).unwrap_err();
    assert!(matches!(e, Error::NotExponential { n: 4, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("the 4 points do not follow an exponential law T = b·(a^S − 1) + c") && msg.contains("cannot be represented"),
        "{msg}"
    );
}
