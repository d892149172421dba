//! `stuffed corpus ...`: build token corpora from text, directories, JSONL and Parquet (plain
//! or cleaned: filtered and deduplicated), inspect them, pack them for transfer.
mod large;
mod pack;
pub(crate) use pack::parse_size;

use std::path::PathBuf;

use anyhow::{bail, Context};
use stuffed_model::data::clean::{DocKind, Quality};
use stuffed_model::data::corpus::{self, BuildOptions, InputSpec, Manifest};
use stuffed_model::data::pipeline;
use stuffed_model::Tokenizer;

use super::common::print_json;
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokenize inputs into a memory-mapped corpus with a document-level train/validation split.
    Build(Box<BuildArgs>),
    /// Print a corpus manifest (counts, tokenizer, split, bad records).
    Info(InfoArgs),
    /// Write a corpus as zstd chunks plus a checksummed index (for hosts without network).
    Pack(pack::PackArgs),
    /// Reassemble a packed corpus, verifying every chunk and file.
    Unpack(pack::UnpackArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Build(a) => (*a).run(),
            Command::Info(a) => a.run(),
            Command::Pack(a) => a.run(),
            Command::Unpack(a) => a.run(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Text files, directories (recursive), JSONL files (.jsonl, .jsonl.gz, .jsonl.zst) or
    /// Parquet shards (.parquet; Hugging Face dataset layouts).
    #[arg(long = "input", num_args = 1.., required_unless_present = "preset")]
    inputs: Vec<PathBuf>,
    /// `default`: English prose from Debian packages (perl-doc pods, Python docs sources,
    /// fortunes). `large`: the cleaned multi-package corpus of scripts/corpus-large.sh (about
    /// 1e9 byte tokens of code and documentation).
    #[arg(long, conflicts_with = "inputs")]
    preset: Option<String>,
    /// Clean --input builds like the large preset: markup stripped, quality filters, exact and
    /// near-duplicate removal, long validation documents held out.
    #[arg(long)]
    clean: bool,
    /// Cleaned builds: keep only prose or only code.
    #[arg(long, value_parser = ["prose", "code"])]
    only: Option<String>,
    /// Cleaned builds: also hold out this many documents of at least --val-long-tokens.
    #[arg(long)]
    val_long_docs: Option<usize>,
    /// Cleaned builds: what a long validation document is.
    #[arg(long, default_value_t = 16384)]
    val_long_tokens: usize,
    /// Cleaned builds: documents under this many bytes are dropped.
    #[arg(long, default_value_t = 256)]
    min_doc_bytes: usize,
    /// Cleaned builds: longer texts are split at paragraphs into documents of about this size.
    #[arg(long, default_value_t = 1 << 20)]
    max_doc_bytes: usize,
    /// Cleaned builds: tokenize one document in N with GPT-2 to estimate the GPT-2 count (0: off).
    #[arg(long, default_value_t = 16)]
    gpt2_sample: u64,
    /// `--preset large`: where the Debian packages are downloaded and unpacked (default OUT/stage).
    #[arg(long)]
    stage: Option<PathBuf>,
    /// bytes, gpt2 or hf:PATH.
    #[arg(long, default_value = "bytes")]
    tokenizer: String,
    /// Output directory (default: results/corpora/<preset> with --preset).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Drop documents shorter than this many tokens.
    #[arg(long, default_value_t = 1)]
    min_doc_tokens: usize,
    /// JSON field holding the text of JSONL records (RedPajama: raw_content).
    #[arg(long, default_value = "text")]
    field: String,
    /// Fraction of documents held out for validation (default 0.05; `large`: 0.01).
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Only files whose names end with this suffix (repeatable).
    #[arg(long)]
    include: Vec<String>,
    /// Skip files whose names end with this suffix (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Corpus directory.
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The inputs of the `default` corpus: English prose shipped by Debian packages.
pub fn default_inputs() -> anyhow::Result<Vec<InputSpec>> {
    let find = |parent: &str, prefix: &str, tail: &str| -> Option<PathBuf> {
        let mut hits: Vec<PathBuf> = std::fs::read_dir(parent)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix(prefix).is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
            })
            .map(|e| e.path().join(tail))
            .filter(|p| p.is_dir())
            .collect();
        hits.sort();
        hits.pop()
    };
    let spec = |path: PathBuf, include: &[&str], exclude: &[&str]| InputSpec {
        path,
        include: include.iter().map(|s| s.to_string()).collect(),
        exclude: exclude.iter().map(|s| s.to_string()).collect(),
    };
    let python = find("/usr/share/doc", "python3.", "html/_sources");
    let perl = find("/usr/share/perl", "5.", "pod");
    let fortunes = PathBuf::from("/usr/share/games/fortunes");
    match (python, perl, fortunes.is_dir()) {
        (Some(py), Some(pl), true) => {
            Ok(vec![spec(py, &[".rst.txt"], &[]), spec(pl, &[".pod"], &[]), spec(fortunes, &[], &[".dat", ".u8"])])
        }
        _ => bail!(
            "the default corpus is built from Debian packages that are not installed: run `make corpus` \
             (or `apt-get install --no-install-recommends perl-doc python3-doc fortunes`)"
        ),
    }
}

