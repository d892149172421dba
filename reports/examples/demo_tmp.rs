#[path = "../tests/common/mod.rs"]
mod common;
fn main() {
    let out = std::path::Path::new("/tmp/report-demo");
    let _ = std::fs::remove_dir_all(out);
    let s = stuffed_reports::write_report(&common::fixture(), out, &Default::default()).unwrap();
    println!("{} files, skipped {:?}", s.files.len(), s.skipped);
    laws();
}
#[allow(dead_code)]
fn unused() {}
#[test]
fn t() {}
pub fn laws() {
    use stuffed_reports::derive::*;
    use stuffed_reports::*;
    let rows: Vec<StateRecall> = (1..=6).map(|k| StateRecall { state_size: k * 2_000_000,
        t_recall: Some(((4.756 * (1.365f64.powf(2.0 * k as f64) - 1.0) - 0.742) * 1000.0 * (1.0 + 0.05 * ((k * 7 % 5) as f64 - 2.0) / 2.0)) as i64),
        job_id: None, jobs: 1 }).collect();
    let (xs, ys) = recall_points(&rows);
    let f = fit(FitModel::Exp, &xs, &ys, 1000, 0).unwrap();
    figures::recall_law(&rows, Some(&f), false, "Max recall length T_recall vs state size", std::path::Path::new("/tmp/report-demo/recall_lin")).unwrap();
    figures::recall_law(&rows, Some(&f), true, "Max recall length T_recall vs state size", std::path::Path::new("/tmp/report-demo/recall_log")).unwrap();
    let frows: Vec<ForgetRow> = (1..=5).map(|k| ForgetRow { state_size: k * 2_500_000, t_forget: Some(((5.172 * 2.5 * k as f64 - 4.469) * 1000.0 * (1.0 + 0.03 * ((k * 3 % 4) as f64 - 1.5))) as i64), lengths_tried: vec![1], collapsed_lengths: vec![] }).collect();
    let (xs, ys) = forget_points(&frows);
    let f = fit(FitModel::Linear, &xs, &ys, 1000, 0).unwrap();
    figures::forget_law(&frows, Some(&f), false, "Forget threshold T_forget vs state size", std::path::Path::new("/tmp/report-demo/forget_lin")).unwrap();
}
