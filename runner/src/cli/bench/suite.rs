//! `stuffed bench suite`: the standard cases, every SSD backend, written as one JSON record.
//! With `--anchor`, mamba_ssm's Triton model runs the same shapes in the same invocation
//! (bench/anchor.rs) and every ratio in the record is measured side by side; without it, a
//! case only names the reference figure of `shared/bench/README.md` (another day, another
//! process), with no ratio.
use anyhow::Context;
use stuffed_model::bench::TrainShape;

use super::anchor::{self, AnchorArgs, AnchorCase, AnchorKind, AnchorResult};
use super::{eval_runs, ratio, train_runs, Target};

/// A case of the standard set.
pub(super) struct Case {
    pub name: &'static str,
    pub preset: &'static str,
    /// Training: batch x seq; evaluation: batch x len, streamed in chunks of `chunk`.
    pub batch: i64,
    pub len: i64,
    pub chunk: Option<i64>,
    /// What mamba_ssm reached on this shape on another day (`shared/bench/README.md` and issue
    /// 20): context only, never divided by.
    pub reference: Option<Reference>,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct Reference {
    pub what: &'static str,
    pub tokens_per_s: f64,
}

const H200_TRITON: &str = "mamba_ssm Triton SSD, one NVIDIA H200, same shape, another day";

const fn reference(tokens_per_s: f64) -> Option<Reference> {
    Some(Reference { what: H200_TRITON, tokens_per_s })
}

pub(super) const CASES: &[Case] = &[
    Case { name: "train-130m", preset: "130m", batch: 8, len: 2048, chunk: None, reference: reference(114_483.0) },
    Case { name: "train-130m-long", preset: "130m", batch: 2, len: 8192, chunk: None, reference: reference(94_975.0) },
    Case { name: "train-small", preset: "small", batch: 32, len: 2048, chunk: None, reference: reference(2_186_948.0) },
    Case { name: "train-small-long", preset: "small", batch: 4, len: 16384, chunk: None, reference: reference(2_119_319.0) },
    Case { name: "train-tiny", preset: "tiny", batch: 64, len: 1024, chunk: None, reference: reference(4_570_852.0) },
    // The study's shape (d_model 512 x 8, d_state 256, headdim 64, bytes): the many small
    // wide-state models of the campaign, at a short and a long training length.
    Case { name: "train-study-128", preset: "study", batch: 256, len: 128, chunk: None, reference: reference(465_356.0) },
    Case { name: "train-study-2048", preset: "study", batch: 16, len: 2048, chunk: None, reference: reference(542_053.0) },
    Case {
        name: "eval-130m",
        preset: "130m",
        batch: 1,
        len: 1_048_576,
        chunk: Some(16384),
        // Not the same shape: mamba_ssm's forward over 1 x 524,288 tokens in ONE call (memory
        // grows with the length); ours streams twice as many tokens in bounded memory. The
        // same-run anchor runs that forward too.
        reference: Some(Reference {
            what: "mamba_ssm Triton forward, 1 x 524,288 tokens in one call, one NVIDIA H200, another day",
            tokens_per_s: 465_932.0,
        }),
    },
];

const DEFAULT_CASES: &str = "train-130m,train-small,train-tiny,train-study-128,train-study-2048,eval-130m";

/// The anchor's shape of an evaluation case: one call over half a million tokens.
const EVAL_ANCHOR_LEN: i64 = 524_288;

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// Cases to run (comma-separated): train-130m, train-130m-long, train-small,
    /// train-small-long, train-tiny, train-study-128, train-study-2048, eval-130m.
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
    /// Override the batch of every case (the anchor then runs the same shape).
    #[arg(long)]
    batch: Option<i64>,
    /// Override the training length and the evaluated length of every case.
    #[arg(long)]
    len: Option<i64>,
    #[command(flatten)]
    anchor: AnchorArgs,
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
    /// mamba_ssm on the same shape in this invocation (`--anchor`), and our best over it.
    anchor: Option<AnchorResult>,
    best_over_anchor: Option<f64>,
    /// Another day's figure, for context only (no ratio is taken against it).
    reference: Option<Reference>,
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

    /// A case's model, batch and length as this invocation runs it (`--batch`, `--len`).
    fn shape(&self, case: &Case) -> anyhow::Result<(stuffed_model::MambaConfig, i64, i64)> {
        let cfg = stuffed_model::MambaConfig::preset(case.preset)?;
        Ok((cfg, self.batch.unwrap_or(case.batch), self.len.unwrap_or(case.len)))
    }

