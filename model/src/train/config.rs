//! The job config: everything one sweep point needs (model, tokenizer, data, training recipe,
//! evaluations to run afterwards), as YAML with `deny_unknown_fields` so a typo is an error.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{MambaConfig, ModelSpec};
use crate::data::{MixtureItem, Selection, SourceKind};
use crate::ssd::SsdBackend;
use crate::tokenizer::Tokenizer;
use crate::train::{AdamWConfig, Schedule};
use crate::yaml::{self, YamlError};

fn default_tokenizer() -> String {
    "bytes".into()
}
fn default_corpus() -> PathBuf {
    PathBuf::from("results/corpora/default")
}
fn one() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// A label for humans (the sweep runner sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub model: ModelSpec,
    /// bytes, gpt2 or hf:PATH; must match the corpus and any init checkpoint.
    #[serde(default = "default_tokenizer")]
    pub tokenizer: String,
    #[serde(default)]
    pub data: DataConfig,
    pub train: TrainConfig,
    /// Start from this checkpoint directory's weights (continued pre-training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// Evaluations run after training, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evals: Vec<EvalSpec>,
    /// Moments during training at which the evaluations also run (on the checkpoint of that
    /// step): fractions of the training (`0.25`), steps (`500`) or `{tokens: N}`. The final
    /// step is always evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evals_at: Vec<EvalPoint>,
    /// Stop training when an evaluation during training answers a criterion
    /// (`{criterion: {test: collapsed}, stop_when: true}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Corpus directory built by `stuffed corpus build`.
    #[serde(default = "default_corpus")]
    pub corpus: PathBuf,
    /// Train only on documents of at least this many tokens (the paper: 4K).
    #[serde(default)]
    pub min_doc_tokens: i64,
    /// Sources and weights; empty = the corpus alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixture: Vec<MixtureItem>,
    /// Truncated BPTT: each batch row's state is carried over this many consecutive segments.
    #[serde(default = "one")]
    pub tbptt_segments: i64,
    /// Cleaned corpora: only prose or code, per-source weights.
    #[serde(default, skip_serializing_if = "Selection::is_all")]
    pub select: Selection,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { corpus: default_corpus(), min_doc_tokens: 0, mixture: vec![], tbptt_segments: 1, select: Selection::default() }
    }
}

pub use stuffed_protocol::criterion::EarlyStop;

/// A moment of training at which the job's evaluations run (`evals_at`). A bare float is a
/// fraction of the training steps, a bare integer a step; `{tokens: N}` is the first step by
/// which N training tokens were seen (`{step: N}` and `{fraction: F}` are spelled out too).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged, expecting = "a fraction in (0, 1], a step (an integer >= 1), or one of {tokens: N}, {step: N}, {fraction: F}")]
pub enum EvalPoint {
    Step(i64),
    Fraction(f64),
    Keyed(KeyedPoint),
}

/// The spelled-out forms of an [`EvalPoint`]: exactly one of the three keys.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyedPoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
}

impl EvalPoint {
    /// The step of this point in a training of `total` steps of `tokens_per_step` tokens each,
    /// rounded up to a multiple of `multiple` (the TBPTT window: a checkpoint is only exact at
    /// its boundaries) and capped at `total`; an error when the point is outside the training.
    pub fn step(&self, total: i64, tokens_per_step: i64, multiple: i64) -> Result<i64, String> {
        let (step, fraction, tokens) = match *self {
            EvalPoint::Step(n) => (Some(n), None, None),
            EvalPoint::Fraction(f) => (None, Some(f), None),
            EvalPoint::Keyed(KeyedPoint { tokens, step, fraction }) => (step, fraction, tokens),
        };
        let raw = match (step, fraction, tokens) {
            (Some(n), None, None) => {
                if n < 1 || n > total {
                    return Err(format!("step {n} is not within the job's steps 1..={total}"));
                }
                n
            }
            (None, Some(f), None) => {
                if !(f > 0.0 && f <= 1.0) {
                    return Err(format!("fraction {f} is not within (0, 1] (write a step as an integer, e.g. 500)"));
                }
                ((f * total as f64).ceil() as i64).max(1)
            }
            (None, None, Some(n)) => {
                let all = total.saturating_mul(tokens_per_step);
                if n < 1 || n > all {
                    return Err(format!("{n} tokens is not within the job's training tokens 1..={all}"));
                }
                (n + tokens_per_step - 1) / tokens_per_step.max(1)
            }
            _ => return Err("give exactly one of `tokens`, `step` and `fraction`".into()),
        };
        let m = multiple.max(1);
        Ok((((raw + m - 1) / m) * m).min(total))
    }
}
pub use stuffed_protocol::Precision;