impl BuildArgs {
    fn run(self) -> anyhow::Result<i32> {
        let tok = Tokenizer::from_spec(&self.tokenizer)?;
        if self.preset.as_deref() == Some("large") || self.clean {
            return self.run_clean(&tok);
        }
        let (inputs, out) = match &self.preset {
            Some(p) if p == "default" => (default_inputs()?, self.out.clone().unwrap_or_else(|| PathBuf::from("results/corpora/default"))),
            Some(p) => bail!("unknown corpus preset '{p}': expected default or large"),
            None => {
                let out = self.out.clone().context("--out DIR is required with --input")?;
                let specs = self
                    .inputs
                    .iter()
                    .map(|p| InputSpec { path: p.clone(), include: self.include.clone(), exclude: self.exclude.clone() })
                    .collect();
                (specs, out)
            }
        };
        for i in &inputs {
            std::fs::metadata(&i.path).with_context(|| format!("cannot read input {}", i.path.display()))?;
        }
        let opts = BuildOptions {
            inputs,
            field: self.field.clone(),
            min_doc_tokens: self.min_doc_tokens,
            val_fraction: self.val_fraction.unwrap_or(0.05),
        };
        let bar = super::progress::bar(0, "files");
        let progress = |done: u64, total: u64, tokens: u64| {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{tokens} tokens"));
        };
        let m = corpus::build(&tok, &opts, &out, &progress)?;
        bar.finish_and_clear();
        match self.format {
            Format::Json => print_json(&m)?,
            Format::Text => print_manifest(&out, &m),
        }
        Ok(0)
    }
}

impl BuildArgs {
    /// `--preset large` or `--clean`: the cleaned, restartable pipeline.
    fn run_clean(&self, tok: &Tokenizer) -> anyhow::Result<i32> {
        let t0 = std::time::Instant::now();
        let large = self.preset.as_deref() == Some("large");
        let out = match (&self.out, large) {
            (Some(o), _) => o.clone(),
            (None, true) => PathBuf::from("results/corpora/large"),
            (None, false) => bail!("--out DIR is required with --input"),
        };
        let sources = if large {
            large::stage_large(&self.stage.clone().unwrap_or_else(|| out.join("stage")))?
        } else {
            self.inputs
                .iter()
                .map(|p| pipeline::SourceSpec {
                    name: p.display().to_string(),
                    version: String::new(),
                    license: String::new(),
                    kind: DocKind::Prose,
                    root: p.clone(),
                    include: self.include.clone(),
                    exclude: self.exclude.clone(),
                })
                .collect()
        };
        for s in &sources {
            std::fs::metadata(&s.root).with_context(|| format!("cannot read input {}", s.root.display()))?;
        }
        let opts = pipeline::PipelineOptions {
            sources,
            field: self.field.clone(),
            quality: Quality { min_bytes: self.min_doc_bytes },
            max_doc_bytes: self.max_doc_bytes,
            min_doc_tokens: self.min_doc_tokens,
            val_fraction: self.val_fraction.unwrap_or(if large { 0.01 } else { 0.05 }),
            val_long_tokens: self.val_long_tokens,
            val_long_docs: self.val_long_docs.unwrap_or(if large { 1100 } else { 0 }),
            only: self.only.as_deref().and_then(DocKind::parse),
            gpt2_sample: self.gpt2_sample,
            shard_bytes: 64 << 20,
            stop_after_shards: None,
        };
        let m = large::run_pipeline(tok, &opts, &out)?;
        match self.format {
            Format::Json => print_json(&m)?,
            Format::Text => large::print_summary(&out, &m, Some(t0.elapsed().as_secs_f64())),
        }
        Ok(0)
    }
}

impl InfoArgs {
    fn run(self) -> anyhow::Result<i32> {
        let c = stuffed_model::data::Corpus::open(&self.dir)?;
        match self.format {
            Format::Json => print_json(&c.manifest)?,
            Format::Text if c.manifest.clean.is_some() => large::print_summary(&self.dir, &c.manifest, None),
            Format::Text => print_manifest(&self.dir, &c.manifest),
        }
        Ok(0)
    }
}

fn print_manifest(dir: &std::path::Path, m: &Manifest) {
    println!("corpus {} (tokenizer {}, {})", dir.display(), m.tokenizer, m.dtype);
    println!("  train: {} documents, {} tokens", m.train.documents, m.train.tokens);
    println!("  val:   {} documents, {} tokens", m.val.documents, m.val.tokens);
    for s in &m.sources {
        println!("  source {}: {} files, {} documents, {} tokens, {} bad records", s.path, s.files, s.documents, s.tokens, s.bad.total());
        for e in &s.bad_examples {
            println!("    bad: {e}");
        }
    }
    let b = &m.bad;
    if b.total() > 0 {
        println!(
            "  bad records: {} (invalid UTF-8 {}, invalid JSON {}, missing field {}, empty {}, too short {})",
            b.total(),
            b.invalid_utf8,
            b.invalid_json,
            b.missing_field,
            b.empty,
            b.short
        );
    }
}
