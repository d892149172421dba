//! `stuffed bench ...`: speed and memory benchmarks (targets live here, not in timed tests).
use anyhow::Context;
use stuffed_model::bench;
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
    /// The standard set (training 130m 8 x 2048, small 32 x 2048, tiny 64 x 1024; 1M-token
    /// streamed evaluation of 130m), every SSD backend, against the mamba_ssm anchors, written
    /// as one JSON record (provenance, GPU, date).
    Suite(SuiteArgs),
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
        }
    }
}

impl TrainArgs {
    fn run(self) -> anyhow::Result<i32> {
        let (dev, prec) = self.target.resolve()?;
        let cfg = self.source.config()?;
        let shape = TrainShape { batch: self.batch, seq: self.seq, steps: self.steps, warmup: self.warmup };
        let profile = self.profile.as_ref().map(|dir| (dir.as_path(), "train"));
        let runs: Vec<_> = train_runs(&cfg, shape, dev, prec, &self.target.compare, profile, self.format == Format::Text)?
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        let ratio = ratio(runs.iter().map(|r| (r.ssd.as_str(), r.tokens_per_s)));
        finish(self.format, &runs, ratio)
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct TrainShape {
    batch: i64,
    seq: i64,
    steps: i64,
    warmup: i64,
}

/// One timed training benchmark per backend, each printed as it ends when `print`; with
/// `profile` = (DIR, stem), two more steps per backend are profiled into DIR/stem-<backend>.tsv
/// (the path returned beside the run).
fn train_runs(
    cfg: &stuffed_model::MambaConfig,
    shape: TrainShape,
    dev: tch::Device,
    prec: Precision,
    compare: &[SsdBackend],
    profile: Option<(&std::path::Path, &str)>,
    print: bool,
) -> anyhow::Result<Vec<(bench::TrainBench, Option<std::path::PathBuf>)>> {
    let mut runs = Vec::new();
    for b in backends(compare, dev) {
        let prof = match profile {
            Some((dir, stem)) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                Some(dir.join(format!("{stem}-{}.tsv", b.name())))
            }
            None => None,
        };
        let TrainShape { batch, seq, steps, warmup } = shape;
        let r = bench::train(cfg, batch, seq, steps, warmup, dev, prec.kind(dev), b, prof.as_deref())?;
        if print {
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

/// A case of the standard set and what mamba_ssm reached on it (`shared/bench/README.md`:
/// one H200, torch 2.11.0+cu130, Triton SSD kernels, bf16 autocast, fused AdamW).
struct Case {
    name: &'static str,
    preset: &'static str,
    /// Training: batch x seq; evaluation: batch x len, streamed in chunks of `chunk`.
    batch: i64,
    len: i64,
    chunk: Option<i64>,
    anchor: Option<Anchor>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Anchor {
    what: &'static str,
    tokens_per_s: f64,
    peak_memory_gb: Option<f64>,
}

const H200_TRITON: &str = "mamba_ssm Triton SSD, one NVIDIA H200, same shape";

const CASES: &[Case] = &[
    Case {
        name: "train-130m",
        preset: "130m",
        batch: 8,
        len: 2048,
        chunk: None,
        anchor: Some(Anchor { what: H200_TRITON, tokens_per_s: 106_353.0, peak_memory_gb: Some(23.2) }),
    },
    Case {
        name: "train-130m-long",
        preset: "130m",
        batch: 2,
        len: 8192,
        chunk: None,
        anchor: Some(Anchor { what: H200_TRITON, tokens_per_s: 94_975.0, peak_memory_gb: None }),
    },
    Case {
        name: "train-small",
        preset: "small",
        batch: 32,
        len: 2048,
        chunk: None,
        anchor: Some(Anchor { what: H200_TRITON, tokens_per_s: 2_186_948.0, peak_memory_gb: Some(3.1) }),
    },
    Case {
        name: "train-small-long",
        preset: "small",
        batch: 4,
        len: 16384,
        chunk: None,
        anchor: Some(Anchor { what: H200_TRITON, tokens_per_s: 2_119_319.0, peak_memory_gb: None }),
    },
    Case {
        name: "train-tiny",
        preset: "tiny",
        batch: 64,
        len: 1024,
        chunk: None,
        anchor: Some(Anchor { what: H200_TRITON, tokens_per_s: 4_570_852.0, peak_memory_gb: Some(1.1) }),
    },
    Case {
        name: "eval-130m",
        preset: "130m",
        batch: 1,
        len: 1_048_576,
        chunk: Some(16384),
        // Not the same shape: mamba_ssm's forward over 1 x 524,288 tokens in ONE call (memory
        // grows with the length); ours streams twice as many tokens in bounded memory.
        anchor: Some(Anchor {
            what: "mamba_ssm Triton forward, 1 x 524,288 tokens in one call, one NVIDIA H200",
            tokens_per_s: 465_932.0,
            peak_memory_gb: Some(56.3),
        }),
    },
];

const DEFAULT_CASES: &str = "train-130m,train-small,train-tiny,eval-130m";

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// Cases to run (comma-separated): train-130m, train-130m-long, train-small,
    /// train-small-long, train-tiny, eval-130m.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CASES)]
    only: Vec<String>,
    /// Write the record (JSON) to FILE; without it, the record goes to stdout after the table.
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
    /// Also profile two steps per training case and backend: DIR/<case>-<backend>.tsv.
    #[arg(long, value_name = "DIR")]
    profile: Option<std::path::PathBuf>,
    /// Timed steps per training case.
    #[arg(long, default_value_t = 10)]
    steps: i64,
    /// Untimed warm-up steps per training case.
    #[arg(long, default_value_t = 3)]
    warmup: i64,
    /// Override the batch of every case (the anchors then no longer apply: not compared).
    #[arg(long)]
    batch: Option<i64>,
    /// Override the training length and the evaluated length of every case (anchors not
    /// compared).
    #[arg(long)]
    len: Option<i64>,
    #[command(flatten)]
    target: Target,
}

/// One case of a suite record.
#[derive(Debug, serde::Serialize)]
struct CaseRecord {
    case: &'static str,
    preset: &'static str,
    batch: i64,
    /// Training length or evaluated length.
    len: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunk: Option<i64>,
    runs: Vec<serde_json::Value>,
    fused_over_tensor: Option<f64>,
    /// The reference figure; `best_over_anchor` only when the case ran at its standard shape
    /// (not with --batch or --len).
    anchor: Option<Anchor>,
    best_over_anchor: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<String>,
}

impl SuiteArgs {
    fn cases(&self) -> anyhow::Result<Vec<&'static Case>> {
        let names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        let mut out: Vec<&'static Case> = Vec::new();
        for name in &self.only {
            let case = CASES
                .iter()
                .find(|c| c.name == name.trim())
                .with_context(|| format!("--only: unknown case '{name}' (expected one of: {})", names.join(", ")))?;
            if !out.iter().any(|c| c.name == case.name) {
                out.push(case);
            }
        }
        anyhow::ensure!(!out.is_empty(), "--only: no case given (expected some of: {})", names.join(", "));
        Ok(out)
    }

    fn run(self) -> anyhow::Result<i32> {
        let cases = self.cases()?;
        anyhow::ensure!(self.steps >= 1, "--steps: expected at least 1, got {}", self.steps);
        anyhow::ensure!(self.warmup >= 0, "--warmup: expected 0 or more, got {}", self.warmup);
        for (flag, v) in [("--batch", self.batch), ("--len", self.len)] {
            if let Some(v) = v {
                anyhow::ensure!(v >= 1, "{flag}: expected at least 1, got {v}");
            }
        }
        if let Some(out) = &self.out {
            // Fail before hours of benchmarks, not after.
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let (dev, prec) = self.target.resolve()?;
        let mut records = Vec::new();
        for case in cases {
            let cfg = stuffed_model::MambaConfig::preset(case.preset)?;
            let (batch, len) = (self.batch.unwrap_or(case.batch), self.len.unwrap_or(case.len));
            let at_anchor_shape = batch == case.batch && len == case.len;
            println!("== {} ({} {} x {})", case.name, case.preset, batch, len);
            let (runs, profiles) = match case.chunk {
                None => {
                    let shape = TrainShape { batch, seq: len, steps: self.steps, warmup: self.warmup };
                    let profile = self.profile.as_ref().map(|d| (d.as_path(), case.name));
                    let mut runs = Vec::new();
                    let mut profiles = Vec::new();
                    for (r, prof) in train_runs(&cfg, shape, dev, prec, &self.target.compare, profile, true)? {
                        runs.push(serde_json::to_value(r)?);
                        profiles.extend(prof.map(|p| p.display().to_string()));
                    }
                    (runs, profiles)
                }
                Some(chunk) => {
                    let runs = eval_runs(&cfg, len, batch, chunk, dev, prec, &self.target.compare, true)?;
                    (runs.into_iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?, Vec::new())
                }
            };
            // Both kinds of run carry "ssd" and "tokens_per_s".
            let tps: Vec<(&str, f64)> = runs.iter().filter_map(|r| Some((r["ssd"].as_str()?, r["tokens_per_s"].as_f64()?))).collect();
            let best = tps.iter().map(|&(_, t)| t).reduce(f64::max);
            let fused_over_tensor = ratio(tps.iter().copied());
            let best_over_anchor = match (case.anchor, best) {
                (Some(a), Some(b)) if at_anchor_shape => Some(b / a.tokens_per_s),
                _ => None,
            };
            if let (Some(a), Some(r)) = (case.anchor, best_over_anchor) {
                println!("  best / anchor: {:.2}x ({:.0} tokens/s: {})", r, a.tokens_per_s, a.what);
            }
            records.push(CaseRecord {
                case: case.name,
                preset: case.preset,
                batch,
                len,
                chunk: case.chunk,
                runs,
                fused_over_tensor,
                anchor: case.anchor,
                best_over_anchor,
                profiles,
            });
        }
        let gpu = match dev {
            tch::Device::Cuda(i) => stuffed_model::cuda::gpu_info(i).ok().map(|g| g.name),
            _ => None,
        };
        let record = serde_json::json!({
            "stuffed": crate::version::provenance(),
            "date": crate::store::now(),
            "device": stuffed_model::cuda::device_name(dev),
            "gpu": gpu,
            "precision": prec.as_str(),
            "steps": self.steps,
            "warmup": self.warmup,
            "cases": records,
        });
        match &self.out {
            Some(out) => {
                stuffed_model::checkpoint::write_json_atomic(out, &record)?;
                println!("record: {}", out.display());
            }
            None => print_json(&record)?,
        }
        Ok(0)
    }
}