/// What a [`Precision`] means on a device: the tensor kind of matmuls and convolutions.
pub trait PrecisionExt {
    /// `Auto` resolved for `device`: bf16 on a GPU, fp32 on the CPU.
    fn resolve(self, device: tch::Device) -> Precision;
    fn kind(self, device: tch::Device) -> tch::Kind;
}

impl PrecisionExt for Precision {
    fn resolve(self, device: tch::Device) -> Precision {
        match self {
            Precision::Auto if device.is_cuda() => Precision::Bf16,
            Precision::Auto => Precision::Fp32,
            p => p,
        }
    }

    fn kind(self, device: tch::Device) -> tch::Kind {
        match self.resolve(device) {
            Precision::Bf16 => tch::Kind::BFloat16,
            _ => tch::Kind::Float,
        }
    }
}

fn d_beta1() -> f64 {
    0.9
}
fn d_beta2() -> f64 {
    0.95
}
fn d_eps() -> f64 {
    1e-8
}
fn d_wd() -> f64 {
    0.1
}
fn d_clip() -> f64 {
    1.0
}
fn d_decay_frac() -> f64 {
    0.2
}
fn d_device() -> String {
    "auto".into()
}
fn d_log_every() -> i64 {
    10
}
fn d_val_batches() -> i64 {
    4
}
fn d_keep() -> i64 {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Training length: tokens per sequence.
    pub seq_len: i64,
    /// Sequences per step (or give tokens_per_step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_step: Option<i64>,
    /// Sequences per forward/backward pass (gradient accumulation over the batch); default:
    /// the whole batch at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch_size: Option<i64>,
    /// Optimizer steps (or give total_tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<i64>,
    pub lr: f64,
    #[serde(default)]
    pub warmup_steps: i64,
    #[serde(default = "d_decay_frac")]
    pub decay_frac: f64,
    #[serde(default)]
    pub final_lr_frac: f64,
    #[serde(default = "d_beta1")]
    pub beta1: f64,
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_eps")]
    pub eps: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    #[serde(default)]
    pub precision: Precision,
    #[serde(default)]
    pub seed: u64,
    /// auto, cpu, cuda, cuda:N.
    #[serde(default = "d_device")]
    pub device: String,
    /// Steps between checkpoints (0: only the final one).
    #[serde(default)]
    pub checkpoint_every: i64,
    /// Checkpoints kept on disk.
    #[serde(default = "d_keep")]
    pub keep_checkpoints: i64,
    /// Steps between validation losses (0: only at the end).
    #[serde(default)]
    pub val_every: i64,
    #[serde(default = "d_val_batches")]
    pub val_batches: i64,
    #[serde(default = "d_log_every")]
    pub log_every: i64,
    /// SSD implementation: auto (fused on a GPU whose kernels load, else tensor), tensor or
    /// fused. The one that ran is recorded with each attempt.
    #[serde(default, skip_serializing_if = "is_auto")]
    pub ssd: SsdBackend,
    /// Run every training step as one CUDA graph (captured on the second step, replayed after):
    /// the same updates with a few thousand fewer kernel launches a step. Needs a CUDA device,
    /// the whole batch at once (no micro_batch_size below it) and no tbptt_segments; the attempt
    /// records its SSD as `<backend>+graph`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cuda_graph: bool,
}

fn is_auto(b: &SsdBackend) -> bool {
    *b == SsdBackend::Auto
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TrainConfig {
    pub fn batch(&self) -> i64 {
        self.batch_size.unwrap_or_else(|| self.tokens_per_step.unwrap_or(0) / self.seq_len.max(1))
    }
    pub fn total_steps(&self) -> i64 {
        let per_step = self.batch() * self.seq_len;
        self.steps.unwrap_or_else(|| (self.total_tokens.unwrap_or(0) + per_step - 1) / per_step.max(1))
    }
    pub fn schedule(&self) -> Schedule {
        Schedule { lr: self.lr, warmup_steps: self.warmup_steps, decay_frac: self.decay_frac, final_lr_frac: self.final_lr_frac }
    }
    /// Training tokens of one optimizer step.
    pub fn tokens_per_step(&self) -> i64 {
        self.batch() * self.seq_len
    }
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig { beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay }
    }
}

