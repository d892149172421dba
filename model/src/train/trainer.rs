//! The training loop as a plain function over a job config: resumes from the run directory's
//! latest checkpoint when there is one (weights, optimizer moments, step, data cursor: the
//! continuation is exact), logs JSON-line events, checkpoints atomically, stops cleanly on a
//! stop request and refuses to go on after a NaN/inf loss or gradient. At each point of
//! `evals_at` before the end it checkpoints (that checkpoint is never pruned) and hands it to
//! the caller's evaluation hook, which may stop training there (`early_stop`).
//!
//! Run directory: `events.jsonl`, `ckpt/step-NNNNNNNN/` (model checkpoint + optimizer +
//! `trainer.json`) and `ckpt/latest` naming the newest complete one.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{Device, Kind};

use crate::checkpoint::{self, write_json_atomic, CheckpointMeta};
use crate::cuda;
use crate::data::{Corpus, Sampler, SamplerState, Split};
use crate::lm::Mamba2LM;
use crate::state::State;
use crate::tokenizer::Tokenizer;
use crate::train::events::EventLog;
use crate::train::step::{batch_loss, Batch};
use crate::train::{train_step, AdamW, GraphedStep, JobConfig, PrecisionExt};
use crate::{Error, Result};
use stuffed_protocol::rundir;
use stuffed_protocol::Event;

pub use rundir::{CKPT_DIR, LATEST, TRAINER_FILE};

/// What a checkpoint needs besides weights and optimizer to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: i64,
    pub tokens: i64,
    pub sampler: SamplerState,
    /// The training-relevant part of the job config, to refuse resuming a different job.
    pub identity: serde_json::Value,
}

/// Progress of the loop, for a progress bar.
pub struct StepInfo {
    pub step: i64,
    pub total: i64,
    pub tokens: i64,
    pub loss: f64,
    pub lr: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub steps: i64,
    pub tokens: i64,
    pub final_loss: f64,
    pub val_loss: Option<f64>,
    pub wall_s: f64,
    pub checkpoint: PathBuf,
    pub resumed_from: Option<i64>,
    /// The step at which the evaluation hook stopped training (`early_stop`).
    pub stopped_early: Option<i64>,
}

/// A point of `evals_at` reached during training: its step, tokens and kept checkpoint.
pub struct EvalMoment<'a> {
    pub step: i64,
    pub tokens: i64,
    pub checkpoint: &'a Path,
}

/// What training does after the evaluations of an [`EvalMoment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop here: the job is complete at this step (early stopping).
    Stop,
}

/// The evaluation hook of [`train`]: runs the job's evaluations at a moment (logging them)
/// and says whether training goes on. It is also called, on a resume, for every earlier point
/// whose checkpoint is there, so it must skip evaluations already recorded.
pub type OnEval<'a, E> = dyn FnMut(&EvalMoment, &mut EventLog) -> std::result::Result<Control, E> + 'a;

/// The newest complete checkpoint of a run directory.
pub fn latest_checkpoint(run_dir: &Path) -> Option<PathBuf> {
    let ckpt = run_dir.join(CKPT_DIR);
    let name = std::fs::read_to_string(ckpt.join(LATEST)).ok()?;
    let dir = ckpt.join(name.trim());
    dir.join(TRAINER_FILE).exists().then_some(dir)
}

/// The parts of a job that must match for a resume (not device, intervals or evaluations).
fn identity(job: &JobConfig) -> serde_json::Value {
    let mut t = job.train.clone();
    t.device = String::new();
    t.checkpoint_every = 0;
    t.keep_checkpoints = 0;
    t.val_every = 0;
    t.log_every = 0;
    t.ssd = Default::default();
    json!({"model": job.model, "tokenizer": job.tokenizer, "data": job.data, "train": t, "init_from": job.init_from})
}

struct Ctx<'a> {
    job: &'a JobConfig,
    /// The steps of `evals_at`, whose checkpoints are kept.
    eval_steps: Vec<i64>,
    run_dir: &'a Path,
    lm: Mamba2LM,
    opt: AdamW,
    tok: &'a Tokenizer,
}

