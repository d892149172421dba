//! Running one job end to end in its run directory: train (resuming when a checkpoint is
//! there), then the evaluations its config lists (skipping those already recorded for the
//! final checkpoint), then a final `done` event. Shared by `stuffed train` and `stuffed worker`.
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use serde_json::{json, Value};
use stuffed_model::checkpoint;
use stuffed_model::data::{probes, Corpus};
use stuffed_model::eval::{self, LossEval, Mitigation, PasskeyEval, StatesEval};
use stuffed_model::train::config::{EvalSource, EvalSpec};
use stuffed_model::train::{self, EventLog, JobConfig, StepInfo, TrainOutcome};
use stuffed_model::{cuda, Error as ModelError, Mamba2LM, Tokenizer};

pub const EVENTS_FILE: &str = "events.jsonl";
pub const JOB_FILE: &str = "job.yaml";

/// How a job ended, as recorded in its `done` event.
pub fn status_of(err: &anyhow::Error) -> (&'static str, i32) {
    let code = crate::exit_code_for(err);
    let status = match code {
        crate::exit::DIVERGED => "diverged",
        crate::exit::INTERRUPTED => "interrupted",
        _ => "failed",
    };
    (status, code)
}

/// Evaluation indices already recorded for the checkpoint at `step`.
fn done_evals(events: &Path, step: i64) -> Vec<i64> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "eval" && v["step"].as_i64() == Some(step))
        .filter_map(|v| v["eval_index"].as_i64())
        .collect()
}

/// Trains and evaluates; every outcome ends with a `done` event.
pub fn run_job(job: &JobConfig, run_dir: &Path, stop: &AtomicBool, on_step: &mut dyn FnMut(&StepInfo)) -> anyhow::Result<TrainOutcome> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating run directory {}", run_dir.display()))?;
    let mut log = EventLog::open(&run_dir.join(EVENTS_FILE))?;
    let result = train_and_evaluate(job, run_dir, &mut log, stop, on_step);
    let done = match &result {
        Ok(o) => json!({"status": "completed", "exit_code": 0, "error": null, "steps": o.steps, "tokens": o.tokens,
                        "final_loss": o.final_loss, "val_loss": o.val_loss, "wall_s": o.wall_s}),
        Err(e) => {
            let (status, code) = status_of(e);
            json!({"status": status, "exit_code": code, "error": crate::report_error(e)})
        }
    };
    log.emit("done", done)?;
    result
}

fn train_and_evaluate(
    job: &JobConfig,
    run_dir: &Path,
    log: &mut EventLog,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> anyhow::Result<TrainOutcome> {
    let outcome = train::train(job, run_dir, log, stop, on_step)?;
    if job.evals.is_empty() {
        return Ok(outcome);
    }
    let device = cuda::parse_device(&job.train.device)?;
    let lm = checkpoint::load(&outcome.checkpoint, device)?.0.with_ssd(job.train.ssd)?;
    let tok = Tokenizer::from_spec(&job.tokenizer)?;
    let done = done_evals(log.path(), outcome.steps);
    for (i, spec) in job.evals.iter().enumerate() {
        if done.contains(&(i as i64)) {
            continue;
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ModelError::Interrupted.into());
        }
        let result = run_eval(spec, &lm, &tok, job).with_context(|| format!("evaluation {i} ({})", spec.kind()))?;
        log.emit("eval", json!({"eval_index": i, "step": outcome.steps, "result": result}))?;
    }
    Ok(outcome)
}

fn prompts(job: &JobConfig, tok: &Tokenizer, source: EvalSource, len: usize, n: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    Ok(match source {
        EvalSource::Newlines => vec![probes::newlines(tok, len); n],
        EvalSource::Corpus => Corpus::open(&job.data.corpus)?.val_prompts(len, n)?,
    })
}

fn source_name(s: EvalSource) -> &'static str {
    match s {
        EvalSource::Corpus => "corpus",
        EvalSource::Newlines => "newlines",
    }
}

