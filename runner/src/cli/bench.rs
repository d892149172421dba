//! `stuffed bench ...`: speed and memory benchmarks (targets live here, not in timed tests).
use anyhow::Context;
use stuffed_model::bench;
use stuffed_model::ssd::SsdBackend;

use super::common::{device, print_json, ModelSource, Precision};
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// A full training step (forward, backward, clip, AdamW) timed after warm-up.
    Train(TrainArgs),
    /// Streaming loss-by-position over a long input (memory bounded by the chunk).
    Eval(EvalArgs),
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
    #[arg(long, default_value = "auto")]
    device: String,
    /// Compute precision (default: bf16 on a GPU, fp32 on the CPU).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// SSD backends to run, side by side (comma-separated: tensor, fused).
    #[arg(long, value_delimiter = ',', default_value = "tensor,fused")]
    compare: Vec<SsdBackend>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl EvalArgs {
    fn run(self) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let prec = self.precision.unwrap_or(Precision::default_for(dev));
        let cfg = self.source.config()?;
        let mut runs = Vec::new();
        for b in backends(&self.compare, dev) {
            let r = bench::eval(&cfg, self.len, self.batch, self.chunk, dev, prec.kind(), b)?;
            if self.format == Format::Text {
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
        let ratio = ratio(runs.iter().map(|r| (r.ssd.as_str(), r.tokens_per_s)));
        finish(self.format, &runs, ratio)
    }
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
    /// auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Compute precision (default: bf16 on a GPU, fp32 on the CPU).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// SSD backends to run, side by side (comma-separated: tensor, fused).
    #[arg(long, value_delimiter = ',', default_value = "tensor,fused")]
    compare: Vec<SsdBackend>,
    /// Also profile two steps per backend: per-operator device time, written to
    /// DIR/train-<backend>.tsv (the top operators are printed).
    #[arg(long, value_name = "DIR")]
    profile: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Train(a) => a.run(),
            Command::Eval(a) => a.run(),
        }
    }
}

impl TrainArgs {
    fn run(self) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let prec = self.precision.unwrap_or(Precision::default_for(dev));
        let cfg = self.source.config()?;
        let mut runs = Vec::new();
        for b in backends(&self.compare, dev) {
            let prof = match &self.profile {
                Some(dir) => {
                    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                    Some(dir.join(format!("train-{}.tsv", b.name())))
                }
                None => None,
            };
            let r = bench::train(&cfg, self.batch, self.seq, self.steps, self.warmup, dev, prec.kind(), b, prof.as_deref())?;
            if self.format == Format::Text {
                println!(
                    "train [{:>6}] {} x {} on {}{} ({}): {:.0} tokens/s, {:.1} ms/step, {:.1} model TFLOP/s{}, peak memory {:.2} GB",
                    r.ssd,
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
            }
            if let (Some(p), Format::Text) = (&prof, self.format) {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                println!("  profile of 2 steps ({}), top operators by self device time:", p.display());
                for line in text.lines().take(16) {
                    println!("    {line}");
                }
            }
            runs.push(r);
        }
        let ratio = ratio(runs.iter().map(|r| (r.ssd.as_str(), r.tokens_per_s)));
        finish(self.format, &runs, ratio)
    }
}