impl Ctx<'_> {
    fn save(&self, step: i64, tokens: i64, sampler: &SamplerState, log: &mut EventLog) -> Result<PathBuf> {
        let ckpt = self.run_dir.join(CKPT_DIR);
        let name = rundir::checkpoint_name(step);
        let tmp = ckpt.join(format!(".tmp-{name}"));
        let dst = ckpt.join(&name);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let meta = CheckpointMeta { tokenizer: Some(self.tok.spec()), step: Some(step), tokens: Some(tokens), ..Default::default() };
        checkpoint::save(&self.lm, &tmp, &meta)?;
        self.opt.save(&tmp)?;
        let state = TrainerState { step, tokens, sampler: sampler.clone(), identity: identity(self.job) };
        write_json_atomic(&tmp.join(TRAINER_FILE), &state)?;
        if dst.exists() {
            std::fs::remove_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
        }
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        checkpoint::write_atomic(&ckpt.join(LATEST), |p| std::fs::write(p, &name).map_err(|e| Error::io(p, e)))?;
        self.prune(&ckpt)?;
        log.emit(Event::Checkpoint { step, tokens, path: format!("{CKPT_DIR}/{name}") })?;
        Ok(dst)
    }

    fn prune(&self, ckpt: &Path) -> Result<()> {
        let mut steps: Vec<PathBuf> = std::fs::read_dir(ckpt)
            .map_err(|e| Error::io(ckpt, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
            .collect();
        steps.sort();
        let keep = self.job.train.keep_checkpoints.max(1) as usize;
        let at_eval_point = |p: &Path| {
            let step = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("step-")).and_then(|n| n.parse::<i64>().ok());
            step.is_some_and(|s| self.eval_steps.binary_search(&s).is_ok())
        };
        for old in steps.iter().take(steps.len().saturating_sub(keep)).filter(|p| !at_eval_point(p)) {
            std::fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
        }
        Ok(())
    }
}

fn to_device(b: &Batch, device: Device) -> Batch {
    Batch { inputs: b.inputs.to_device(device), targets: b.targets.to_device(device) }
}

fn validation(lm: &Mamba2LM, batches: &[Batch], kind: Kind) -> Option<f64> {
    if batches.is_empty() {
        return None;
    }
    let _g = tch::no_grad_guard();
    let device = lm.device();
    let sum: f64 = batches.iter().map(|b| batch_loss(lm, &to_device(b, device), None, kind).double_value(&[])).sum();
    Some(sum / batches.len() as f64)
}

