//! Running one job end to end in its run directory: train (resuming when a checkpoint is
//! there), then the evaluations its config lists (skipping those already recorded for the
//! final checkpoint), then a final `done` event. Shared by `stuffed train` and `stuffed worker`.
//! The same evaluations run at the points of `evals_at` during training, on the checkpoint of
//! each, and may stop training there (`early_stop`).
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use stuffed_model::checkpoint;
use stuffed_model::protocol::eval::{EvalResult, LossParams, PasskeyParams, StatesParams};
use stuffed_model::protocol::event::DoneStatus;
use stuffed_model::protocol::{Done, Envelope, Event};
use stuffed_model::train::config::EvalSpec;
use stuffed_model::train::{self, Control, EvalMoment, EventLog, JobConfig, StepInfo, TrainOutcome};
use stuffed_model::{cuda, Error as ModelError, Mamba2LM, Tokenizer};

use crate::evaluate::{self, source_name};

pub use stuffed_model::protocol::rundir::{EVENTS_FILE, JOB_FILE};

/// The `done` event of a failed job: its kind, as the error's type says, and its exit code.
pub fn failure_of(err: &anyhow::Error) -> Done {
    Done::failed(crate::failure_kind(err), crate::exit_code_for(err), crate::report_error(err))
}

/// Evaluations already recorded for the checkpoint at `step`, by index, and whether an early
/// stop was recorded there.
fn recorded_at(events: &Path, step: i64) -> (BTreeMap<i64, EvalResult>, bool) {
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let (mut evals, mut stopped) = (BTreeMap::new(), false);
    for e in text.lines().filter_map(|l| Envelope::parse(l.as_bytes()).ok()) {
        match e.event {
            Event::Eval { eval_index, step: s, result, .. } if s == step => {
                evals.insert(eval_index, result);
            }
            Event::EarlyStop { step: s, .. } if s == step => stopped = true,
            _ => {}
        }
    }
    (evals, stopped)
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
            early_stop: o.stopped_early,
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
    let tok = Tokenizer::from_spec(&job.tokenizer)?;
    let mut on_eval = |m: &EvalMoment, log: &mut EventLog| evaluate_point(job, &tok, m, log, stop, true);
    let outcome = train::train(job, run_dir, log, stop, on_step, &mut on_eval)?;
    if outcome.stopped_early.is_none() {
        let m = EvalMoment { step: outcome.steps, tokens: outcome.tokens, checkpoint: &outcome.checkpoint };
        evaluate_point(job, &tok, &m, log, stop, false)?;
    }
    Ok(outcome)
}

/// Runs the job's evaluations on the checkpoint of a moment, skipping those already recorded
/// for its step; at a point during training (`during`), answers `early_stop` from them.
fn evaluate_point(
    job: &JobConfig,
    tok: &Tokenizer,
    m: &EvalMoment,
    log: &mut EventLog,
    stop: &AtomicBool,
    during: bool,
) -> anyhow::Result<Control> {
    let (mut results, stopped_before) = recorded_at(log.path(), m.step);
    let mut lm = None;
    for (i, spec) in job.evals.iter().enumerate() {
        if results.contains_key(&(i as i64)) {
            continue;
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ModelError::Interrupted.into());
        }
        if lm.is_none() {
            let device = cuda::parse_device(&job.train.device)?;
            lm = Some(checkpoint::load(m.checkpoint, device)?.0.with_ssd(job.train.ssd)?);
        }
        let Some(model) = &lm else { unreachable!("loaded above") };
        let result = run_eval(spec, model, tok, job).with_context(|| format!("evaluation {i} ({}) at step {}", spec.kind(), m.step))?;
        log.emit(Event::Eval { eval_index: i as i64, step: m.step, tokens: Some(m.tokens), result: result.clone() })?;
        results.insert(i as i64, result);
    }
    let Some(es) = job.early_stop.as_ref().filter(|_| during) else { return Ok(Control::Continue) };
    let kinds: Vec<&str> = job.evals.iter().map(EvalSpec::kind).collect();
    let index = es.criterion.resolve(&kinds).map_err(|e| anyhow::anyhow!("early_stop.criterion: {e}"))?;
    let Some(result) = results.get(&(index as i64)) else { return Ok(Control::Continue) };
    let answer = es.criterion.answer(result).map_err(|e| anyhow::anyhow!("early_stop.criterion: {e}"))?;
    if answer.as_bool() != Some(es.stop_when) {
        return Ok(Control::Continue);
    }
    if !stopped_before {
        log.emit(Event::EarlyStop { step: m.step, tokens: m.tokens, criterion: es.criterion.describe(), answer })?;
    }
    Ok(Control::Stop)
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
