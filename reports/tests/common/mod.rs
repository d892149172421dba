// Fixture ReportData shared by the integration tests: 6 jobs over 3 state sizes x 2 training
// lengths, loss evals (some collapsed), passkey evals, a states eval, two mitigations for one
// job, a newlines-source loss eval and training metrics.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use stuffed_protocol::{JobStatus, ModelDims};
use stuffed_reports::{EvalRecord, JobRecord, MetricRecord, ReportData, SweepRecord};

pub const D_STATES: [i64; 3] = [8, 16, 32];
pub const LENGTHS: [i64; 2] = [256, 1024];

pub fn job_id(d_state: i64, len: i64) -> String {
    format!("j-n{d_state:02}-l{len:04}")
}

/// State size of the fixture models: 2 layers x 2 heads x P=64 x N=d_state.
pub fn state_size(d_state: i64) -> i64 {
    2 * 2 * 64 * d_state
}

/// Whether the fixture job collapses: S=2048 never, S=4096 at 256 only, S=8192 at both.
pub fn collapses(d_state: i64, len: i64) -> bool {
    match d_state {
        8 => false,
        16 => len == 256,
        _ => true,
    }
}

/// A loss result over 0..8192 in 256-token buckets.
pub fn loss_result(train_len: i64, collapsed: bool, mitigation: &str, source: &str, scale: f64) -> Value {
    let mut buckets = Vec::new();
    let mut max_within: f64 = 0.0;
    for i in 0..32 {
        let (start, end) = (i * 256, (i + 1) * 256);
        let p = (start + end) as f64 / 2.0;
        let mut loss = 2.0 + 3.0 * (-p / 300.0).exp();
        if collapsed && p > 2.0 * train_len as f64 {
            loss += scale * (p - 2.0 * train_len as f64) / 1000.0;
        }
        if end <= train_len {
            max_within = max_within.max(loss);
        }
        buckets.push(json!({"start": start, "end": end, "loss": loss}));
    }
    json!({
        "kind": "loss",
        "params": {"source": source, "len": 8192, "bucket": 256, "train_len": train_len,
                   "mitigation": mitigation},
        "buckets": buckets,
        "collapse": {"train_len": train_len, "max_within_train": max_within,
                     "threshold": 2.0 * max_within, "collapsed": collapsed,
                     "verdict": if collapsed { "collapsed" } else { "not_collapsed" },
                     "first_position": if collapsed { json!(4096) } else { Value::Null },
                     "worst_ratio": 1.5},
        "mean_loss": 2.5, "tokens": 65536, "wall_s": 1.0, "tokens_per_s": 1000.0
    })
}

/// A passkey result whose accuracy is perfect up to `t_recall` and falls off after it.
pub fn passkey_result(t_recall: i64) -> Value {
    let lengths = [256i64, 512, 1024, 2048];
    let depths = [0.1, 0.5, 0.9];
    let mut cells = Vec::new();
    for &len in &lengths {
        for (k, &depth) in depths.iter().enumerate() {
            let acc = if len <= t_recall { 1.0 } else { 0.5 / (k as f64 + 1.0) };
            cells.push(json!({"len": len, "depth": depth, "accuracy": acc, "n": 8}));
        }
    }
    json!({
        "kind": "passkey",
        "params": {"lengths": lengths, "depths": depths, "n": 8, "seed": 0, "mitigation": "none"},
        "cells": cells,
        "t_recall": t_recall,
        "wall_s": 1.0
    })
}