/// Trains `job` in `run_dir`, resuming when a checkpoint is there; `on_eval` runs at the
/// points of `evals_at` before the last step.
pub fn train<E: From<Error>>(
    job: &JobConfig,
    run_dir: &Path,
    log: &mut EventLog,
    stop: &AtomicBool,
    on_step: &mut dyn FnMut(&StepInfo),
    on_eval: &mut OnEval<E>,
) -> std::result::Result<TrainOutcome, E> {
    let started = Instant::now();
    let t = &job.train;
    let device = cuda::parse_device(&t.device)?;
    let kind = t.precision.kind(device);
    let ssd = t.ssd.resolve(device).map_err(Error::Config)?;
    let tok = Tokenizer::from_spec(&job.tokenizer)?;
    let cfg = job.model_config()?;
    let corpus = Corpus::open(&job.data.corpus)?;
    tok.check_same(&corpus.manifest.tokenizer, &format!("corpus {}", job.data.corpus.display()))?;
    let (batch, seq_len, total) = (t.batch(), t.seq_len, t.total_steps());
    let k = job.data.tbptt_segments.max(1);

    // Model, optimizer and data position: from the latest checkpoint, or fresh.
    let resume = latest_checkpoint(run_dir);
    let (mut lm, trainer_state) = match &resume {
        Some(dir) => {
            let text = std::fs::read_to_string(dir.join(TRAINER_FILE)).map_err(|e| Error::io(dir, e))?;
            let st: TrainerState = serde_json::from_str(&text).map_err(|e| Error::at(dir.join(TRAINER_FILE), e.to_string()))?;
            if st.identity != identity(job) {
                return Err(Error::at(dir, "this run directory holds a checkpoint of a different job: use another output directory").into());
            }
            let (lm, meta) = checkpoint::load(dir, device)?;
            if let Some(tk) = &meta.tokenizer {
                tok.check_same(tk, &format!("checkpoint {}", dir.display()))?;
            }
            (lm, Some(st))
        }
        None => {
            let lm = Mamba2LM::seeded(&cfg, device, t.seed as i64)?;
            if let Some(init) = &job.init_from {
                // Any checkpoint form: ours, transformers', pytorch_model.bin, hf:ORG/NAME.
                let src = checkpoint::open(init)?;
                if let Some(tk) = &src.meta.tokenizer {
                    tok.check_same(tk, &format!("init_from checkpoint {}", init.display()))?;
                }
                let c = &src.cfg;
                if c.padded_vocab() != cfg.padded_vocab() || c.d_model != cfg.d_model || c.n_layer != cfg.n_layer {
                    return Err(Error::at(
                        init,
                        format!(
                            "init_from checkpoint does not have this job's model shape: d_model {} n_layer {} vocab {} (padded), the job has {} {} {}",
                            c.d_model, c.n_layer, c.padded_vocab(), cfg.d_model, cfg.n_layer, cfg.padded_vocab()
                        ),
                    )
                    .into());
                }
                checkpoint::load_weights(&lm, &src.weights)?;
            }
            (lm, None)
        }
    };
    lm.set_ssd(ssd)?;
    if t.cuda_graph && !device.is_cuda() {
        return Err(Error::Device(format!("train.cuda_graph: needs a CUDA device, this job runs on {}", cuda::device_name(device))).into());
    }
    // What the attempt records as its SSD: the backend, and whether steps are CUDA graphs.
    let ssd_name = if t.cuda_graph { format!("{}+graph", ssd.name()) } else { ssd.name().to_string() };
    let mut opt = AdamW::new(lm.params(), t.adamw());
    if let Some(dir) = &resume {
        opt.load(dir)?;
    }
    let mut sampler = Sampler::new(
        &corpus,
        &tok,
        Split::Train,
        seq_len as usize,
        batch as usize,
        job.data.min_doc_tokens as usize,
        &job.data.mixture,
        t.seed,
    )?
    .with_selection(&job.data.select)?;
    let (mut step, mut tokens) = (0, 0);
    if let Some(st) = &trainer_state {
        sampler.state = st.sampler.clone();
        step = st.step;
        tokens = st.tokens;
    }
    let val_batches: Vec<Batch> = match Sampler::new(&corpus, &tok, Split::Val, seq_len as usize, batch as usize, 0, &[], t.seed ^ 0x7A1) {
        Ok(mut s) => (0..t.val_batches).map(|_| s.next_batch()).collect::<Result<_>>()?,
        Err(_) => Vec::new(), // no validation documents
    };
    let resumed_from = trainer_state.as_ref().map(|s| s.step);
    let eval_steps: Vec<i64> = job.eval_steps().into_iter().filter(|&s| s < total).collect();
    let mut ctx = Ctx { job, eval_steps, run_dir, lm, opt, tok: &tok };
    if resumed_from.is_none() {
        log.emit(Event::Start {
            total_steps: total,
            batch,
            seq_len,
            params: ctx.lm.params().numel(),
            state_size: cfg.state_size(),
            device: cuda::device_name(device),
            precision: format!("{kind:?}"),
            ssd: Some(ssd_name),
        })?;
    } else {
        log.emit(Event::Resume { step, tokens, total_steps: total, ssd: Some(ssd_name) })?;
    }

    // A resumed job revisits the points it passed: the hook evaluates what is missing and
    // repeats an early stop that was decided before the kill.
    let mut stopped_early = None;
    for &p in ctx.eval_steps.iter().take_while(|&&p| p <= step) {
        let dir = run_dir.join(CKPT_DIR).join(rundir::checkpoint_name(p));
        if !dir.join(TRAINER_FILE).exists() {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(TRAINER_FILE)).map_err(|e| Error::io(&dir, e))?;
        let at: TrainerState = serde_json::from_str(&text).map_err(|e| Error::at(dir.join(TRAINER_FILE), e.to_string()))?;
        if on_eval(&EvalMoment { step: p, tokens: at.tokens, checkpoint: &dir }, log)? == Control::Stop {
            (step, tokens) = (p, at.tokens);
            stopped_early = Some(p);
            break;
        }
    }

    let schedule = t.schedule();
    let mut graphed = if t.cuda_graph { Some(GraphedStep::new(&ctx.lm, kind, t.grad_clip)?) } else { None };
    let mut tbptt: Option<State> = None;
    let (mut last_loss, mut interval_tokens, mut interval_start) = (f64::NAN, 0i64, Instant::now());
    cuda::reset_peak(device);
    while step < total && stopped_early.is_none() {
        if stop.load(Ordering::SeqCst) {
            let path = ctx.save(step, tokens, &sampler.state, log)?;
            log.emit(Event::Interrupted { step, checkpoint: path.display().to_string() })?;
            return Err(Error::Interrupted.into());
        }
        let lr = schedule.lr_at(step, total);
        let b = to_device(&sampler.next_batch()?, device);
        if k > 1 && step % k == 0 {
            tbptt = Some(ctx.lm.zero_state(batch, kind));
        }
        let (loss, grad_norm) = match graphed.as_mut() {
            Some(g) => Error::catch_panic(|| g.step(&ctx.lm, &mut ctx.opt, &b, lr).map(|r| r.read()))??,
            None => Error::catch_panic(|| {
                let res = train_step(&ctx.lm, &mut ctx.opt, &b, tbptt.as_mut(), kind, lr, t.grad_clip, t.micro_batch_size);
                if let Some(s) = tbptt.as_mut() {
                    *s = s.detach();
                }
                res.read()
            })?,
        };
        step += 1;
        tokens += b.tokens();
        interval_tokens += b.tokens();
        if !loss.is_finite() || !grad_norm.is_finite() {
            let msg = format!("loss {loss}, gradient norm {grad_norm} at step {step}");
            log.emit(Event::Diverged { step, loss, grad_norm })?;
            return Err(Error::Diverged(msg).into());
        }
        last_loss = loss;
        let tps = interval_tokens as f64 / interval_start.elapsed().as_secs_f64().max(1e-9);
        on_step(&StepInfo { step, total, tokens, loss, lr, tokens_per_s: tps });
        if step % t.log_every == 0 || step == total {
            let mem_gb = cuda::peak_memory_bytes(device) as f64 / 1e9;
            log.emit(Event::Train { step, tokens, loss, lr, grad_norm, tokens_per_s: tps, mem_gb })?;
            interval_tokens = 0;
            interval_start = Instant::now();
        }
        if t.val_every > 0 && step % t.val_every == 0 && step < total {
            if let Some(v) = validation(&ctx.lm, &val_batches, kind) {
                log.emit(Event::Val { step, loss: v, tokens })?;
            }
        }
        let at_point = ctx.eval_steps.binary_search(&step).is_ok();
        if (at_point || t.checkpoint_every > 0 && step % t.checkpoint_every == 0 && step % k == 0) && step < total {
            let dir = ctx.save(step, tokens, &sampler.state, log)?;
            if at_point && on_eval(&EvalMoment { step, tokens, checkpoint: &dir }, log)? == Control::Stop {
                stopped_early = Some(step);
            }
        }
    }
    let at_step = |dir: &PathBuf| dir.ends_with(rundir::checkpoint_name(step));
    // The model in memory is that of the latest checkpoint: an early stop replayed on a resume
    // at an earlier point (only if the job's history is unusual) has no validation loss here.
    let val_loss = match latest_checkpoint(run_dir) {
        Some(dir) if stopped_early.is_some() && !at_step(&dir) => None,
        _ => validation(&ctx.lm, &val_batches, kind),
    };
    if let Some(v) = val_loss {
        log.emit(Event::Val { step, loss: v, tokens })?;
    }
    let checkpoint = match latest_checkpoint(run_dir) {
        Some(dir) if at_step(&dir) => dir,
        _ if stopped_early.is_some() => run_dir.join(CKPT_DIR).join(rundir::checkpoint_name(step)),
        _ => ctx.save(step, tokens, &sampler.state, log)?,
    };
    Ok(TrainOutcome {
        steps: step,
        tokens,
        final_loss: last_loss,
        val_loss,
        wall_s: started.elapsed().as_secs_f64(),
        checkpoint,
        resumed_from,
        stopped_early,
    })
}
