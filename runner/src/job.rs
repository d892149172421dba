//! Running one job end to end in its run directory: train (resuming when a checkpoint is
//! there), then the evaluations its config lists (skipping those already recorded for the
//! final checkpoint), then a final `done` event. Shared by `stuffed train` and `stuffed worker`.
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use stuffed_model::checkpoint;
use stuffed_model::protocol::eval::{EvalResult, LossParams, PasskeyParams, StatesParams};
use stuffed_model::protocol::event::DoneStatus;
use stuffed_model::protocol::{Done, Envelope, Event};
use stuffed_model::train::config::EvalSpec;
use stuffed_model::train::{self, EventLog, JobConfig, StepInfo, TrainOutcome};
use stuffed_model::{cuda, Error as ModelError, Mamba2LM, Tokenizer};

use crate::evaluate::{self, source_name};

pub use stuffed_model::protocol::rundir::{EVENTS_FILE, JOB_FILE};

/// The `done` event of a failed job: its kind, as the error's type says, and its exit code.
pub fn failure_of(err: &anyhow::Error) -> Done {
    Done::failed(crate::failure_kind(err), crate::exit_code_for(err), crate::report_error(err))
}

/// Evaluation indices already recorded for the checkpoint at `step`.
fn done_evals(events: &Path, step: i64) -> Vec<i64> {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    text.lines()
        .filter_map(|l| Envelope::parse(l.as_bytes()).ok())
        .filter_map(|e| match e.event {
            Event::Eval { eval_index, step: s, .. } if s == step => Some(eval_index),
            _ => None,
        })
        .collect()
}

/// Trains and evaluates; every outcome ends with a `done` event. `seq_floor` is the last event
/// number the controller ingested for this job: new events are numbered above it.
pub fn run_job(
    job: &JobConfig,
    run_dir: &Path,
    seq_floor: u64,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
) -> anyhow::Result<TrainOutcome> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating run directory {}", run_dir.display()))?;
    let mut log = EventLog::open_after(&run_dir.join(EVENTS_FILE), seq_floor)?;
    let result = train_and_evaluate(job, run_dir, &mut log, stop, on_step);
    let done = match &result {
        Ok(o) => Done {
            status: DoneStatus::Completed,
            exit_code: 0,
            error: None,
            failure: None,
            steps: Some(o.steps),
            tokens: Some(o.tokens),
            final_loss: Some(o.final_loss),
            val_loss: o.val_loss,
            wall_s: Some(o.wall_s),
        },
        Err(e) => failure_of(e),
    };
    log.emit(Event::Done(done))?;
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
        log.emit(Event::Eval { eval_index: i as i64, step: outcome.steps, tokens: Some(outcome.tokens), result })?;
    }
    Ok(outcome)
}

/// Runs one evaluation of a job's config on `lm`.
pub fn run_eval(spec: &EvalSpec, lm: &Mamba2LM, tok: &Tokenizer, job: &JobConfig) -> anyhow::Result<EvalResult> {
    let train_len = job.train.seq_len;
    let corpus = &job.data.corpus;
    Ok(match spec {
        EvalSpec::Loss(s) => {
            let min_doc = s.min_doc_tokens.unwrap_or(job.data.min_doc_tokens);
            let (ps, documents) = evaluate::prompts(s.source, corpus, tok, s.len as usize + 1, s.prompts as usize, min_doc)?;
            let params = LossParams {
                source: source_name(s.source).into(),
                path: None,
                len: s.len,
                prompts: s.prompts,
                chunk: s.chunk,
                bucket: s.bucket,
                train_len: Some(train_len),
                mitigation: canonical(&s.mitigation)?,
                precision: s.precision,
                device: Some(cuda::device_name(lm.device())),
                min_doc_tokens: Some(min_doc),
                documents,
            };
            EvalResult::Loss(evaluate::loss(lm, &ps, params, false)?.0)
        }
        EvalSpec::Passkey(s) => {
            let params = PasskeyParams {
                lengths: s.lengths.listed().to_vec(),
                depths: s.depths.clone(),
                n: s.n,
                seed: s.seed,
                mitigation: canonical(&s.mitigation)?,
                precision: s.precision,
                answer_tokens: evaluate::answer_tokens(tok),
                template: s.template,
                recall_rule: s.recall_rule,
                search: s.lengths.search(),
            };
            EvalResult::Passkey(evaluate::passkey(lm, tok, params, Some(train_len))?)
        }
        EvalSpec::States(s) => {
            let (ps, _) = evaluate::prompts(s.source, corpus, tok, s.len as usize, s.prompts as usize, job.data.min_doc_tokens)?;
            let hist_positions = if s.hist_positions.is_empty() { vec![train_len.min(s.len), s.len] } else { s.hist_positions.clone() };
            let params = StatesParams {
                len: s.len,
                bucket: s.bucket,
                source: source_name(s.source).into(),
                prompts: s.prompts,
                mitigation: canonical(&s.mitigation)?,
                hist_layer: s.hist_layer,
                hist_head: s.hist_head,
                hist_positions,
                train_len: Some(train_len),
            };
            EvalResult::States(evaluate::states(lm, &ps, params)?)
        }
    })
}

/// A mitigation's canonical text (`none`, `rri:decay=0.9999,b=0.75`, ...).
pub fn canonical(mitigation: &str) -> anyhow::Result<String> {
    Ok(mitigation.parse::<stuffed_model::eval::Mitigation>()?.to_string())
}