/// An evaluation run after training (see docs/results-schema.md for their results).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EvalSpec {
    Loss(LossSpec),
    Passkey(PasskeySpec),
    States(StatesSpec),
}

impl EvalSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            EvalSpec::Loss(_) => "loss",
            EvalSpec::Passkey(_) => "passkey",
            EvalSpec::States(_) => "states",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvalSource {
    /// Held-out documents of the job's corpus, concatenated with EOS.
    #[default]
    Corpus,
    /// A long run of '\n'.
    Newlines,
}

fn d_prompts() -> i64 {
    4
}
fn d_chunk() -> i64 {
    4096
}
fn d_bucket() -> i64 {
    256
}
fn d_none() -> String {
    "none".into()
}
fn d_fp32() -> Precision {
    Precision::Fp32
}
fn d_n() -> i64 {
    8
}

/// The authors' depths (i + 0.5) / n for n = 5: 0.1, 0.3, 0.5, 0.7, 0.9.
fn d_depths() -> Vec<f64> {
    vec![0.1, 0.3, 0.5, 0.7, 0.9]
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The authors' depths of n samples: (i + 0.5) / n.
pub fn centred_depths(n: usize) -> Vec<f64> {
    (0..n).map(|i| (i as f64 + 0.5) / n as f64).collect()
}

/// Most lengths one `{from, to, step}` grid may expand to.
pub const MAX_GRID_LENGTHS: i64 = 4096;

/// The lengths of a passkey evaluation: every length of a list (or of a grid `{from, to, step}`,
/// expanded when read), or a bisection for T_recall `{search: [LO, HI], resolution: R}`
/// (eval/length_search.rs: LO, HI and the multiples of R between them may be probed).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PasskeyLengths {
    List(Vec<i64>),
    Search { search: [i64; 2], resolution: i64 },
}

impl PasskeyLengths {
    /// The listed lengths (none for a search).
    pub fn listed(&self) -> &[i64] {
        match self {
            PasskeyLengths::List(v) => v,
            PasskeyLengths::Search { .. } => &[],
        }
    }

    /// The range of a search.
    pub fn search(&self) -> Option<SearchRange> {
        match *self {
            PasskeyLengths::List(_) => None,
            PasskeyLengths::Search { search, resolution } => Some(SearchRange { range: search, resolution }),
        }
    }
}

impl<'de> Deserialize<'de> for PasskeyLengths {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PasskeyLengths, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Grid {
            from: i64,
            to: i64,
            step: i64,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Search {
            search: [i64; 2],
            resolution: i64,
        }
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a list of lengths, a grid {from, to, step} or a search {search: [LO, HI], resolution: R}")]
        enum Lengths {
            List(Vec<i64>),
            Grid(Grid),
            Search(Search),
        }
        match Lengths::deserialize(d)? {
            Lengths::List(v) => Ok(PasskeyLengths::List(v)),
            Lengths::Search(s) => Ok(PasskeyLengths::Search { search: s.search, resolution: s.resolution }),
            Lengths::Grid(g) => {
                if g.step <= 0 || g.from <= 0 || g.to < g.from {
                    return Err(serde::de::Error::custom(format!(
                        "length grid needs 0 < from <= to and step > 0, got from {} to {} step {}",
                        g.from, g.to, g.step
                    )));
                }
                if (g.to - g.from) / g.step + 1 > MAX_GRID_LENGTHS {
                    return Err(serde::de::Error::custom(format!("length grid has more than {MAX_GRID_LENGTHS} lengths")));
                }
                Ok(PasskeyLengths::List((g.from..=g.to).step_by(g.step as usize).collect()))
            }
        }
    }
}

fn depths_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A list of depths in [0, 1], or a count n for the depths (i + 0.5) / n.",
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}
        ]
    })
}

