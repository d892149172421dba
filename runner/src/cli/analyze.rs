//! `stuffed analyze CHECKPOINT --out DIR`: the paper's first experiment on one checkpoint (an
//! official Mamba-2 from the hub cache, a converted one, or ours) in one command: loss by
//! position on held-out text and on the newline probe to `--len` with the collapse verdict,
//! passkey accuracy over lengths x depths with T_recall, the state diagnostics, and every
//! training-free mitigation side by side. The results are stored in the results database as one
//! analysis job (sweep `--sweep`, default `analyze`), so `stuffed results`, `stuffed report` and
//! the dashboard show it, and written under DIR: `analysis.json` (every typed result),
//! `README.md` (the verdicts and tables) and `report/` (the figures of `stuffed report`).
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use stuffed_model::data::passkey::{PasskeyFormat, PasskeyTemplate};
use stuffed_model::data::{probes, Corpus};
use stuffed_model::eval::Progress;
use stuffed_model::protocol::eval::{EvalResult, LossParams, PasskeyParams, StatesParams};
use stuffed_model::protocol::{Envelope, Event, JobStatus, Precision};
use stuffed_model::ssd::SsdBackend;
use stuffed_model::{Mamba2LM, Tokenizer};

use super::common::{device, runtime, DbArgs, ModelSource};
use super::eval::resolve_tokenizer;
use crate::evaluate;
use crate::store::NewJob;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The checkpoint: a directory in any supported form, or hf:ORG/NAME[@REVISION] from the
    /// local Hugging Face cache (e.g. hf:state-spaces/mamba2-130m).
    checkpoint: PathBuf,
    /// Output directory of the report.
    #[arg(long)]
    out: PathBuf,
    /// The model's training length (the official Mamba-2 checkpoints: 2048).
    #[arg(long, default_value_t = 2048)]
    train_len: i64,
    /// Longest position of the loss curves (the newline probe and held-out text).
    #[arg(long, default_value_t = 1 << 20)]
    len: i64,
    /// Held-out text: documents of a corpus built by `stuffed corpus build` ...
    #[arg(long, conflicts_with = "text")]
    corpus: Option<PathBuf>,
    /// ... or one long text file (without either, only the newline probe is scored).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Held-out prompts averaged (corpus).
    #[arg(long, default_value_t = 4)]
    prompts: usize,
    /// Tokenizer (default: the checkpoint's; GPT-NeoX, hf:EleutherAI/gpt-neox-20b, for the
    /// official checkpoints).
    #[arg(long)]
    tokenizer: Option<String>,
    /// Passkey prompt lengths, comma-separated (default: train_len / 4 doubling up to
    /// min(--len, 16 x train_len)).
    #[arg(long, value_delimiter = ',')]
    passkey_lengths: Vec<i64>,
    /// Passkey depths (evenly spaced).
    #[arg(long, default_value_t = 5)]
    depths: usize,
    /// Passkey prompts per (length, depth) cell.
    #[arg(long, default_value_t = 8)]
    passkey_n: i64,
    /// Positions of the state diagnostics (default: min(--len, 8 x train_len)).
    #[arg(long)]
    states_len: Option<i64>,
    /// Training-free mitigations compared with none (repeatable; default: rri, dt-scale,
    /// state-norm and sliding-window:r=TRAIN_LEN).
    #[arg(long = "mitigation")]
    mitigations: Vec<String>,
    /// Bucket width of the loss curves.
    #[arg(long, default_value_t = 256)]
    bucket: i64,
    /// Tokens per streamed forward call.
    #[arg(long, default_value_t = 4096)]
    chunk: i64,
    /// Compute precision (the paper's analyses run in fp32).
    #[arg(long, value_enum, default_value = "fp32")]
    precision: Precision,
    /// auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Sweep the analysis job is stored under.
    #[arg(long, default_value = "analyze")]
    sweep: String,
    #[command(flatten)]
    db: DbArgs,
}

/// The shortest held-out document taken and the number of documents behind the prompts.
type Docs = (i64, usize);