/// A states result: 2 layers x 3 heads over 64 positions, with a histogram at 2 positions.
pub fn states_result() -> Value {
    let positions: Vec<i64> = (1..=64).map(|i| i * 128).collect();
    let mut layers = Vec::new();
    for layer in 0..2 {
        let mut heads = Vec::new();
        for head in 0..3 {
            let rate = 0.001 * (head + 1) as f64;
            let var: Vec<f64> = positions.iter().map(|&p| 0.1 + (layer * 3 + head) as f64 * 1e-4 * (p as f64).powf(1.5)).collect();
            let ret: Vec<f64> = positions.iter().map(|&p| -rate * p as f64).collect();
            heads.push(json!({"head": head, "state_mean": var, "state_var": var, "state_rms": var,
                              "log_retention": ret, "dt_mean": var, "b_mean": var, "x_mean": var}));
        }
        layers.push(json!({"layer": layer, "heads": heads}));
    }
    let bins: Vec<f64> = (0..=20).map(|i| -2.0 + 0.2 * i as f64).collect();
    let counts: Vec<Vec<f64>> =
        (0..2).map(|k| (0..20).map(|i| (100.0 * (-(i as f64 - 10.0).powi(2) / (8.0 + 20.0 * k as f64)).exp()).round()).collect()).collect();
    json!({
        "kind": "states",
        "params": {"len": 8192, "bucket": 128, "source": "corpus", "prompts": 1, "mitigation": "none",
                   "hist_layer": 0, "hist_head": 1, "hist_positions": [1024, 8192]},
        "positions": positions,
        "layers": layers,
        "histogram": {"layer": 0, "head": 1, "positions": [1024, 8192], "bins": bins, "counts": counts},
        "wall_s": 1.0
    })
}

pub fn eval(job: &str, result: Value) -> EvalRecord {
    EvalRecord { job_id: job.into(), eval_index: 0, step: 0, tokens: None, result: serde_json::from_value(result).expect("a valid result") }
}

/// An evaluation of `kind` with the given params and result fields.
pub fn record(job: &str, kind: &str, params: Value, mut result: Value) -> EvalRecord {
    result["kind"] = json!(kind);
    result["params"] = params;
    eval(job, result)
}

pub fn job(d_state: i64, len: i64) -> JobRecord {
    JobRecord {
        id: job_id(d_state, len),
        sweep: "grid".into(),
        status: JobStatus::Completed,
        label: format!("d_state={d_state} seq_len={len}"),
        config: json!({"model": {"d_model": 64, "n_layer": 2, "d_state": d_state, "headdim": 64},
                       "train": {"seq_len": len}}),
        state_size: state_size(d_state),
        n_params: 100_000 + d_state * 1000,
        train_len: len,
        model: ModelDims { d_model: 64, n_layer: 2, d_state, headdim: 64, ..Default::default() },
        ..Default::default()
    }
}

/// The full fixture.
pub fn fixture() -> ReportData {
    let mut jobs = Vec::new();
    let mut evals = Vec::new();
    let mut metrics = Vec::new();
    for &d in &D_STATES {
        for &len in &LENGTHS {
            let j = job(d, len);
            evals.push(eval(&j.id, loss_result(len, collapses(d, len), "none", "corpus", 4.0)));
            evals.push(eval(&j.id, passkey_result(256 * d / 8 * if len == 1024 { 2 } else { 1 })));
            for step in 0..10 {
                metrics.push(MetricRecord {
                    job_id: j.id.clone(),
                    step: step * 10,
                    key: "loss".into(),
                    value: 6.0 - 0.3 * step as f64 - 0.01 * d as f64,
                });
            }
            jobs.push(j);
        }
    }
    let mid = job_id(16, 256);
    evals.push(eval(&mid, loss_result(256, false, "rri:decay=0.9999,b=0.75", "corpus", 0.0)));
    evals.push(eval(&mid, loss_result(256, true, "dt-scale:c=0.5", "corpus", 8.0)));
    evals.push(eval(&job_id(16, 1024), loss_result(1024, false, "none", "newlines", 0.0)));
    evals.push(eval(&job_id(32, 256), states_result()));
    let mut counts = BTreeMap::new();
    counts.insert("completed".to_string(), 6);
    let sweeps = vec![SweepRecord {
        name: "grid".into(),
        description: "3 state sizes x 2 training lengths".into(),
        created_at: "2026-11-28T10:00:00Z".into(),
        counts,
    }];
    ReportData { sweeps, jobs, evals, metrics, search_steps: vec![], eval_history: Vec::new() }
}

/// The fixture without passkey evals.
pub fn fixture_without_passkey() -> ReportData {
    let mut d = fixture();
    d.evals.retain(|e| e.kind() != "passkey");
    d
}

/// Every file under `dir`, relative path -> bytes.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&path).expect("readable file"));
            }
        }
    }
    out
}
