//! `stuffed train`: train one job config (then run the evaluations it lists), with a progress
//! bar on a terminal and plain lines otherwise; Ctrl-C checkpoints and stops.
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use stuffed_model::train::{latest_checkpoint, JobConfig, StepInfo};

use crate::job::{run_job, JOB_FILE};
use crate::sweep::{job_with_overrides, Override};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Job config (YAML): model, tokenizer, data, train, evals.
    #[arg(long)]
    config: PathBuf,
    /// Run directory (default: results/runs/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Set a job-config key, Hydra style (repeatable): `--set train.lr=1e-3`, `--set
    /// model.d_state=64`. VALUE is YAML, checked exactly as `sweep run --set` checks it; one
    /// value per key (a list value is written [[a, b]]). The run's job.yaml records the result.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = str::parse::<Override>)]
    set: Vec<Override>,
}

/// SIGINT/SIGTERM set the flag (graceful stop: checkpoint, exit 130); a second SIGINT kills.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, crate::exit::INTERRUPTED, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// Progress reporting for a training loop: a bar on a terminal, a line per `every` steps else.
pub fn step_printer(every: i64) -> impl FnMut(&StepInfo) {
    let bar = super::progress::bar(0, "steps");
    move |s: &StepInfo| {
        if super::progress::is_terminal() {
            bar.set_length(s.total as u64);
            bar.set_position(s.step as u64);
            bar.set_message(format!("loss {:.4} lr {:.2e} {:.0} tok/s", s.loss, s.lr, s.tokens_per_s));
            if s.step == s.total {
                bar.finish_and_clear();
            }
        } else if s.step % every == 0 || s.step == s.total {
            eprintln!("step {}/{} tokens {} loss {:.4} lr {:.3e} {:.0} tok/s", s.step, s.total, s.tokens, s.loss, s.lr, s.tokens_per_s);
        }
    }
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let job = if self.set.is_empty() { JobConfig::load(&self.config)? } else { job_with_overrides(&self.config, &self.set)? };
        let name = job
            .name
            .clone()
            .unwrap_or_else(|| self.config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into()));
        let out = self.out.clone().unwrap_or_else(|| PathBuf::from("results/runs").join(name));
        if latest_checkpoint(&out).is_some() && !self.resume {
            bail!("{} already holds a run: pass --resume to continue it, or choose another --out", out.display());
        }
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join(JOB_FILE), stuffed_model::yaml::to_string(&job)?)
            .with_context(|| format!("writing {}", out.join(JOB_FILE).display()))?;
        let stop = stop_flag()?;
        let mut printer = step_printer(job.train.log_every);
        let o = run_job(&job, &out, 0, &stop, &mut printer)?;
        println!(
            "trained {} steps{} ({} tokens) in {:.1}s: final loss {:.4}{}; checkpoint {}",
            o.steps,
            if o.stopped_early.is_some() { " (stopped early)" } else { "" },
            o.tokens,
            o.wall_s,
            o.final_loss,
            o.val_loss.map(|v| format!(", validation loss {v:.4}")).unwrap_or_default(),
            o.checkpoint.display()
        );
        Ok(0)
    }
}
