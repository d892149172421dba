//! `stuffed eval ...`: the study's evaluations on any checkpoint (or a preset's random init).
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use stuffed_model::data::probes;
use stuffed_model::eval::{loss, LossEval, Mitigation};
use stuffed_model::Tokenizer;

use super::common::{device, print_json, ModelSource, Precision};
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Loss by token position on long inputs, streamed with the carried state, and the
    /// state-collapse verdict.
    Loss(LossArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Loss(a) => a.run(),
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
    fn run(self) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let mitigation: Mitigation = self.mitigation.parse()?;
        let (lm, meta) = self.model.load(dev)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let (prompt, source) = match (&self.source.text, self.source.newlines) {
            (Some(path), _) => (probes::text_file(&tok, path, self.len.map(|n| n + 1))?, "text"),
            (None, true) => {
                let n = self.len.context("--newlines needs --len")?;
                (probes::newlines(&tok, n + 1), "newlines")
            }
            _ => unreachable!("clap requires one source"),
        };
        let cfg = LossEval {
            chunk: self.chunk,
            bucket: self.bucket,
            batch: 1,
            train_len: self.train_len,
            kind: self.precision.kind(),
            mitigation: mitigation.clone(),
            per_token: self.per_token,
        };
        let curve = loss::run(&lm, &[prompt], &cfg)?;
        let result = if self.per_token {
            json!({"tokens": curve.tokens, "mean_loss": curve.mean_loss, "losses": curve.per_token})
        } else {
            json!({
                "kind": "loss",
                "params": {"source": source, "path": self.source.text, "len": curve.tokens, "prompts": 1,
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
