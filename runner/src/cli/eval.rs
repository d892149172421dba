//! `stuffed eval ...`: the study's evaluations on any checkpoint (or a preset's random init).
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use stuffed_model::data::probes;
use stuffed_model::eval::{loss, LossEval, Mitigation};
use stuffed_model::ssd::SsdBackend;
use stuffed_model::Tokenizer;

use super::common::{device, print_json, ModelSource, Precision};
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Loss by token position on long inputs, streamed with the carried state, and the
    /// state-collapse verdict.
    Loss(LossArgs),
    /// Passkey retrieval accuracy over a grid of lengths x depths, and T_recall.
    Passkey(PasskeyArgs),
    /// State diagnostics over position: state mean/variance/RMS per head, first-token
    /// retention, dt/B/x means, a histogram of one head's state channels.
    States(StatesArgs),
}

impl Command {
    /// Runs the evaluation with models whose SSD is `ssd` (the command line's `--ssd`).
    pub fn run(self, ssd: SsdBackend) -> anyhow::Result<i32> {
        match self {
            Command::Loss(a) => a.run(ssd),
            Command::Passkey(a) => a.run(ssd),
            Command::States(a) => a.run(ssd),
        }
    }
}

/// Where the evaluation text comes from.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// A text file (its first --len + 1 tokens, or all of it).
    #[arg(long)]
    text: Option<PathBuf>,
    /// The newline probe: a long run of '\n'.
    #[arg(long)]
    newlines: bool,
    /// Held-out documents of a corpus, concatenated with EOS up to the length.
    #[arg(long)]
    corpus: Option<PathBuf>,
}

impl Source {
    /// `prompts` inputs of `len` tokens each (a text file gives one, of its own length when
    /// `len` is None).
    pub fn prompts(&self, tok: &Tokenizer, len: Option<usize>, prompts: usize) -> anyhow::Result<(Vec<Vec<u32>>, &'static str)> {
        Ok(match (&self.text, self.newlines, &self.corpus) {
            (Some(path), _, _) => (vec![probes::text_file(tok, path, len)?], "text"),
            (None, true, _) => (vec![probes::newlines(tok, len.context("--newlines needs --len")?); prompts], "newlines"),
            (None, false, Some(dir)) => {
                let c = stuffed_model::data::Corpus::open(dir)?;
                tok.check_same(&c.manifest.tokenizer, &format!("corpus {}", dir.display()))?;
                (c.val_prompts(len.context("--corpus needs --len")?, prompts)?, "corpus")
            }
            _ => anyhow::bail!("give --text FILE, --newlines or --corpus DIR"),
        })
    }

    pub fn path(&self) -> Option<&PathBuf> {
        self.text.as_ref().or(self.corpus.as_ref())
    }
}

#[derive(Debug, clap::Args)]
pub struct LossArgs {
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    source: Source,
    /// Tokenizer: bytes, gpt2 or hf:PATH (default: the checkpoint's, else bytes).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Positions to score (default: the whole text file).
    #[arg(long)]
    len: Option<usize>,
    /// Prompts averaged (newlines and corpus sources).
    #[arg(long, default_value_t = 1)]
    prompts: usize,
    /// Prompts per forward batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per streamed forward call.
    #[arg(long, default_value_t = 4096)]
    chunk: i64,
    /// Bucket width of the reported curve.
    #[arg(long, default_value_t = 256)]
    bucket: i64,
    /// Training length of the model, for the collapse verdict.
    #[arg(long)]
    train_len: Option<i64>,
    /// none, rri[:decay=0.9999,b=0.75], dt-scale[:c=0.5], state-norm[:tau=auto,every=128], sliding-window:r=N.
    #[arg(long, default_value = "none")]
    mitigation: String,
    /// Compute precision (the paper's analyses run in fp32).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    /// auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print every position's loss instead of buckets.
    #[arg(long)]
    per_token: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Also write the JSON result to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The tokenizer to use with a model: the flag, else the checkpoint's, else bytes; a flag that
/// contradicts the checkpoint is an error.
pub fn resolve_tokenizer(flag: Option<&str>, meta: &stuffed_model::checkpoint::CheckpointMeta) -> anyhow::Result<Tokenizer> {
    let tok = Tokenizer::from_spec(flag.or(meta.tokenizer.as_deref()).unwrap_or("bytes"))?;
    if let Some(recorded) = &meta.tokenizer {
        tok.check_same(recorded, "the checkpoint")?;
    }
    Ok(tok)
}

impl LossArgs {
    fn run(self, ssd: SsdBackend) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let mitigation: Mitigation = self.mitigation.parse()?;
        let (lm, meta) = self.model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let (prompts, source) = self.source.prompts(&tok, self.len.map(|n| n + 1), self.prompts)?;
        let cfg = LossEval {
            chunk: self.chunk,
            bucket: self.bucket,
            batch: self.batch,
            train_len: self.train_len,
            kind: self.precision.kind(),
            mitigation: mitigation.clone(),
            per_token: self.per_token,
        };
        let curve = loss::run(&lm, &prompts, &cfg)?;
        let result = if self.per_token {
            json!({"tokens": curve.tokens, "mean_loss": curve.mean_loss, "losses": curve.per_token})
        } else {
            json!({
                "kind": "loss",
                "params": {"source": source, "path": self.source.path(), "len": curve.tokens / prompts.len() as i64, "prompts": prompts.len(),
                           "chunk": self.chunk, "bucket": self.bucket, "train_len": self.train_len,
                           "mitigation": mitigation.to_string(), "precision": format!("{:?}", self.precision).to_lowercase(),
                           "device": stuffed_model::cuda::device_name(dev)},
                "buckets": curve.buckets, "collapse": curve.collapse, "mean_loss": curve.mean_loss,
                "tokens": curve.tokens, "wall_s": curve.wall_s, "tokens_per_s": curve.tokens_per_s,
            })
        };
        if let Some(out) = &self.out {
            std::fs::write(out, serde_json::to_string_pretty(&result)? + "\n").with_context(|| format!("writing {}", out.display()))?;
        }
        match self.format {
            Format::Json => print_json(&result)?,
            Format::Text => print_loss_text(&curve),
        }
        Ok(0)
    }
}