impl schemars::JsonSchema for PasskeyLengths {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PasskeyLengths".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let int = || serde_json::json!({"type": "integer"});
        schemars::json_schema!({
            "description": "A list of lengths, a grid {from, to, step} or a search {search: [LO, HI], resolution: R}.",
            "anyOf": [
                {"type": "array", "items": int()},
                {"type": "object", "additionalProperties": false, "required": ["from", "to", "step"],
                 "properties": {"from": int(), "to": int(), "step": int()}},
                {"type": "object", "additionalProperties": false, "required": ["search", "resolution"],
                 "properties": {"search": {"type": "array", "items": int(), "minItems": 2, "maxItems": 2}, "resolution": int()}}
            ]
        })
    }
}

fn depths_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a list of depths or a count n (depths (i + 0.5) / n)")]
    enum Depths {
        Count(u32),
        List(Vec<f64>),
    }
    Ok(match Depths::deserialize(d)? {
        Depths::Count(n) => centred_depths(n as usize),
        Depths::List(v) => v,
    })
}

fn d_states_bucket() -> i64 {
    128
}
fn d_one_prompt() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LossSpec {
    #[serde(default)]
    pub source: EvalSource,
    /// Positions scored.
    pub len: i64,
    #[serde(default = "d_prompts")]
    pub prompts: i64,
    #[serde(default = "d_chunk")]
    pub chunk: i64,
    #[serde(default = "d_bucket")]
    pub bucket: i64,
    #[serde(default = "d_none")]
    pub mitigation: String,
    #[serde(default = "d_fp32")]
    pub precision: Precision,
    /// Corpus prompts: shortest document used (default: `data.min_doc_tokens`; the paper
    /// evaluates on documents of at least 16K tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_doc_tokens: Option<i64>,
}

/// How T_recall is read off the passkey grid (both are always reported; this picks `t_recall`).
pub use stuffed_protocol::eval::RecallRule;
pub use stuffed_protocol::eval::SearchRange;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeySpec {
    /// A list of lengths, a grid `{from, to, step}` (both ends included when on the grid), or
    /// a search `{search: [LO, HI], resolution: R}` for T_recall by bisection.
    pub lengths: PasskeyLengths,
    /// A list of depths in [0, 1], or a count n for the authors' depths (i + 0.5) / n.
    #[serde(default = "d_depths", deserialize_with = "depths_count")]
    #[schemars(schema_with = "depths_schema")]
    pub depths: Vec<f64>,
    /// Prompt generator: `authors` (default, their released code) or `exact` (exact lengths).
    #[serde(default)]
    pub template: crate::data::passkey::PasskeyFormat,
    /// Which definition `t_recall` reports (both are always in the result).
    #[serde(default, skip_serializing_if = "is_default")]
    pub recall_rule: RecallRule,
    /// Prompts per (length, depth) cell.
    #[serde(default = "d_n")]
    pub n: i64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "d_none")]
    pub mitigation: String,
    #[serde(default = "d_fp32")]
    pub precision: Precision,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatesSpec {
    pub len: i64,
    #[serde(default = "d_states_bucket")]
    pub bucket: i64,
    #[serde(default)]
    pub source: EvalSource,
    #[serde(default = "d_one_prompt")]
    pub prompts: i64,
    #[serde(default = "d_none")]
    pub mitigation: String,
    #[serde(default)]
    pub hist_layer: i64,
    #[serde(default)]
    pub hist_head: i64,
    /// Positions of the state-channel histograms (default: train_len and len).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hist_positions: Vec<i64>,
}

impl JobConfig {
    /// Reads, parses and validates a job config file.
    pub fn load(path: &Path) -> Result<JobConfig, YamlError> {
        let (cfg, text): (JobConfig, String) = yaml::from_file(path)?;
        cfg.check(&text, path)?;
        Ok(cfg)
    }

    /// Parses and validates YAML text (`origin` names it in errors).
    pub fn from_yaml(text: &str, origin: &Path) -> Result<JobConfig, YamlError> {
        let cfg: JobConfig = yaml::from_str(text, origin)?;
        cfg.check(text, origin)?;
        Ok(cfg)
    }

    /// The first semantic problem, located in `text`.
    pub fn check(&self, text: &str, origin: &Path) -> Result<(), YamlError> {
        match self.problems().into_iter().next() {
            None => Ok(()),
            Some((key, msg)) => Err(yaml::key_error(text, origin, &key, msg)),
        }
    }

