//! `stuffed model ...`: inspect model configurations and checkpoints, and import a checkpoint
//! from any supported form into our canonical directory.
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;

use super::common::{print_json, ModelSource};
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Parameter count, state size and per-layer shapes of a preset or checkpoint.
    Info(InfoArgs),
    /// Writes a checkpoint (mamba_ssm's or transformers' config; model.safetensors, sharded
    /// safetensors or pytorch_model.bin; or hf:ORG/NAME[@REVISION] from the local hub cache)
    /// as our canonical directory: mamba_ssm's config.json, fp32 model.safetensors, stuffed.json.
    /// Loading never needs it: every command reads those forms directly.
    Import(ImportArgs),
    /// Writes a freshly initialised model (the reference initialisation for --seed) as a
    /// checkpoint directory: what to benchmark `stuffed analyze` on, or to start from.
    Init(InitArgs),
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Seed of the initialisation.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// The directory to write (created; an existing checkpoint there is refused).
    #[arg(long)]
    out: PathBuf,
    /// Tokenizer to record (bytes, gpt2, hf:...); default: bytes when its 257 ids fit the
    /// vocabulary, else none (give --tokenizer to the commands that read the checkpoint).
    #[arg(long)]
    tokenizer: Option<String>,
}

/// An output directory that already holds a checkpoint is refused, never overwritten.
fn refuse_existing(out: &std::path::Path) -> anyhow::Result<()> {
    if out.join(stuffed_model::checkpoint::CONFIG_FILE).exists() {
        anyhow::bail!("{}: already holds a checkpoint; choose another --out", out.display());
    }
    Ok(())
}

impl InitArgs {
    fn run(self) -> anyhow::Result<i32> {
        refuse_existing(&self.out)?;
        let cfg = self.source.config()?;
        let tokenizer = match &self.tokenizer {
            Some(spec) => {
                let tok = stuffed_model::Tokenizer::from_spec(spec).with_context(|| format!("--tokenizer {spec}"))?;
                anyhow::ensure!(
                    tok.vocab_size() <= cfg.vocab_size,
                    "--tokenizer {spec}: {} ids do not fit the model's vocabulary of {}",
                    tok.vocab_size(),
                    cfg.vocab_size
                );
                Some(tok.spec())
            }
            None => (stuffed_model::Tokenizer::Bytes.vocab_size() <= cfg.vocab_size).then(|| "bytes".to_string()),
        };
        let lm = stuffed_model::Mamba2LM::seeded(&cfg, tch::Device::Cpu, self.seed)?;
        let meta = stuffed_model::checkpoint::CheckpointMeta {
            tokenizer: tokenizer.clone(),
            step: Some(0),
            tokens: Some(0),
            tokenizer_hint: None,
        };
        stuffed_model::checkpoint::save(&lm, &self.out, &meta)?;
        eprintln!(
            "wrote a model initialised with seed {} ({:.1}M parameters, state {:.2}M, tokenizer {}) into {}",
            self.seed,
            cfg.num_params() as f64 / 1e6,
            cfg.state_size() as f64 / 1e6,
            tokenizer.as_deref().unwrap_or("none recorded"),
            self.out.display()
        );
        Ok(0)
    }
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The checkpoint to read: a directory or hf:ORG/NAME[@REVISION].
    src: PathBuf,
    /// The directory to write (created; an existing checkpoint there is refused).
    #[arg(long)]
    out: PathBuf,
    /// Tokenizer to record (default: the source's, its tokenizer.json, or GPT-NeoX's for the
    /// official Mamba-2 vocabulary).
    #[arg(long)]
    tokenizer: Option<String>,
}

impl ImportArgs {
    fn run(self) -> anyhow::Result<i32> {
        refuse_existing(&self.out)?;
        let src = stuffed_model::checkpoint::import(&self.src, &self.out, self.tokenizer)
            .with_context(|| format!("importing {}", self.src.display()))?;
        let meta = stuffed_model::checkpoint::read_meta(&self.out)?;
        eprintln!(
            "imported {} ({:?} config, {} weights, {:.1}M parameters) into {}; tokenizer {}",
            src.dir.display(),
            src.layout,
            src.weights.kind(),
            src.cfg.num_params() as f64 / 1e6,
            self.out.display(),
            meta.tokenizer.as_deref().unwrap_or("unknown (give --tokenizer)")
        );
        Ok(0)
    }
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    source: ModelSource,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct Info {
    config: stuffed_model::MambaConfig,
    params: i64,
    state_size: i64,
    d_inner: i64,
    nheads: i64,
    padded_vocab: i64,
    flops_per_token_forward: f64,
    layer_shapes: Vec<(String, Vec<i64>)>,
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Info(a) => a.run(),
            Command::Import(a) => a.run(),
            Command::Init(a) => a.run(),
        }
    }
}

impl InfoArgs {
    fn run(self) -> anyhow::Result<i32> {
        let cfg = self.source.config()?;
        // Shapes of one layer, from the real parameter list of a zero model of one layer.
        let mut one = cfg.clone();
        one.n_layer = 1;
        one.vocab_size = 1;
        let lm = stuffed_model::Mamba2LM::zeroed(&one, tch::Device::Cpu)?;
        let layer_shapes =
            lm.params().iter().filter_map(|(n, t)| n.strip_prefix("backbone.layers.0.").map(|s| (s.to_string(), t.size()))).collect();
        let info = Info {
            params: cfg.num_params(),
            state_size: cfg.state_size(),
            d_inner: cfg.d_inner(),
            nheads: cfg.nheads(),
            padded_vocab: cfg.padded_vocab(),
            flops_per_token_forward: cfg.flops_per_token(),
            layer_shapes,
            config: cfg,
        };
        match self.format {
            Format::Json => print_json(&info)?,
            Format::Text => {
                let c = &info.config;
                println!("d_model {}  n_layer {}  vocab {} (padded {})", c.d_model, c.n_layer, c.vocab_size, info.padded_vocab);
                println!(
                    "d_inner {}  heads {} x headdim {}  d_state {}  ngroups {}  d_conv {}  chunk {}",
                    info.d_inner,
                    info.nheads,
                    c.headdim(),
                    c.d_state(),
                    c.ngroups(),
                    c.d_conv(),
                    c.chunk_size()
                );
                println!("parameters     {} ({:.1}M)", info.params, info.params as f64 / 1e6);
                println!("state size     {} ({:.3}M = layers x H x P x N)", info.state_size, info.state_size as f64 / 1e6);
                println!("forward FLOPs  {:.3} GFLOP/token", info.flops_per_token_forward / 1e9);
                println!("per layer (backbone.layers.{{i}}.):");
                for (n, s) in &info.layer_shapes {
                    println!("  {n:<24} {s:?}");
                }
            }
        }
        Ok(0)
    }
}
