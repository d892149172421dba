//! The cleaned corpus build behind `stuffed corpus build --preset large` and `--clean`:
//! locating and running the staging script, reading its source list, the progress bar and the
//! summary table.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stuffed_model::data::clean::DocKind;
use stuffed_model::data::corpus::Manifest;
use stuffed_model::data::pipeline::{self, PipelineOptions, Progress, SourceSpec};
use stuffed_model::Tokenizer;

/// The staging script of the `large` preset, found beside the working directory or the binary.
pub fn script() -> anyhow::Result<PathBuf> {
    const REL: &str = "scripts/corpus-large.sh";
    let mut bases = vec![std::env::current_dir()?];
    if let Ok(exe) = std::env::current_exe() {
        bases.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    bases.iter().map(|b| b.join(REL)).find(|p| p.is_file()).with_context(|| format!("{REL} not found (run from the repository root)"))
}

/// Runs the staging script (downloads and unpacks the preset's Debian packages into `stage`)
/// and reads the sources it lists.
pub fn stage_large(stage: &Path) -> anyhow::Result<Vec<SourceSpec>> {
    let script = script()?;
    std::fs::create_dir_all(stage)?;
    let status =
        std::process::Command::new("bash").arg(&script).arg(stage).status().with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    read_sources(&stage.join("sources.tsv"))
}

/// Parses a sources.tsv: name, version, license, kind (code|prose|mixed), root, include,
/// exclude (suffix lists separated by commas).
pub fn read_sources(path: &Path) -> anyhow::Result<Vec<SourceSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let list = |s: &str| s.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 5 {
            bail!("{}:{}: expected 7 tab-separated fields, got {}", path.display(), i + 1, f.len());
        }
        let kind = match f[3] {
            "prose" => DocKind::Prose,
            "code" | "mixed" => DocKind::Code,
            k => bail!("{}:{}: unknown kind '{k}' (code, prose or mixed)", path.display(), i + 1),
        };
        out.push(SourceSpec {
            name: f[0].into(),
            version: f[1].into(),
            license: f[2].into(),
            kind,
            root: PathBuf::from(f[4]),
            include: list(f.get(5).unwrap_or(&"")),
            exclude: list(f.get(6).unwrap_or(&"")),
        });
    }
    Ok(out)
}

/// A bar over bytes (files, tokens and ETA in its message); hidden when stderr is not a
/// terminal.
pub fn run_pipeline(tok: &Tokenizer, opts: &PipelineOptions, out: &Path) -> anyhow::Result<Manifest> {
    let bar = ProgressBar::new(0);
    if !super::super::progress::is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let tpl = "{spinner} [{elapsed_precise}] {prefix} {wide_bar} {bytes}/{total_bytes} {msg} (ETA {eta})";
    bar.set_style(ProgressStyle::with_template(tpl).unwrap_or_else(|_| ProgressStyle::default_bar()));
    let show = |p: Progress| {
        bar.set_prefix(p.stage);
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        let what = if p.stage == "clean" { "text bytes kept" } else { "tokens" };
        bar.set_message(format!("files {}/{}, {} {what}", p.files_done, p.files_total, p.tokens));
    };
    let m = pipeline::build(tok, opts, out, &show)?;
    bar.finish_and_clear();
    Ok(m)
}

fn m(x: u64) -> String {
    format!("{:.1}M", x as f64 / 1e6)
}

/// The summary table of a cleaned build.
pub fn print_summary(dir: &Path, man: &Manifest, seconds: Option<f64>) {
    let Some(c) = &man.clean else { return };
    println!("corpus {} (tokenizer {}, {})", dir.display(), man.tokenizer, man.dtype);
    println!(
        "{:<20} {:<24} {:>7} {:>8} {:>9} {:>6} {:>7} {:>7} {:>8}  license",
        "source", "version", "files", "docs", "tokens", "prose", "dups", "reject", "gpt2~"
    );
    for s in &c.sources {
        let rej: u64 = s.rejected.values().sum();
        let prose = if s.tokens > 0 { 100.0 * s.prose_tokens as f64 / s.tokens as f64 } else { 0.0 };
        let lic: String = s.license.chars().take(40).collect();
        println!(
            "{:<20} {:<24} {:>7} {:>8} {:>9} {:>5.0}% {:>7} {:>7} {:>8}  {}",
            s.name.chars().take(20).collect::<String>(),
            s.version.chars().take(24).collect::<String>(),
            s.files,
            s.documents,
            m(s.tokens),
            prose,
            s.exact_duplicates + s.near_duplicates,
            rej,
            m(s.gpt2_tokens_estimate),
            lic
        );
    }
    let rej: Vec<String> =
        c.rejected.iter().map(|(k, v)| format!("{} {v}", serde_json::to_string(k).unwrap_or_default().trim_matches('"'))).collect();
    println!(
        "files read: {} ({:.2} GB); candidate documents {}; rejected: {}",
        c.files,
        c.bytes_read as f64 / 1e9,
        c.candidates,
        rej.join(", ")
    );
    println!("duplicates: {} exact + {} near = {:.1}% of candidates", c.exact_duplicates, c.near_duplicates, 100.0 * c.duplicate_rate);
    println!("train: {} documents, {} tokens", man.train.documents, man.train.tokens);
    println!(
        "val:   {} documents, {} tokens ({} of at least {} tokens)",
        man.val.documents, man.val.tokens, c.val_long_docs, c.val_long_tokens
    );
    let kinds: Vec<String> = c.kinds.iter().map(|(k, v)| format!("{k:?} {} docs {} tokens", v.documents, m(v.tokens))).collect();
    println!("composition: {} (prose share {:.1}%)", kinds.join(", "), 100.0 * c.prose_share);
    println!("GPT-2 tokens: {} ({})", c.gpt2_tokens, c.gpt2_count);
    if let Some(s) = seconds {
        println!("build time: {s:.0} s");
    }
}