    /// The model config this job trains (vocabulary from the tokenizer unless given).
    pub fn model_config(&self) -> crate::Result<MambaConfig> {
        let tok = Tokenizer::from_spec(&self.tokenizer)?;
        self.model.resolve(Some(tok.vocab_size()))
    }

    /// The steps of `evals_at`, sorted and without repeats (the final step may be among them:
    /// it is evaluated anyway). Points that do not resolve are left out: `problems` names them.
    pub fn eval_steps(&self) -> Vec<i64> {
        let (total, k) = (self.train.total_steps(), self.data.tbptt_segments);
        let mut steps: Vec<i64> = self.evals_at.iter().filter_map(|p| p.step(total, self.train.tokens_per_step(), k).ok()).collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// Every semantic problem as (key path, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = Vec::new();
        let mut need_pos = |key: &str, v: Option<i64>| {
            if let Some(v) = v {
                if v <= 0 {
                    p.push((key.into(), format!("must be a positive integer, got {v}")));
                }
            }
        };
        let t = &self.train;
        let too_large = crate::limits::job_problems(self);
        need_pos("train.seq_len", Some(t.seq_len));
        need_pos("train.batch_size", t.batch_size);
        need_pos("train.tokens_per_step", t.tokens_per_step);
        need_pos("train.micro_batch_size", t.micro_batch_size);
        need_pos("train.steps", t.steps);
        need_pos("train.total_tokens", t.total_tokens);
        need_pos("train.log_every", Some(t.log_every));
        need_pos("train.val_batches", Some(t.val_batches));
        need_pos("train.keep_checkpoints", Some(t.keep_checkpoints));
        need_pos("data.tbptt_segments", Some(self.data.tbptt_segments));
        if t.micro_batch_size.is_some() && self.data.tbptt_segments > 1 {
            p.push(("train.micro_batch_size".into(), "gradient accumulation does not combine with data.tbptt_segments > 1".into()));
        }
        if t.cuda_graph && self.data.tbptt_segments > 1 {
            p.push(("train.cuda_graph".into(), "a CUDA-graphed step does not carry a state: not with data.tbptt_segments > 1".into()));
        }
        if t.cuda_graph && t.micro_batch_size.is_some_and(|m| m < t.batch()) {
            p.push((
                "train.cuda_graph".into(),
                "a CUDA-graphed step takes the whole batch at once: not with train.micro_batch_size below the batch".into(),
            ));
        }
        if t.batch_size.is_some() == t.tokens_per_step.is_some() {
            p.push(("train.batch_size".into(), "give exactly one of train.batch_size and train.tokens_per_step".into()));
        } else if let Some(tps) = t.tokens_per_step {
            if t.seq_len > 0 && tps % t.seq_len != 0 {
                p.push(("train.tokens_per_step".into(), format!("{tps} is not a multiple of train.seq_len {}", t.seq_len)));
            }
        }
        if t.steps.is_some() == t.total_tokens.is_some() {
            p.push(("train.steps".into(), "give exactly one of train.steps and train.total_tokens".into()));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            p.push(("train.lr".into(), format!("must be a positive number, got {}", t.lr)));
        }
        for (k, v, lo, hi) in [
            ("train.beta1", t.beta1, 0.0, 1.0),
            ("train.beta2", t.beta2, 0.0, 1.0),
            ("train.decay_frac", t.decay_frac, 0.0, 1.0001),
            ("train.final_lr_frac", t.final_lr_frac, 0.0, 1.0001),
        ] {
            if !(v >= lo && v < hi) {
                p.push((k.into(), format!("must be in [{lo}, {}), got {v}", hi.floor())));
            }
        }
        for (k, v) in [("train.weight_decay", t.weight_decay), ("train.grad_clip", t.grad_clip), ("train.eps", t.eps)] {
            if !(v >= 0.0 && v.is_finite()) {
                p.push((k.into(), format!("must be a non-negative number, got {v}")));
            }
        }
        for (k, v) in [
            ("train.warmup_steps", t.warmup_steps),
            ("train.checkpoint_every", t.checkpoint_every),
            ("train.val_every", t.val_every),
            ("data.min_doc_tokens", self.data.min_doc_tokens),
        ] {
            if v < 0 {
                p.push((k.into(), format!("must not be negative, got {v}")));
            }
        }
        if let Err(e) = crate::cuda::parse_device_syntax(&t.device) {
            p.push(("train.device".into(), e));
        }
        match Tokenizer::from_spec(&self.tokenizer) {
            Err(e) => p.push(("tokenizer".into(), e.to_string())),
            Ok(tok) => {
                if let Err(e) = self.model.resolve(Some(tok.vocab_size())) {
                    p.push(("model".into(), e.to_string()));
                } else if let Ok(cfg) = self.model.resolve(Some(tok.vocab_size())) {
                    if cfg.vocab_size < tok.vocab_size() {
                        p.push((
                            "model.vocab_size".into(),
                            format!("{} is smaller than the tokenizer's {}", cfg.vocab_size, tok.vocab_size()),
                        ));
                    }
                }
            }
        }
        if let Some(es) = &self.early_stop {
            let kinds: Vec<&str> = self.evals.iter().map(EvalSpec::kind).collect();
            if let Err(e) = es.criterion.resolve(&kinds) {
                p.push(("early_stop.criterion".into(), e));
            } else if self.evals_at.is_empty() {
                let msg = "can never stop a job without `evals_at`: training stops only at an evaluation during training (add e.g. `evals_at: [0.25, 0.5, 0.75]`)";
                p.push(("early_stop".into(), msg.into()));
            }
        }
        if !self.evals_at.is_empty() && self.evals.is_empty() {
            p.push(("evals_at".into(), "evaluations during training need `evals` to run".into()));
        }
        let (total, k) = (t.total_steps(), self.data.tbptt_segments);
        if total > 0 && t.tokens_per_step() > 0 {
            for (i, point) in self.evals_at.iter().enumerate() {
                if let Err(e) = point.step(total, t.tokens_per_step(), k) {
                    p.push((format!("evals_at[{i}]"), e));
                }
            }
        }
        for (i, m) in self.data.mixture.iter().enumerate() {
            if m.source == SourceKind::Passkey {
                if let Ok(tok) = Tokenizer::from_spec(&self.tokenizer) {
                    let tpl = crate::data::passkey::PasskeyTemplate::new(&tok, m.template.unwrap_or_default());
                    let need = (tpl.min_len("12345") + tok.encode(" 12345").len()) as i64;
                    let need = need.max(m.min_len.unwrap_or(0) + tok.encode(" 12345").len() as i64);
                    if t.seq_len + 1 < need {
                        p.push((
                            "train.seq_len".into(),
                            format!(
                                "{} is too short for the passkey prompts of data.mixture[{i}]: they need {} tokens with tokenizer {}",
                                t.seq_len,
                                need - 1,
                                self.tokenizer
                            ),
                        ));
                    }
                }
            }
            if !(m.weight >= 0.0 && m.weight.is_finite()) {
                p.push((format!("data.mixture[{i}].weight"), format!("must be a non-negative number, got {}", m.weight)));
            }
            if m.min_len.is_some() && m.source != SourceKind::Passkey {
                p.push((format!("data.mixture[{i}].min_len"), "only passkey sources take min_len".into()));
            }
            if m.template.is_some() && m.source != SourceKind::Passkey {
                p.push((format!("data.mixture[{i}].template"), "only passkey sources take template".into()));
            }
            if m.score.is_some() && m.source != SourceKind::Passkey {
                p.push((format!("data.mixture[{i}].score"), "only passkey sources take score".into()));
            }
        }
        for (i, e) in self.evals.iter().enumerate() {
            self.eval_problems(i, e, &mut p);
        }
        // Values above their limits first: later checks may compute with them.
        too_large.into_iter().chain(p).collect()
    }

