//! `stuffed corpus ...`: build token corpora from text, directories and JSONL, and inspect them.
use std::path::PathBuf;

use anyhow::{bail, Context};
use stuffed_model::data::corpus::{self, BuildOptions, InputSpec, Manifest};
use stuffed_model::Tokenizer;

use super::common::print_json;
use super::Format;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokenize inputs into a memory-mapped corpus with a document-level train/validation split.
    Build(BuildArgs),
    /// Print a corpus manifest (counts, tokenizer, split, bad records).
    Info(InfoArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Build(a) => a.run(),
            Command::Info(a) => a.run(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Text files, directories (recursive) or JSONL files (.jsonl, .jsonl.gz, .jsonl.zst).
    #[arg(long = "input", num_args = 1.., required_unless_present = "preset")]
    inputs: Vec<PathBuf>,
    /// `default`: English prose from Debian packages (perl-doc pods, Python docs sources, fortunes).
    #[arg(long, conflicts_with = "inputs")]
    preset: Option<String>,
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
    /// Fraction of documents held out for validation.
    #[arg(long, default_value_t = 0.05)]
    val_fraction: f64,
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
        (Some(py), Some(pl), true) => Ok(vec![
            spec(py, &[".rst.txt"], &[]),
            spec(pl, &[".pod"], &[]),
            spec(fortunes, &[], &[".dat", ".u8"]),
        ]),
        _ => bail!(
            "the default corpus is built from Debian packages that are not installed: run `make corpus` \
             (or `apt-get install --no-install-recommends perl-doc python3-doc fortunes`)"
        ),
    }
}

impl BuildArgs {
    fn run(self) -> anyhow::Result<i32> {
        let tok = Tokenizer::from_spec(&self.tokenizer)?;
        let (inputs, out) = match &self.preset {
            Some(p) if p == "default" => (default_inputs()?, self.out.clone().unwrap_or_else(|| PathBuf::from("results/corpora/default"))),
            Some(p) => bail!("unknown corpus preset '{p}': expected default"),
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
            val_fraction: self.val_fraction,
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

impl InfoArgs {
    fn run(self) -> anyhow::Result<i32> {
        let c = stuffed_model::data::Corpus::open(&self.dir)?;
        match self.format {
            Format::Json => print_json(&c.manifest)?,
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