fn print_loss_text(c: &loss::LossCurve) {
    if let Some(per) = &c.per_token {
        for (i, l) in per.iter().enumerate() {
            println!("{i}\t{l:.6}");
        }
    } else {
        println!("{:>10} {:>10} {:>9}", "start", "end", "loss");
        for b in &c.buckets {
            println!("{:>10} {:>10} {:>9.4}", b.start, b.end, b.loss);
        }
    }
    println!("mean loss {:.4} over {} tokens ({:.0} tokens/s)", c.mean_loss, c.tokens, c.tokens_per_s);
    if let Some(v) = &c.collapse {
        match v.collapsed {
            Some(true) => println!(
                "state collapse: YES, first at position {} (loss > 2 x {:.3} seen within {} tokens)",
                v.first_position.unwrap_or(-1),
                v.max_within_train.unwrap_or(f64::NAN),
                v.train_len
            ),
            Some(false) => println!("state collapse: no (worst ratio {:.2} of the in-training maximum)", v.worst_ratio.unwrap_or(f64::NAN)),
            None => println!("state collapse: undetermined (no bucket fits within train_len {})", v.train_len),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PasskeyArgs {
    #[command(flatten)]
    model: ModelSource,
    /// Tokenizer: bytes, gpt2 or hf:PATH (default: the checkpoint's, else bytes).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Prompt lengths in tokens, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    lengths: Vec<i64>,
    /// Number of evenly spaced depths d_i = (i + 0.5) / n.
    #[arg(long, default_value_t = 5)]
    depths: usize,
    /// Prompts per (length, depth) cell.
    #[arg(long, default_value_t = 8)]
    n: i64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Prompts per forward batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Training length of the model (state-norm calibration).
    #[arg(long)]
    train_len: Option<i64>,
    /// Mitigation (see `eval loss --help`).
    #[arg(long, default_value = "none")]
    mitigation: String,
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Also write the JSON result to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl PasskeyArgs {
    fn run(self, ssd: SsdBackend) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let mitigation: Mitigation = self.mitigation.parse()?;
        let (lm, meta) = self.model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let depths: Vec<f64> = (0..self.depths).map(|i| (i as f64 + 0.5) / self.depths as f64).collect();
        let answer_tokens = tok.encode(" 12345").len() + 2;
        let cfg = stuffed_model::eval::PasskeyEval {
            lengths: self.lengths.clone(),
            depths: depths.clone(),
            n: self.n,
            seed: self.seed,
            kind: self.precision.kind(),
            mitigation: mitigation.clone(),
            answer_tokens,
            batch: self.batch,
            chunk: 4096,
            train_len: self.train_len,
        };
        let r = stuffed_model::eval::passkey::run(&lm, &tok, &cfg)?;
        let result = json!({
            "kind": "passkey",
            "params": {"lengths": self.lengths, "depths": depths, "n": self.n, "seed": self.seed,
                       "mitigation": mitigation.to_string(), "precision": format!("{:?}", self.precision).to_lowercase(),
                       "answer_tokens": answer_tokens},
            "cells": r.cells, "accuracy_by_len": r.accuracy_by_len, "t_recall": r.t_recall,
            "t_recall_per_depth": r.t_recall_per_depth, "wall_s": r.wall_s, "tokens_per_s": r.tokens_per_s,
        });
        if let Some(out) = &self.out {
            std::fs::write(out, serde_json::to_string_pretty(&result)? + "\n").with_context(|| format!("writing {}", out.display()))?;
        }
        match self.format {
            Format::Json => print_json(&result)?,
            Format::Text => {
                print!("{:>10}", "len \\ depth");
                for d in &depths {
                    print!(" {d:>6.2}");
                }
                println!();
                for &len in &self.lengths {
                    print!("{len:>11}");
                    for c in r.cells.iter().filter(|c| c.len == len) {
                        print!(" {:>6.2}", c.accuracy);
                    }
                    println!();
                }
                match r.t_recall {
                    Some(t) => println!("T_recall = {t} tokens (accuracy > 0.95 at every depth)"),
                    None => println!("T_recall: no length reaches accuracy > 0.95 at every depth"),
                }
                for d in &r.t_recall_per_depth {
                    println!("  depth {:.2}: T_recall {}", d.depth, d.t_recall.map_or("-".into(), |t| t.to_string()));
                }
            }
        }
        Ok(0)
    }
}

#[derive(Debug, clap::Args)]
pub struct StatesArgs {
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    source: Source,
    #[arg(long)]
    tokenizer: Option<String>,
    /// Positions streamed.
    #[arg(long)]
    len: Option<usize>,
    #[arg(long, default_value_t = 1)]
    prompts: usize,
    /// Position bucket (statistics are taken at each bucket's end).
    #[arg(long, default_value_t = 128)]
    bucket: i64,
    /// Layer and head of the state-channel histogram.
    #[arg(long, default_value_t = 0)]
    hist_layer: i64,
    #[arg(long, default_value_t = 0)]
    hist_head: i64,
    /// Positions of the histograms, comma-separated (default: the last one).
    #[arg(long, value_delimiter = ',')]
    hist_positions: Vec<i64>,
    #[arg(long)]
    train_len: Option<i64>,
    #[arg(long, default_value = "none")]
    mitigation: String,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Write the JSON result here (it is large); a summary is printed.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl StatesArgs {
    fn run(self, ssd: SsdBackend) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let mitigation: Mitigation = self.mitigation.parse()?;
        let (lm, meta) = self.model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let (prompts, source) = self.source.prompts(&tok, self.len, self.prompts)?;
        let n = prompts[0].len() as i64;
        let hist_positions = if self.hist_positions.is_empty() { vec![n] } else { self.hist_positions.clone() };
        let cfg = stuffed_model::eval::StatesEval {
            bucket: self.bucket,
            kind: tch::Kind::Float,
            mitigation: mitigation.clone(),
            hist_layer: self.hist_layer,
            hist_head: self.hist_head,
            hist_positions: hist_positions.clone(),
            hist_bins: 41,
            train_len: self.train_len,
        };
        let r = stuffed_model::eval::states::run(&lm, &prompts, &cfg)?;
        let result = json!({
            "kind": "states",
            "params": {"len": n, "bucket": self.bucket, "source": source, "prompts": prompts.len(),
                       "mitigation": mitigation.to_string(), "hist_layer": self.hist_layer, "hist_head": self.hist_head,
                       "hist_positions": hist_positions, "train_len": self.train_len},
            "positions": r.positions, "layers": r.layers, "histogram": r.histogram, "wall_s": r.wall_s,
        });
        if let Some(out) = &self.out {
            std::fs::write(out, serde_json::to_string(&result)? + "\n").with_context(|| format!("writing {}", out.display()))?;
        }
        match self.format {
            Format::Json => print_json(&result)?,
            Format::Text => {
                println!("state variance per head at the last position ({} positions, bucket {}):", n, self.bucket);
                for l in &r.layers {
                    let vars: Vec<String> = l.heads.iter().map(|h| format!("{:.3e}", h.state_var.last().copied().unwrap_or(f64::NAN))).collect();
                    println!("  layer {:>2}: {}", l.layer, vars.join(" "));
                }
                if let Some(h) = r.layers.first().and_then(|l| l.heads.first()) {
                    println!("first-token log retention, layer 0 head 0, at the end: {:.3}", h.log_retention.last().copied().unwrap_or(0.0));
                }
            }
        }
        Ok(0)
    }
}
