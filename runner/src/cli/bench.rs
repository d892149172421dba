//! `stuffed bench ...`: speed and memory benchmarks (targets live here, not in timed tests).
//! `train` and `eval` time one shape; `suite` (bench/suite.rs) runs the standard cases, with
//! mamba_ssm measured in the same invocation (bench/anchor.rs); `pack` (bench/pack.rs) measures
//! what several training jobs on one GPU deliver together; `lossmatch` (bench/lossmatch.rs)
//! whether a run's loss curve follows a reference run's.
mod anchor;
mod lossmatch;
mod pack;
mod suite;

use anyhow::Context;
use stuffed_model::bench::{self, TrainOpts, TrainShape};
use stuffed_model::ssd::SsdBackend;

use stuffed_model::protocol::Precision;
use stuffed_model::train::PrecisionExt;

use super::common::{device, print_json, ModelSource};
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A full training step (forward, backward, clip, AdamW) timed after warm-up.
    Train(TrainArgs),
    /// Streaming loss-by-position over a long input (memory bounded by the chunk).
    Eval(EvalArgs),
    /// The standard set (training 130m 8 x 2048, small 32 x 2048, tiny 64 x 1024, the study
    /// shape at 256 x 128 and 16 x 2048; 1M-token streamed evaluation of 130m), every SSD
    /// backend, with mamba_ssm's Triton model measured in the same run (`--anchor`), written as
    /// one JSON record (provenance, GPU, date, same-run ratios, MFU).
    Suite(suite::SuiteArgs),
    /// Aggregate training throughput of 1, 2, 4, 8 ... copies of one case packed on one GPU
    /// (separate processes timing the same window), optionally under CUDA MPS.
    Pack(pack::PackArgs),
    /// Whether a training run's loss curve follows a reference run's (same config, data and
    /// seed; another backend or kernel): window means of the steps both logged, exit 1 beyond
    /// --tolerance.
    Lossmatch(lossmatch::LossMatchArgs),
}

/// Where and how every bench command runs.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Compute precision (default: bf16 on a GPU, fp32 on the CPU).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// SSD backends to run, side by side (comma-separated: tensor, fused).
    #[arg(long, value_delimiter = ',', default_value = "tensor,fused")]
    compare: Vec<SsdBackend>,
    /// Training steps as one CUDA graph each: off, on, or both side by side (on a CUDA device;
    /// ignored elsewhere and by `bench eval`).
    #[arg(long, value_enum, default_value_t = GraphMode::Both)]
    graph: GraphMode,
}

/// Whether the training benchmarks run eagerly, as CUDA graphs, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphMode {
    Off,
    On,
    Both,
}

impl GraphMode {
    /// The runs on `dev`: eager and/or graphed (graphs only on CUDA).
    fn runs(self, dev: tch::Device) -> Vec<bool> {
        match (self, dev.is_cuda()) {
            (_, false) | (GraphMode::Off, true) => vec![false],
            (GraphMode::On, true) => vec![true],
            (GraphMode::Both, true) => vec![false, true],
        }
    }
}

impl Target {
    fn resolve(&self) -> anyhow::Result<(tch::Device, Precision)> {
        let dev = device(&self.device)?;
        Ok((dev, self.precision.unwrap_or(Precision::Auto).resolve(dev)))
    }
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 1_048_576)]
    len: i64,
    /// Sequences side by side.
    #[arg(long, default_value_t = 1)]
    batch: i64,
    /// Tokens per streamed forward call.
    #[arg(long, default_value_t = 16384)]
    chunk: i64,
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl EvalArgs {
    fn run(self) -> anyhow::Result<i32> {
        let (dev, prec) = self.target.resolve()?;
        let cfg = self.source.config()?;
        let runs = eval_runs(&cfg, self.len, self.batch, self.chunk, dev, prec, &self.target.compare, self.format == Format::Text)?;
        let ratio = ratio(runs.iter().map(|r| (r.ssd.as_str(), r.tokens_per_s)));
        finish(self.format, &runs, ratio)
    }
}

/// One streamed evaluation per backend, each printed as it ends when `print`.
#[allow(clippy::too_many_arguments)]
fn eval_runs(
    cfg: &stuffed_model::MambaConfig,
    len: i64,
    batch: i64,
    chunk: i64,
    dev: tch::Device,
    prec: Precision,
    compare: &[SsdBackend],
    print: bool,
) -> anyhow::Result<Vec<bench::EvalBench>> {
    let mut runs = Vec::new();
    for b in backends(compare, dev) {
        let r = bench::eval(cfg, len, batch, chunk, dev, prec.kind(dev), b)?;
        if print {
            println!(
                "eval [{:>6}] {} x {} (chunk {}) on {}{} ({}): {:.0} tokens/s, {:.1}s, peak memory {:.2} GB",
                r.ssd,
                r.batch,
                r.len,
                r.chunk,
                r.device,
                r.gpu.as_ref().map(|g| format!(" [{g}]")).unwrap_or_default(),
                r.precision,
                r.tokens_per_s,
                r.wall_s,
                r.peak_memory_gb
            );
        }
        runs.push(r);
    }
    Ok(runs)
}

/// The backends to compare on `dev`: as asked, except `fused` where its kernels cannot load
/// (said on stderr).
fn backends(asked: &[SsdBackend], dev: tch::Device) -> Vec<SsdBackend> {
    let mut out = Vec::new();
    for &b in asked {
        match b.resolve(dev) {
            Ok(r) if !out.contains(&r) => out.push(r),
            Ok(_) => {}
            Err(e) => eprintln!("skipping {}: {e}", b.name()),
        }
    }
    out
}