/// Runs one evaluation and returns its JSON result (docs/results-schema.md).
pub fn run_eval(spec: &EvalSpec, lm: &Mamba2LM, tok: &Tokenizer, job: &JobConfig) -> anyhow::Result<Value> {
    let device = lm.device();
    let train_len = job.train.seq_len;
    Ok(match spec {
        EvalSpec::Loss(s) => {
            let mitigation: Mitigation = s.mitigation.parse()?;
            let ps = prompts(job, tok, s.source, s.len as usize + 1, s.prompts as usize)?;
            let cfg = LossEval {
                chunk: s.chunk,
                bucket: s.bucket,
                batch: 8,
                train_len: Some(train_len),
                kind: s.precision.kind(device),
                mitigation: mitigation.clone(),
                per_token: false,
            };
            let c = eval::loss::run(lm, &ps, &cfg)?;
            json!({
                "kind": "loss",
                "params": {"source": source_name(s.source), "len": s.len, "prompts": s.prompts, "chunk": s.chunk,
                           "bucket": s.bucket, "train_len": train_len, "mitigation": mitigation.to_string(),
                           "precision": format!("{:?}", s.precision).to_lowercase(), "device": cuda::device_name(device)},
                "buckets": c.buckets, "collapse": c.collapse, "mean_loss": c.mean_loss, "tokens": c.tokens,
                "wall_s": c.wall_s, "tokens_per_s": c.tokens_per_s,
            })
        }
        EvalSpec::Passkey(s) => {
            let mitigation: Mitigation = s.mitigation.parse()?;
            let answer_tokens = tok.encode(" 12345").len() + 2;
            let cfg = PasskeyEval {
                lengths: s.lengths.clone(),
                depths: s.depths.clone(),
                n: s.n,
                seed: s.seed,
                kind: s.precision.kind(device),
                mitigation: mitigation.clone(),
                answer_tokens,
                batch: 16,
                chunk: 4096,
                train_len: Some(train_len),
            };
            let r = eval::passkey::run(lm, tok, &cfg)?;
            json!({
                "kind": "passkey",
                "params": {"lengths": s.lengths, "depths": s.depths, "n": s.n, "seed": s.seed,
                           "mitigation": mitigation.to_string(), "precision": format!("{:?}", s.precision).to_lowercase(),
                           "answer_tokens": answer_tokens},
                "cells": r.cells, "accuracy_by_len": r.accuracy_by_len, "t_recall": r.t_recall,
                "t_recall_per_depth": r.t_recall_per_depth, "wall_s": r.wall_s, "tokens_per_s": r.tokens_per_s,
            })
        }
        EvalSpec::States(s) => {
            let mitigation: Mitigation = s.mitigation.parse()?;
            let ps = prompts(job, tok, s.source, s.len as usize, s.prompts as usize)?;
            let hist_positions = if s.hist_positions.is_empty() { vec![train_len.min(s.len), s.len] } else { s.hist_positions.clone() };
            let cfg = StatesEval {
                bucket: s.bucket,
                kind: tch::Kind::Float,
                mitigation: mitigation.clone(),
                hist_layer: s.hist_layer,
                hist_head: s.hist_head,
                hist_positions: hist_positions.clone(),
                hist_bins: 41,
                train_len: Some(train_len),
            };
            let r = eval::states::run(lm, &ps, &cfg)?;
            json!({
                "kind": "states",
                "params": {"len": s.len, "bucket": s.bucket, "source": source_name(s.source), "prompts": s.prompts,
                           "mitigation": mitigation.to_string(), "hist_layer": s.hist_layer, "hist_head": s.hist_head,
                           "hist_positions": hist_positions, "train_len": train_len},
                "positions": r.positions, "layers": r.layers, "histogram": r.histogram, "wall_s": r.wall_s,
            })
        }
    })
}