    /// The shapes the anchor runs: each case as this invocation runs it.
    fn anchor_cases(&self, cases: &[&'static Case]) -> anyhow::Result<Vec<AnchorCase>> {
        cases
            .iter()
            .map(|case| {
                let (cfg, batch, len) = self.shape(case)?;
                let (kind, seq) = match case.chunk {
                    None => (AnchorKind::Train, len),
                    Some(_) => (AnchorKind::Eval, len.min(EVAL_ANCHOR_LEN)),
                };
                Ok(AnchorCase::new(case.name, kind, &cfg, batch, seq, self.steps, self.warmup))
            })
            .collect()
    }

    pub fn run(self) -> anyhow::Result<i32> {
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
        // The anchor first, in its own process, so that its memory is gone before ours starts.
        let anchors = match self.anchor.enabled() {
            true => {
                anyhow::ensure!(dev.is_cuda(), "--anchor: mamba_ssm runs on a CUDA device; this run is on {dev:?}");
                Some(anchor::run(&self.anchor, &self.anchor_cases(&cases)?)?)
            }
            false => None,
        };
        let mut records = Vec::new();
        for case in cases {
            let (cfg, batch, len) = self.shape(case)?;
            println!("== {} ({} {} x {})", case.name, case.preset, batch, len);
            let (runs, profiles) = match case.chunk {
                None => {
                    let shape = TrainShape { batch, seq: len, steps: self.steps, warmup: self.warmup };
                    let profile = self.profile.as_ref().map(|d| (d.as_path(), case.name));
                    let mut runs = Vec::new();
                    let mut profiles = Vec::new();
                    for (r, prof) in train_runs(&cfg, shape, None, dev, prec, &self.target, profile, true)? {
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
            let anchor = anchors.as_ref().and_then(|a| a.get(case.name).cloned());
            let best_over_anchor = match (&anchor, best) {
                (Some(a), Some(b)) => a.tokens_per_s.map(|t| b / t),
                _ => None,
            };
            match (&anchor, best_over_anchor) {
                (Some(a), Some(r)) => println!(
                    "  best / mamba_ssm (same run): {:.2}x ({:.0} tokens/s, best of {} repeats{}){}",
                    r,
                    a.tokens_per_s.unwrap_or(0.0),
                    a.repeats.len(),
                    a.peak_memory_gb.map(|m| format!(", peak memory {m:.2} GB")).unwrap_or_default(),
                    per_process(a, best.unwrap_or(0.0))
                ),
                (Some(a), None) => println!("  mamba_ssm (same run): no figure ({})", a.error.as_deref().unwrap_or("no run")),
                _ => {}
            }
            records.push(CaseRecord {
                case: case.name,
                preset: case.preset,
                batch,
                len,
                chunk: case.chunk,
                runs,
                fused_over_tensor,
                anchor,
                best_over_anchor,
                reference: case.reference,
                profiles,
            });
        }
        // The yardstick of the kernels' bandwidth in this run (profiles' kernel times against it).
        let copy_gb_s = stuffed_model::bench::copy_bandwidth(dev);
        if let Some(bw) = copy_gb_s {
            println!("== device copy bandwidth (libtorch copy_, 512 MiB bf16, read + written): {bw:.0} GB/s");
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
            "anchor": anchors.as_ref().map(|a| &a.meta),
            "device_copy_gb_s": copy_gb_s,
            "cases": records,
        });
        super::write_record(self.out.as_deref(), &record)?;
        Ok(0)
    }
}

/// With several anchor processes: each process's best and our ratio over it (the spread that
/// Triton's autotuning puts between processes), as "; per process: .. tokens/s, ..x to ..x".
fn per_process(a: &AnchorResult, ours: f64) -> String {
    if a.processes.len() < 2 {
        return String::new();
    }
    let figures: Vec<String> = a.processes.iter().map(|t| format!("{t:.0}")).collect();
    let lo = a.processes.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = a.processes.iter().copied().fold(0.0, f64::max);
    format!("; per process: {} tokens/s, {:.2}x to {:.2}x", figures.join(", "), ours / hi, ours / lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One anchor process: no spread to print; several: each process's best and our ratio over
    /// the fastest and the slowest.
    #[test]
    fn per_process_spread_is_printed_only_for_several_processes() {
        let mut a = AnchorResult {
            what: String::new(),
            kind: AnchorKind::Train,
            batch: 16,
            seq: 2048,
            tokens_per_s: Some(543_540.0),
            step_ms: None,
            peak_memory_gb: None,
            params: None,
            repeats: vec![541_178.0, 543_540.0],
            processes: vec![543_540.0],
            error: None,
        };
        assert_eq!(per_process(&a, 1_063_663.0), "");
        a.processes = vec![543_540.0, 464_941.0];
        assert_eq!(per_process(&a, 1_063_663.0), "; per process: 543540, 464941 tokens/s, 1.96x to 2.29x");
    }
}