/// Writes a benchmark record to `out` (atomically), or prints it without one.
fn write_record(out: Option<&std::path::Path>, record: &serde_json::Value) -> anyhow::Result<()> {
    match out {
        Some(out) => {
            stuffed_model::checkpoint::write_json_atomic(out, record)?;
            println!("record: {}", out.display());
        }
        None => print_json(record)?,
    }
    Ok(())
}

/// Throughput of `fused` over `tensor`, when both ran.
fn ratio<'a>(runs: impl Iterator<Item = (&'a str, f64)> + Clone) -> Option<f64> {
    let of = |name: &str| runs.clone().find(|(n, _)| *n == name).map(|(_, v)| v);
    Some(of("fused")? / of("tensor")?)
}

/// JSON: {"runs": [...], "fused_over_tensor": ratio}; text: the ratio line.
fn finish<T: serde::Serialize>(format: Format, runs: &[T], ratio: Option<f64>) -> anyhow::Result<i32> {
    match format {
        Format::Json => print_json(&serde_json::json!({"runs": runs, "fused_over_tensor": ratio}))?,
        Format::Text => {
            if let Some(r) = ratio {
                println!("fused / tensor: {r:.2}x tokens/s");
            }
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    batch: i64,
    /// Sequence length.
    #[arg(long, default_value_t = 2048)]
    seq: i64,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: i64,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: i64,
    #[command(flatten)]
    target: Target,
    /// Also profile two steps per backend: per-operator device time, written to
    /// DIR/train-<backend>.tsv (the top operators are printed).
    #[arg(long, value_name = "DIR")]
    profile: Option<std::path::PathBuf>,
    /// Start the timed steps at this time (seconds since the Unix epoch), after the warm-up:
    /// how `bench pack` lines up the windows of its packed processes.
    #[arg(long, hide = true)]
    start_at: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Train(a) => a.run(),
            Command::Eval(a) => a.run(),
            Command::Suite(a) => a.run(),
            Command::Pack(a) => a.run(),
            Command::Lossmatch(a) => a.run(),
        }
    }
}

impl TrainArgs {
    fn run(self) -> anyhow::Result<i32> {
        let (dev, prec) = self.target.resolve()?;
        let cfg = self.source.config()?;
        anyhow::ensure!(
            self.batch >= 1 && self.seq >= 1 && self.steps >= 1 && self.warmup >= 0,
            "--batch, --seq, --steps: expected at least 1; --warmup: 0 or more"
        );
        let shape = TrainShape { batch: self.batch, seq: self.seq, steps: self.steps, warmup: self.warmup };
        let profile = self.profile.as_ref().map(|dir| (dir.as_path(), "train"));
        let start_at = match self.start_at {
            Some(t) if t.is_finite() && t >= 0.0 => Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t)),
            Some(t) => anyhow::bail!("--start-at: expected seconds since the Unix epoch, got {t}"),
            None => None,
        };
        let runs: Vec<_> = train_runs(&cfg, shape, start_at, dev, prec, &self.target, profile, self.format == Format::Text)?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let ratio = ratio(runs.iter().filter(|r| !r.graph).map(|r| (r.ssd.as_str(), r.tokens_per_s)));
        finish(self.format, &runs, ratio)
    }
}

/// One timed training benchmark per backend, each printed as it ends when `print`; with
/// `profile` = (DIR, stem), two more steps per backend are profiled into DIR/stem-<backend>.tsv
/// (the path returned beside the run).
#[allow(clippy::too_many_arguments)]
fn train_runs(
    cfg: &stuffed_model::MambaConfig,
    shape: TrainShape,
    start_at: Option<std::time::SystemTime>,
    dev: tch::Device,
    prec: Precision,
    target: &Target,
    profile: Option<(&std::path::Path, &str)>,
    print: bool,
) -> anyhow::Result<Vec<(bench::TrainBench, Option<std::path::PathBuf>)>> {
    let mut runs = Vec::new();
    for (b, graph) in backends(&target.compare, dev).into_iter().flat_map(|b| target.graph.runs(dev).into_iter().map(move |g| (b, g))) {
        // The profile is of eager steps (a graph's kernels run outside the profiler's operators).
        let prof = match profile {
            Some((dir, stem)) if !graph => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                Some(dir.join(format!("{stem}-{}.tsv", b.name())))
            }
            _ => None,
        };
        let opts = TrainOpts { profile_to: prof.clone(), start_at, graph };
        let r = bench::train(cfg, shape, dev, prec.kind(dev), b, &opts)?;
        if print {
            println!(
                "train [{:>12}] {} x {} on {}{} ({}): {:.0} tokens/s, {:.1} ms/step, {:.1} model TFLOP/s{}, peak memory {:.2} GB",
                if r.graph { format!("{}+graph", r.ssd) } else { r.ssd.clone() },
                r.batch,
                r.seq,
                r.device,
                r.gpu.as_ref().map(|g| format!(" [{g}]")).unwrap_or_default(),
                r.precision,
                r.tokens_per_s,
                r.step_ms,
                r.model_tflops,
                r.mfu.map(|m| format!(", MFU {:.1}%", m * 100.0)).unwrap_or_default(),
                r.peak_memory_gb
            );
            let ph = &r.phases_ms;
            println!(
                "  phases: forward {:.1} ms, backward {:.1} ms, optimizer {:.1} ms; SSD forward+backward {:.1} ms",
                ph.forward, ph.backward, ph.optimizer, ph.ssd
            );
            if let Some(p) = &prof {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                println!("  profile of 2 steps ({}), top operators by self device time:", p.display());
                for line in text.lines().take(16) {
                    println!("    {line}");
                }
            }
        }
        runs.push((r, prof));
    }
    Ok(runs)
}