/// What one evaluation of the analysis cost: wall time and the peak memory it reached (the
/// GPU allocator's peak on CUDA, the process's peak resident set on the CPU).
#[derive(Debug, serde::Serialize)]
struct StageCost {
    stage: String,
    wall_s: f64,
    peak_memory_gb: f64,
    memory: &'static str,
}

/// One evaluation of the analysis: a label and what to run.
enum Step {
    Loss { label: String, source: &'static str, mitigation: String },
    Passkey,
    States { source: &'static str },
}

impl Args {
    pub fn run(mut self, ssd: SsdBackend) -> anyhow::Result<i32> {
        anyhow::ensure!(self.train_len > 0 && self.len > 0, "--train-len and --len must be positive");
        let dev = device(&self.device)?;
        // A local checkpoint is recorded by its absolute path (hf: names stay as given).
        if !self.checkpoint.to_string_lossy().starts_with("hf:") {
            self.checkpoint =
                std::fs::canonicalize(&self.checkpoint).with_context(|| format!("checkpoint {}", self.checkpoint.display()))?;
        }
        let model = ModelSource { preset: None, checkpoint: Some(self.checkpoint.clone()) };
        let (lm, meta) = model.load(dev, ssd)?;
        let tok = resolve_tokenizer(self.tokenizer.as_deref(), &meta)?;
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        self.out = std::fs::canonicalize(&self.out).with_context(|| format!("output directory {}", self.out.display()))?;
        let text_source = if self.corpus.is_some() { Some("corpus") } else { self.text.as_ref().map(|_| "text") };
        let steps = self.plan(&tok, text_source);
        let mut results = Vec::new();
        let mut costs = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let label = match step {
                Step::Loss { label, .. } => label.clone(),
                Step::Passkey => "passkey".into(),
                Step::States { source } => format!("states on {source}"),
            };
            // One bar per evaluation, over its tokens (a plain log line when not on a terminal).
            let pb = super::progress::bar(0, "tokens");
            pb.set_message(format!("[{}/{}] {label}", i + 1, steps.len()));
            if !super::progress::is_terminal() {
                eprintln!("analyze [{}/{}]: {label}", i + 1, steps.len());
            }
            let report = |done: u64, total: u64| {
                pb.set_length(total);
                pb.set_position(done);
            };
            stuffed_model::bench::synchronize(dev);
            stuffed_model::cuda::reset_peak(dev);
            let start = std::time::Instant::now();
            results.push(self.evaluate(&lm, &tok, step, &report).with_context(|| format!("evaluation '{label}'"))?);
            stuffed_model::bench::synchronize(dev);
            pb.finish_and_clear();
            costs.push(StageCost {
                stage: label,
                wall_s: start.elapsed().as_secs_f64(),
                peak_memory_gb: stuffed_model::cuda::peak_memory_bytes(dev) as f64 / 1e9,
                memory: if dev.is_cuda() { "GPU allocator peak" } else { "process peak RSS" },
            });
        }
        let job_id = runtime()?.block_on(self.store(&lm, &tok, &results))?;
        std::fs::write(
            self.out.join("analysis.json"),
            serde_json::to_string_pretty(&json!({"job": job_id, "stages": costs, "results": results}))? + "\n",
        )
        .with_context(|| format!("writing {}", self.out.join("analysis.json").display()))?;
        let summary = self.summary(&job_id, &results, &costs);
        std::fs::write(self.out.join("README.md"), &summary).with_context(|| format!("writing {}/README.md", self.out.display()))?;
        self.figures()?;
        print!("{summary}");
        println!("stored as job {job_id} of sweep '{}' in {}; report in {}", self.sweep, self.db.db.display(), self.out.display());
        Ok(0)
    }

    fn mitigations(&self) -> Vec<String> {
        if !self.mitigations.is_empty() {
            return self.mitigations.clone();
        }
        vec!["rri".into(), "dt-scale".into(), "state-norm".into(), format!("sliding-window:r={}", self.train_len)]
    }

    fn plan(&self, tok: &Tokenizer, text: Option<&'static str>) -> Vec<Step> {
        let mut steps = Vec::new();
        let sources: Vec<&'static str> = text.into_iter().chain(["newlines"]).collect();
        for m in std::iter::once("none".to_string()).chain(self.mitigations()) {
            for &s in &sources {
                steps.push(Step::Loss { label: format!("loss on {s}, mitigation {m}"), source: s, mitigation: m.clone() });
            }
        }
        if self.passkey_lengths(tok).is_empty() {
            eprintln!("analyze: no passkey evaluation: --len {} is shorter than the passkey template", self.len);
        } else {
            steps.push(Step::Passkey);
        }
        steps.push(Step::States { source: text.unwrap_or("newlines") });
        steps
    }

    /// The passkey lengths: the flag, else train_len / 4 doubling up to min(--len, 16 x
    /// train_len), from the first that holds the template.
    fn passkey_lengths(&self, tok: &Tokenizer) -> Vec<i64> {
        if !self.passkey_lengths.is_empty() {
            return self.passkey_lengths.clone();
        }
        let template = PasskeyTemplate::new(tok, PasskeyFormat::default()).min_len("12345") as i64;
        let max = self.len.min(16 * self.train_len);
        let mut l = (self.train_len / 4).max(1);
        while l < template {
            l *= 2;
        }
        let mut out = Vec::new();
        while l <= max {
            out.push(l);
            l *= 2;
        }
        out
    }

    /// `n` prompts of `len` tokens from `source`, with the corpus's shortest document and the
    /// number of documents behind them.
    fn prompts(&self, tok: &Tokenizer, source: &str, len: usize) -> anyhow::Result<(Vec<Vec<u32>>, Option<Docs>)> {
        Ok(match (source, &self.corpus, &self.text) {
            ("corpus", Some(dir), _) => {
                let c = Corpus::open(dir)?;
                tok.check_same(&c.manifest.tokenizer, &format!("corpus {}", dir.display()))?;
                let min_doc = c.manifest.min_doc_tokens;
                let p = c.val_prompts(len, self.prompts, min_doc)?;
                (p.prompts, Some((min_doc as i64, p.documents)))
            }
            ("text", _, Some(path)) => (vec![probes::text_file(tok, path, Some(len))?], None),
            _ => (vec![probes::newlines(tok, len)], None),
        })
    }

    fn evaluate(&self, lm: &Mamba2LM, tok: &Tokenizer, step: &Step, progress: Progress) -> anyhow::Result<EvalResult> {
        Ok(match step {
            Step::Loss { source, mitigation, .. } => {
                let (prompts, docs) = self.prompts(tok, source, self.len as usize + 1)?;
                let params = LossParams {
                    source: (*source).into(),
                    path: self.source_path(source),
                    len: prompts.first().map_or(0, |p| p.len() as i64 - 1),
                    prompts: prompts.len() as i64,
                    chunk: self.chunk,
                    bucket: self.bucket,
                    train_len: Some(self.train_len),
                    mitigation: crate::job::canonical(mitigation)?,
                    precision: self.precision,
                    device: Some(stuffed_model::cuda::device_name(lm.device())),
                    min_doc_tokens: docs.map(|d| d.0),
                    documents: docs.map(|d| d.1),
                };
                EvalResult::Loss(evaluate::loss_with_progress(lm, &prompts, params, false, progress)?.0)
            }
            Step::Passkey => {
                let params = PasskeyParams {
                    lengths: self.passkey_lengths(tok),
                    depths: evaluate::even_depths(self.depths),
                    n: self.passkey_n,
                    seed: 0,
                    mitigation: "none".into(),
                    precision: self.precision,
                    answer_tokens: evaluate::answer_tokens(tok),
                    template: Default::default(),
                    recall_rule: Default::default(),
                    search: None,
                };
                EvalResult::Passkey(evaluate::passkey_with_progress(lm, tok, params, Some(self.train_len), progress)?)
            }
            Step::States { source } => {
                let len = self.states_len.unwrap_or(self.len.min(8 * self.train_len));
                let (prompts, _) = self.prompts(tok, source, len as usize)?;
                let n = prompts.first().map_or(0, |p| p.len() as i64);
                let params = StatesParams {
                    len: n,
                    bucket: self.bucket.min(n.max(1)),
                    source: (*source).into(),
                    prompts: prompts.len() as i64,
                    mitigation: "none".into(),
                    hist_layer: 0,
                    hist_head: 0,
                    hist_positions: vec![self.train_len.min(n), n],
                    train_len: Some(self.train_len),
                };
                EvalResult::States(evaluate::states(lm, &prompts, params)?)
            }
        })
    }

    fn source_path(&self, source: &str) -> Option<String> {
        match source {
            "corpus" => self.corpus.as_ref().map(|p| p.display().to_string()),
            "text" => self.text.as_ref().map(|p| p.display().to_string()),
            _ => None,
        }
    }

    /// The analysis as a job config: the checkpoint's model sizes, its tokenizer, the training
    /// length, `init_from` naming the checkpoint (what `results` and `report` read).
    fn job_config(&self, lm: &Mamba2LM, tok: &Tokenizer) -> anyhow::Result<stuffed_model::train::JobConfig> {
        let c = &lm.cfg;
        let v = json!({
            "name": format!("analyze {}", self.checkpoint.display()),
            "model": {"d_model": c.d_model, "n_layer": c.n_layer, "d_state": c.d_state(), "headdim": c.headdim(),
                      "expand": c.ssm_cfg.expand, "ngroups": c.ngroups(), "d_conv": c.d_conv(), "chunk_size": c.chunk_size(),
                      "vocab_size": c.vocab_size},
            "tokenizer": tok.spec(),
            "train": {"seq_len": self.train_len, "lr": 0.0, "steps": 0},
            "init_from": self.checkpoint,
        });
        serde_json::from_value(v).context("building the analysis job config")
    }

    async fn store(&self, lm: &Mamba2LM, tok: &Tokenizer, results: &[EvalResult]) -> anyhow::Result<String> {
        let config = self.job_config(lm, tok)?;
        let mut value = serde_json::to_value(&config)?;
        // The analysis itself (what was evaluated) makes the job distinct from another analysis
        // of the same checkpoint with other settings.
        let params: Vec<serde_json::Value> = results.iter().map(|r| r.params_json()).collect();
        let id = {
            use sha2::Digest;
            let key = serde_json::to_string(&json!({"config": value, "evals": params}))?;
            let d = sha2::Sha256::digest(key.as_bytes());
            d.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()
        };
        if let serde_json::Value::Object(m) = &mut value {
            m.remove("name");
        }
        let db = self.db.open().await?;
        let spec = format!("name: {}\n# analysis jobs written by `stuffed analyze`\n", self.sweep);
        db.upsert_sweep(&self.sweep, "checkpoints analyzed by `stuffed analyze`", &spec, None, "local").await?;
        let label = self.checkpoint.display().to_string();
        let varied = json!({"checkpoint": label});
        let run_dir = self.out.display().to_string();
        let job = NewJob {
            id: &id,
            sweep: &self.sweep,
            label: &label,
            varied: &varied,
            position: 0,
            config: &value,
            state_size: lm.cfg.state_size(),
            n_params: lm.cfg.num_params(),
            train_len: self.train_len,
            run_dir: &run_dir,
        };
        db.add_job(&job).await?;
        let time = crate::store::now();
        let events: Vec<Envelope> = results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let ev = Event::Eval { eval_index: i as i64, step: 0, tokens: None, result: r.clone() };
                Envelope::new(i as u64 + 1, ev, time.clone())
            })
            .collect();
        // A re-run of the same analysis replaces its rows (sequence numbers restart above the last).
        let last = db.job(&id).await?.last_seq.max(0) as u64;
        let events: Vec<Envelope> = events
            .into_iter()
            .map(|mut e| {
                e.seq += last;
                e
            })
            .collect();
        db.ingest(&id, &events).await?;
        db.set_status(&id, JobStatus::Completed, None, None).await?;
        Ok(id)
    }

    /// The verdicts and tables, as Markdown.
    fn summary(&self, job_id: &str, results: &[EvalResult], costs: &[StageCost]) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "# Analysis of {}\n", self.checkpoint.display());
        let _ = writeln!(s, "Job `{job_id}` (sweep `{}`), training length {}, loss to {} tokens.\n", self.sweep, self.train_len, self.len);
        let _ = writeln!(s, "## Loss by position and state collapse, every mitigation side by side\n");
        let _ = writeln!(s, "| source | mitigation | mean loss | collapsed | first collapse position | worst ratio |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for r in results {
            if let EvalResult::Loss(l) = r {
                let v = l.collapse.as_ref();
                let verdict = match (v.and_then(|v| v.collapsed), v.and_then(|v| v.inconclusive.as_ref())) {
                    (Some(true), _) => "yes".to_string(),
                    (Some(false), _) => "no".to_string(),
                    (None, Some(why)) => format!(
                        "inconclusive ({})",
                        serde_json::to_value(why).ok().and_then(|w| w.as_str().map(String::from)).unwrap_or_default()
                    ),
                    (None, None) => "inconclusive".to_string(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {verdict} | {} | {} |",
                    l.params.source,
                    l.params.mitigation,
                    l.mean_loss.map_or("-".into(), |m| format!("{m:.4}")),
                    v.and_then(|v| v.first_position).map_or("-".into(), |p| p.to_string()),
                    v.and_then(|v| v.worst_ratio).map_or("-".into(), |r| format!("{r:.2}")),
                );
            }
        }
        for r in results {
            match r {
                EvalResult::Passkey(p) => {
                    let _ = writeln!(s, "\n## Passkey retrieval\n");
                    let _ = writeln!(s, "| length | accuracy (mean over depths) |\n|---|---|");
                    for a in &p.accuracy_by_len {
                        let _ = writeln!(s, "| {} | {:.2} |", a.len, a.accuracy);
                    }
                    let _ =
                        writeln!(s, "\nT_recall (mean over depths > 0.95): {}", p.t_recall_mean.map_or("none".into(), |t| t.to_string()));
                    let _ = writeln!(s, "T_recall (every depth > 0.95): {}", p.t_recall_strict.map_or("none".into(), |t| t.to_string()));
                }
                EvalResult::States(st) => {
                    let _ = writeln!(s, "\n## State diagnostics ({} positions of {})\n", st.params.len, st.params.source);
                    let _ = writeln!(s, "| layer | max state variance over heads at the end |\n|---|---|");
                    for l in &st.layers {
                        let v = l.heads.iter().filter_map(|h| h.state_var.last().copied()).fold(f64::NAN, f64::max);
                        let _ = writeln!(s, "| {} | {v:.3e} |", l.layer);
                    }
                }
                _ => {}
            }
        }
        let _ = writeln!(s, "\n## Cost of each stage\n");
        let _ = writeln!(s, "| stage | wall time (s) | peak memory (GB) |\n|---|---|---|");
        for c in costs {
            let _ = writeln!(s, "| {} | {:.1} | {:.2} ({}) |", c.stage, c.wall_s, c.peak_memory_gb, c.memory);
        }
        let _ = writeln!(s, "\nFigures: report/index.html. Typed results: analysis.json.");
        s
    }

    /// The figures of `stuffed report` for the analysis sweep, under `report/`.
    fn figures(&self) -> anyhow::Result<()> {
        let data = runtime()?.block_on(async { self.db.open_read_only().await?.report_data(std::slice::from_ref(&self.sweep)).await })?;
        let dir = self.out.join("report");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let opts =
            stuffed_reports::ReportOptions { log_scale: false, title: Some(format!("stuffed analyze: {}", self.checkpoint.display())) };
        stuffed_reports::write_report(&data, &dir, &opts).with_context(|| format!("writing the report into {}", dir.display()))?;
        Ok(())
    }
}
