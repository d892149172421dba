//! Evaluation results in long (tidy) form, as `stuffed results export --format long-evals`
//! writes them: one [`EvalPoint`] per loss bucket, passkey cell and state statistic, plus one
//! per headline number (`mean_loss`, `t_recall`). Each point names what it measures
//! (`metric`) and the coordinates that place it; coordinates that do not apply to its kind are
//! `None` (empty in CSV, null in Parquet).
use serde::Serialize;

use crate::eval::{EvalResult, HeadStates};

/// The columns of an [`EvalPoint`], in order.
pub const EVAL_POINT_COLUMNS: [&str; 10] =
    ["metric", "bucket_start", "bucket_end", "length", "depth", "layer", "head", "position", "n", "value"];

/// One number of an evaluation result with the coordinates that place it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalPoint {
    /// What `value` is: `loss` (mean loss of a position bucket, nats), `mean_loss`,
    /// `accuracy` (a passkey cell), `t_recall` (tokens), or a state statistic of one head at
    /// one position (`state_mean`, `state_var`, `state_rms`, `log_retention`, `dt_mean`,
    /// `b_mean`, `x_mean`).
    pub metric: &'static str,
    /// A loss bucket: positions `bucket_start..bucket_end`.
    pub bucket_start: Option<i64>,
    pub bucket_end: Option<i64>,
    /// A passkey cell: prompt length (tokens) and depth of the passkey (0..1).
    pub length: Option<i64>,
    pub depth: Option<f64>,
    /// A state statistic: layer, head and token position.
    pub layer: Option<i64>,
    pub head: Option<i64>,
    pub position: Option<i64>,
    /// Prompts behind a passkey cell.
    pub n: Option<i64>,
    /// The number; `None` when it is not finite or absent (a `t_recall` of a passkey grid
    /// that recalled no length).
    pub value: Option<f64>,
}

impl EvalPoint {
    fn new(metric: &'static str, value: Option<f64>) -> EvalPoint {
        EvalPoint {
            metric,
            bucket_start: None,
            bucket_end: None,
            length: None,
            depth: None,
            layer: None,
            head: None,
            position: None,
            n: None,
            value: value.filter(|v| v.is_finite()),
        }
    }
}

/// The per-position series of a head, by metric name.
fn series(h: &HeadStates) -> [(&'static str, &[f64]); 7] {
    [
        ("state_mean", &h.state_mean),
        ("state_var", &h.state_var),
        ("state_rms", &h.state_rms),
        ("log_retention", &h.log_retention),
        ("dt_mean", &h.dt_mean),
        ("b_mean", &h.b_mean),
        ("x_mean", &h.x_mean),
    ]
}

impl EvalResult {
    /// The result as long-form points: headline numbers first, then buckets, cells or state
    /// statistics in the result's order. A state histogram and per-prompt losses are not
    /// included (they are in the dump).
    pub fn points(&self) -> Vec<EvalPoint> {
        let mut out = Vec::new();
        match self {
            EvalResult::Loss(r) => {
                out.push(EvalPoint::new("mean_loss", r.mean_loss));
                for b in &r.buckets {
                    out.push(EvalPoint { bucket_start: Some(b.start), bucket_end: Some(b.end), ..EvalPoint::new("loss", Some(b.loss)) });
                }
            }
            EvalResult::Passkey(r) => {
                out.push(EvalPoint::new("t_recall", r.t_recall.map(|t| t as f64)));
                for c in &r.cells {
                    out.push(EvalPoint {
                        length: Some(c.len),
                        depth: Some(c.depth),
                        n: Some(c.n),
                        ..EvalPoint::new("accuracy", Some(c.accuracy))
                    });
                }
            }
            EvalResult::States(r) => {
                for l in &r.layers {
                    for h in &l.heads {
                        for (metric, values) in series(h) {
                            for (&position, &v) in r.positions.iter().zip(values) {
                                out.push(EvalPoint {
                                    layer: Some(l.layer),
                                    head: Some(h.head),
                                    position: Some(position),
                                    ..EvalPoint::new(metric, Some(v))
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_bucket_cell_and_statistic_is_one_point() {
        let loss = EvalResult::from_json(
            &json!({"kind": "loss", "buckets": [{"start": 0, "end": 4, "loss": 2.0}, {"start": 4, "end": 8, "loss": null}], "mean_loss": 2.0})
                .to_string(),
        )
        .unwrap();
        let p = loss.points();
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].metric, p[0].value), ("mean_loss", Some(2.0)));
        assert_eq!((p[2].metric, p[2].bucket_start, p[2].bucket_end, p[2].value), ("loss", Some(4), Some(8), None), "NaN is no value");
        let passkey = EvalResult::from_json(
            &json!({"kind": "passkey", "cells": [{"len": 256, "depth": 0.5, "accuracy": 1.0, "n": 4}], "t_recall": null}).to_string(),
        )
        .unwrap();
        let p = passkey.points();
        assert_eq!((p[0].metric, p[0].value), ("t_recall", None));
        assert_eq!((p[1].length, p[1].depth, p[1].n, p[1].value), (Some(256), Some(0.5), Some(4), Some(1.0)));
        let states = EvalResult::from_json(
            &json!({"kind": "states", "positions": [8, 16], "layers": [{"layer": 1, "heads": [{"head": 2, "state_var": [1.0, 2.0]}]}]})
                .to_string(),
        )
        .unwrap();
        let p = states.points();
        assert_eq!(p.len(), 2, "only the series it has");
        assert_eq!((p[1].metric, p[1].layer, p[1].head, p[1].position, p[1].value), ("state_var", Some(1), Some(2), Some(16), Some(2.0)));
        let keys: Vec<String> = match serde_json::to_value(&p[1]).unwrap() {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            _ => unreachable!(),
        };
        assert_eq!(keys, EVAL_POINT_COLUMNS, "the columns are the fields");
    }
}
