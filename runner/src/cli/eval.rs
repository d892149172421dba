//! `stuffed eval ...`: the study's evaluations on any checkpoint (or a preset's random init).
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use stuffed_model::data::probes;
use stuffed_model::eval::length_search::LengthGrid;
use stuffed_model::protocol::eval::{
    EvalResult, LengthSearch, LossParams, LossResult, PasskeyParams, SearchOutcome, SearchRange, StatesParams,
};
use stuffed_model::protocol::Precision;
use stuffed_model::ssd::SsdBackend;
use stuffed_model::Tokenizer;

use super::common::{device, print_json, ModelSource};
use super::Format;
use crate::evaluate;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Loss by token position on long inputs, streamed with the carried state, and the
    /// state-collapse verdict.
    Loss(LossArgs),
    /// Passkey retrieval accuracy over a grid of lengths x depths, and T_recall (or T_recall by
    /// bisection over a range of lengths: --search LO,HI --resolution R).
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

/// Evaluation inputs, the name of their source and, for a corpus, the shortest document taken
/// and the number of distinct documents behind them.
pub type Prompts = (Vec<Vec<u32>>, &'static str, Option<(i64, usize)>);

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
    /// Also returns the source's name and, for a corpus, the shortest document taken and the
    /// number of distinct documents behind the prompts.
    pub fn prompts(&self, tok: &Tokenizer, len: Option<usize>, prompts: usize) -> anyhow::Result<Prompts> {
        Ok(match (&self.text, self.newlines, &self.corpus) {
            (Some(path), _, _) => (vec![probes::text_file(tok, path, len)?], "text", None),
            (None, true, _) => (vec![probes::newlines(tok, len.context("--newlines needs --len")?); prompts], "newlines", None),
            (None, false, Some(dir)) => {
                let c = stuffed_model::data::Corpus::open(dir)?;
                tok.check_same(&c.manifest.tokenizer, &format!("corpus {}", dir.display()))?;
                let min_doc = c.manifest.min_doc_tokens;
                let p = c.val_prompts(len.context("--corpus needs --len")?, prompts, min_doc)?;
                (p.prompts, "corpus", Some((min_doc as i64, p.documents)))
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

/// The tokenizer to use with a model: the flag, else the checkpoint's (recorded, else likely:
/// its tokenizer.json, GPT-NeoX for the official checkpoints), else bytes; a flag that
/// contradicts the checkpoint's record is an error.
pub fn resolve_tokenizer(flag: Option<&str>, meta: &stuffed_model::checkpoint::CheckpointMeta) -> anyhow::Result<Tokenizer> {
    let spec = flag.or(meta.tokenizer.as_deref()).or(meta.tokenizer_hint.as_deref()).unwrap_or("bytes");
    let tok = Tokenizer::from_spec(spec)?;
    if let Some(recorded) = &meta.tokenizer {
        tok.check_same(recorded, "the checkpoint")?;
    }
    Ok(tok)
}

impl LossArgs {
    fn run(self, ssd: SsdBackend) -> anyhow::Result<i32> {
        let dev = device(&self.device)?;
        let (lm, meta) = self.model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let (prompts, source, docs) = self.source.prompts(&tok, self.len.map(|n| n + 1), self.prompts)?;
        let params = LossParams {
            source: source.into(),
            path: self.source.path().map(|p| p.display().to_string()),
            len: prompts.first().map_or(0, |p| p.len() as i64 - 1),
            prompts: prompts.len() as i64,
            chunk: self.chunk,
            bucket: self.bucket,
            train_len: self.train_len,
            mitigation: crate::job::canonical(&self.mitigation)?,
            precision: self.precision,
            device: Some(stuffed_model::cuda::device_name(dev)),
            min_doc_tokens: docs.map(|d| d.0),
            documents: docs.map(|d| d.1),
        };
        let pb = super::progress::bar(0, "tokens");
        let report = |done: u64, total: u64| {
            pb.set_length(total);
            pb.set_position(done);
        };
        let (result, per_token) = evaluate::loss_with_progress(&lm, &prompts, params, self.per_token, &report)?;
        pb.finish_and_clear();
        let json = match &per_token {
            Some(losses) => json!({"tokens": result.tokens, "mean_loss": result.mean_loss, "losses": losses}),
            None => serde_json::to_value(EvalResult::Loss(result.clone()))?,
        };
        if let Some(out) = &self.out {
            std::fs::write(out, serde_json::to_string_pretty(&json)? + "\n").with_context(|| format!("writing {}", out.display()))?;
        }
        match self.format {
            Format::Json => print_json(&json)?,
            Format::Text => print_loss_text(&result, per_token.as_deref()),
        }
        Ok(0)
    }
}

fn print_loss_text(c: &LossResult, per_token: Option<&[f64]>) {
    if let Some(per) = per_token {
        for (i, l) in per.iter().enumerate() {
            println!("{i}\t{l:.6}");
        }
    } else {
        println!("{:>10} {:>10} {:>9}", "start", "end", "loss");
        for b in &c.buckets {
            println!("{:>10} {:>10} {:>9.4}", b.start, b.end, b.loss);
        }
    }
    println!("mean loss {:.4} over {} tokens ({:.0} tokens/s)", c.mean_loss.unwrap_or(f64::NAN), c.tokens, c.tokens_per_s);
    if let Some(v) = &c.collapse {
        let ci = v.ratio_ci.map_or("-".into(), |[lo, hi]| format!("[{lo:.2}, {hi:.2}]"));
        match v.collapsed {
            Some(true) => println!(
                "state collapse: YES, first at position {} (loss > 2 x {:.3} seen within {} tokens; ratio {:.2}, 95% interval {ci}, {} prompts)",
                v.first_position.unwrap_or(-1),
                v.max_within_train.unwrap_or(f64::NAN),
                v.train_len,
                v.worst_ratio.unwrap_or(f64::NAN),
                v.prompts
            ),
            Some(false) => println!("state collapse: no (ratio {:.2} of the in-training maximum, 95% interval {ci}, {} prompts)", v.worst_ratio.unwrap_or(f64::NAN), v.prompts),
            None => println!(
                "state collapse: inconclusive ({:?}; ratio {}, 95% interval {ci}, rise after train_len {} nats, {} prompts)",
                v.inconclusive,
                v.worst_ratio.map_or("-".into(), |r| format!("{r:.2}")),
                v.rise.map_or("-".into(), |r| format!("{r:.2}")),
                v.prompts
            ),
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
    #[arg(long, value_delimiter = ',', required_unless_present = "search", conflicts_with = "search")]
    lengths: Vec<i64>,
    /// T_recall by bisection instead of a list: LO,HI (probed first), then halving the bracket.
    #[arg(long, value_delimiter = ',', num_args = 1, requires = "resolution")]
    search: Option<Vec<i64>>,
    /// Lengths between LO and HI probed by --search are multiples of it (the bracket's width).
    #[arg(long, requires = "search")]
    resolution: Option<i64>,
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
        let (lm, meta) = self.model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let depths = evaluate::even_depths(self.depths);
        let search = match (&self.search, self.resolution) {
            (Some(r), Some(resolution)) => {
                let &[lo, hi] = r.as_slice() else { anyhow::bail!("--search takes two lengths LO,HI, got {}", r.len()) };
                let range = SearchRange { range: [lo, hi], resolution };
                LengthGrid::new(range).map_err(|(key, msg)| anyhow::anyhow!("--{key}: {msg}"))?;
                Some(range)
            }
            _ => None,
        };
        let params = PasskeyParams {
            lengths: self.lengths.clone(),
            depths: depths.clone(),
            n: self.n,
            seed: self.seed,
            mitigation: crate::job::canonical(&self.mitigation)?,
            precision: self.precision,
            answer_tokens: evaluate::answer_tokens(&tok),
            template: Default::default(),
            recall_rule: Default::default(),
            search,
        };
        let pb = super::progress::bar(0, "tokens");
        let report = |done: u64, total: u64| {
            pb.set_length(total);
            pb.set_position(done);
        };
        let r = evaluate::passkey_with_progress(&lm, &tok, params, self.train_len, &report)?;
        pb.finish_and_clear();
        let result = EvalResult::Passkey(r.clone());
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
                for &len in &r.params.lengths {
                    print!("{len:>11}");
                    for c in r.cells.iter().filter(|c| c.len == len) {
                        print!(" {:>6.2}", c.accuracy);
                    }
                    println!();
                }
                match r.t_recall_mean {
                    Some(t) => println!("T_recall = {t} tokens (accuracy averaged over depths > 0.95)"),
                    None => println!("T_recall: no length reaches accuracy averaged over depths > 0.95"),
                }
                match r.t_recall_strict {
                    Some(t) => println!("T_recall (strict) = {t} tokens (accuracy > 0.95 at every depth)"),
                    None => println!("T_recall (strict): no length reaches accuracy > 0.95 at every depth"),
                }
                for d in &r.t_recall_per_depth {
                    println!("  depth {:.2}: T_recall {}", d.depth, d.t_recall.map_or("-".into(), |t| t.to_string()));
                }
                if let Some(s) = &r.search {
                    print_search(s);
                }
            }
        }
        Ok(0)
    }
}

/// The probes of a length search in the order run, and where it ended.
fn print_search(s: &LengthSearch) {
    let probes: Vec<String> =
        s.probes.iter().map(|p| format!("{} ({:.2}{})", p.len, p.accuracy, if p.recalled { ", recalled" } else { "" })).collect();
    println!("search probes, in order: {}", probes.join(", "));
    let t = |v: Option<i64>| v.map_or("-".into(), |t| t.to_string());
    match s.outcome {
        SearchOutcome::Bracketed => println!("search: T_recall in [{}, {}) (adjacent probes)", t(s.last_pass), t(s.first_fail)),
        SearchOutcome::AboveRange => println!("search: T_recall >= {} (the longest length of the range is recalled)", t(s.last_pass)),
        SearchOutcome::BelowRange => println!("search: T_recall below the range (not recalled at {})", t(s.first_fail)),
        SearchOutcome::NonMonotone => println!("search: not monotone (the longest length is recalled, the shortest not); stopped"),
    }
    if !s.monotone && s.outcome != SearchOutcome::NonMonotone {
        println!("search: the probes contradict a monotone recall");
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
        let (lm, meta) = self.model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        let (prompts, source, _) = self.source.prompts(&tok, self.len, self.prompts)?;
        let n = prompts[0].len() as i64;
        let hist_positions = if self.hist_positions.is_empty() { vec![n] } else { self.hist_positions.clone() };
        let params = StatesParams {
            len: n,
            bucket: self.bucket,
            source: source.into(),
            prompts: prompts.len() as i64,
            mitigation: crate::job::canonical(&self.mitigation)?,
            hist_layer: self.hist_layer,
            hist_head: self.hist_head,
            hist_positions,
            train_len: self.train_len,
        };
        let pb = super::progress::bar(n as u64, "positions");
        let report = |done: u64, total: u64| {
            pb.set_length(total);
            pb.set_position(done);
        };
        let r = evaluate::states_with_progress(&lm, &prompts, params, &report)?;
        pb.finish_and_clear();
        let result = EvalResult::States(r.clone());
        if let Some(out) = &self.out {
            std::fs::write(out, serde_json::to_string(&result)? + "\n").with_context(|| format!("writing {}", out.display()))?;
        }
        match self.format {
            Format::Json => print_json(&result)?,
            Format::Text => {
                println!("state variance per head at the last position ({} positions, bucket {}):", n, self.bucket);
                for l in &r.layers {
                    let vars: Vec<String> =
                        l.heads.iter().map(|h| format!("{:.3e}", h.state_var.last().copied().unwrap_or(f64::NAN))).collect();
                    println!("  layer {:>2}: {}", l.layer, vars.join(" "));
                }
                if let Some(h) = r.layers.first().and_then(|l| l.heads.first()) {
                    println!(
                        "first-token log retention, layer 0 head 0, at the end: {:.3}",
                        h.log_retention.last().copied().unwrap_or(0.0)
                    );
                }
            }
        }
        Ok(0)
    }
}