    fn eval_problems(&self, i: usize, e: &EvalSpec, p: &mut Vec<(String, String)>) {
        let key = |k: &str| format!("evals[{i}].{k}");
        let mut pos = |k: &str, v: i64| {
            if v <= 0 {
                p.push((key(k), format!("must be a positive integer, got {v}")));
            }
        };
        let mitigation = match e {
            EvalSpec::Loss(l) => {
                pos("len", l.len);
                pos("prompts", l.prompts);
                pos("chunk", l.chunk);
                pos("bucket", l.bucket);
                &l.mitigation
            }
            EvalSpec::Passkey(k) => {
                pos("n", k.n);
                let min = Tokenizer::from_spec(&self.tokenizer)
                    .map(|t| crate::data::passkey::PasskeyTemplate::new(&t, k.template).min_len("12345") as i64)
                    .unwrap_or(1);
                let short =
                    |l: i64| format!("{l} is shorter than the passkey template itself ({min} tokens with tokenizer {})", self.tokenizer);
                match &k.lengths {
                    PasskeyLengths::List(v) if v.is_empty() => p.push((key("lengths"), "must list at least one length".into())),
                    PasskeyLengths::List(v) => p.extend(
                        v.iter().enumerate().filter(|(_, &l)| l < min).map(|(j, &l)| (format!("evals[{i}].lengths[{j}]"), short(l))),
                    ),
                    PasskeyLengths::Search { search, resolution } => {
                        match crate::eval::length_search::LengthGrid::new(SearchRange { range: *search, resolution: *resolution }) {
                            Err((k, msg)) => p.push((format!("evals[{i}].lengths.{k}"), msg)),
                            Ok(_) if search[0] < min => p.push((format!("evals[{i}].lengths.search"), short(search[0]))),
                            Ok(_) => {}
                        }
                    }
                }
                if k.depths.is_empty() || k.depths.iter().any(|d| !(0.0..=1.0).contains(d)) {
                    p.push((key("depths"), "must list depths within [0, 1]".into()));
                }
                &k.mitigation
            }
            EvalSpec::States(s) => {
                pos("len", s.len);
                pos("bucket", s.bucket);
                pos("prompts", s.prompts);
                &s.mitigation
            }
        };
        if let Err(err) = mitigation.parse::<crate::eval::Mitigation>() {
            p.push((key("mitigation"), err.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passkey(yaml: &str) -> std::result::Result<PasskeySpec, String> {
        match crate::yaml::value_from_str::<EvalSpec>(yaml)? {
            EvalSpec::Passkey(p) => Ok(p),
            other => Err(format!("not a passkey spec: {other:?}")),
        }
    }

    #[test]
    fn passkey_lengths_take_a_grid_and_depths_a_count() {
        let p = passkey("kind: passkey\nlengths: {from: 1024, to: 4096, step: 1024}\ndepths: 4\n").unwrap();
        assert_eq!(p.lengths, PasskeyLengths::List(vec![1024, 2048, 3072, 4096]));
        assert_eq!(p.depths, vec![0.125, 0.375, 0.625, 0.875]);
        assert_eq!((p.template, p.recall_rule), (crate::data::passkey::PasskeyFormat::Authors, RecallRule::DepthMean));
        // `to` off the grid is not included; lists still work; the defaults are (i + 0.5) / 5.
        let p = passkey("kind: passkey\nlengths: {from: 100, to: 350, step: 100}\n").unwrap();
        assert_eq!(p.lengths.listed(), [100, 200, 300]);
        assert_eq!(p.depths, centred_depths(5));
        let p = passkey("kind: passkey\nlengths: [64, 128]\ndepths: [0.5]\ntemplate: exact\nrecall_rule: strict\n").unwrap();
        assert_eq!((p.lengths.listed(), p.depths), (&[64, 128][..], vec![0.5]));
        assert_eq!((p.template, p.recall_rule), (crate::data::passkey::PasskeyFormat::Exact, RecallRule::Strict));
        assert!(passkey("kind: passkey\nlengths: {from: 1024, to: 512, step: 1}\n").unwrap_err().contains("from <= to"));
        assert!(passkey("kind: passkey\nlengths: {from: 1, to: 100000, step: 1}\n").unwrap_err().contains("more than"));
    }

    #[test]
    fn passkey_lengths_take_a_search_that_writes_back_as_read() {
        let p = passkey("kind: passkey\nlengths: {search: [1024, 262144], resolution: 1024}\n").unwrap();
        assert_eq!(p.lengths, PasskeyLengths::Search { search: [1024, 262_144], resolution: 1024 });
        assert_eq!((p.lengths.listed(), p.lengths.search().map(|s| s.range)), (&[][..], Some([1024, 262_144])));
        let back = serde_json::to_string(&p.lengths).unwrap();
        assert_eq!(back, r#"{"search":[1024,262144],"resolution":1024}"#);
        // A list still writes back as a list (job ids hash the written config).
        let p = passkey("kind: passkey\nlengths: [64, 128]\n").unwrap();
        assert_eq!(serde_json::to_string(&p.lengths).unwrap(), "[64,128]");
        for bad in ["{search: [1024, 4096]}", "{search: [1024], resolution: 8}", "{search: [1, 2], resolution: 1, step: 1}"] {
            let e = passkey(&format!("kind: passkey\nlengths: {bad}\n")).unwrap_err();
            assert!(e.contains("a search {search: [LO, HI], resolution: R}"), "{bad}: {e}");
        }
    }

    /// A job with one passkey evaluation whose `lengths` are `lengths`; its first problem.
    fn passkey_problem(lengths: &str) -> Option<(String, String)> {
        let yaml = format!(
            "model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\ntrain: {{seq_len: 16, batch_size: 2, steps: 2, lr: 0.01, device: cpu}}\nevals:\n  - kind: passkey\n    lengths: {lengths}\n"
        );
        let job: JobConfig = crate::yaml::value_from_str(&yaml).unwrap();
        job.problems().into_iter().next()
    }

    /// `train.cuda_graph` is refused where a step cannot be one graph, by its key; unset it stays
    /// out of the canonical config (existing job ids keep their value).
    #[test]
    fn cuda_graph_is_checked_and_unset_stays_out() {
        let job = |train: &str, data: &str| -> JobConfig {
            let yaml = format!(
                "model: {{d_model: 32, n_layer: 1, d_state: 4, headdim: 16}}\ntrain: {{seq_len: 16, batch_size: 4, steps: 2, lr: 0.01, device: cpu{train}}}\n{data}"
            );
            crate::yaml::value_from_str(&yaml).unwrap()
        };
        let first = |j: &JobConfig| j.problems().into_iter().next();
        assert_eq!(first(&job(", cuda_graph: true", "")), None);
        let (key, msg) = first(&job(", cuda_graph: true", "data: {tbptt_segments: 2}\n")).unwrap();
        assert_eq!(key, "train.cuda_graph");
        assert!(msg.contains("tbptt_segments"), "{msg}");
        let (key, msg) = first(&job(", cuda_graph: true, micro_batch_size: 2", "")).unwrap();
        assert_eq!(key, "train.cuda_graph");
        assert!(msg.contains("micro_batch_size"), "{msg}");
        assert_eq!(first(&job(", cuda_graph: true, micro_batch_size: 4", "")), None);
        let plain = serde_json::to_value(job("", "")).unwrap();
        assert!(plain["train"].get("cuda_graph").is_none(), "{plain}");
        let on = serde_json::to_value(job(", cuda_graph: true", "")).unwrap();
        assert_eq!(on["train"]["cuda_graph"], serde_json::json!(true));
    }

    #[test]
    fn passkey_search_problems_name_their_key() {
        assert_eq!(passkey_problem("{search: [1024, 262144], resolution: 1024}"), None);
        let (key, msg) = passkey_problem("{search: [4096, 1024], resolution: 1024}").unwrap();
        assert_eq!(key, "evals[0].lengths.search");
        assert!(msg.contains("0 < LO < HI, got [4096, 1024]"), "{msg}");
        let (key, msg) = passkey_problem("{search: [1024, 4096], resolution: 0}").unwrap();
        assert_eq!((key.as_str(), msg.as_str()), ("evals[0].lengths.resolution", "must be a positive integer, got 0"));
        let (key, msg) = passkey_problem("{search: [200, 16000000], resolution: 1}").unwrap();
        assert!(key == "evals[0].lengths.resolution" && msg.contains("more than the limit 24"), "{msg}");
        let (key, msg) = passkey_problem("{search: [40, 4096], resolution: 1024}").unwrap();
        assert!(key == "evals[0].lengths.search" && msg.contains("40 is shorter than the passkey template"), "{msg}");
        let (key, msg) = passkey_problem("{search: [1024, 100000000], resolution: 10000000}").unwrap();
        assert!(key == "evals[0].lengths.search" && msg.contains("larger than the limit"), "{msg}");
    }
}
