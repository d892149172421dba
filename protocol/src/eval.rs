//! Evaluation results (docs/results-schema.md): what a worker's `eval` event carries, what the
//! database stores in `evals.result`, what `stuffed eval ... --format json` prints and what the
//! reports read. One enum, tagged by `kind`; each result holds the parameters it ran with.
//!
//! Readers are lenient where the data allow: missing fields take their defaults (results of
//! earlier versions lack some), and `null` numbers read as NaN (serde_json writes NaN and ±inf
//! as `null`, e.g. for an exploding state); NaN values are left out of figures.
use serde::{Deserialize, Serialize};

use crate::serde_nan::{counts, f64_or_nan, vec_or_nan, vecs_or_nan};
use crate::Precision;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EvalResult {
    Loss(LossResult),
    Passkey(PasskeyResult),
    States(StatesResult),
}

impl EvalResult {
    /// The `kind` of the result (`loss`, `passkey`, `states`).
    pub fn kind(&self) -> &'static str {
        match self {
            EvalResult::Loss(_) => "loss",
            EvalResult::Passkey(_) => "passkey",
            EvalResult::States(_) => "states",
        }
    }

    /// The mitigation the evaluation ran with (canonical text, `none` for none).
    pub fn mitigation(&self) -> &str {
        match self {
            EvalResult::Loss(r) => &r.params.mitigation,
            EvalResult::Passkey(r) => &r.params.mitigation,
            EvalResult::States(r) => &r.params.mitigation,
        }
    }

    /// The input of a loss or states evaluation (`corpus`, `newlines`, `text`); `corpus` for
    /// passkey prompts.
    pub fn source(&self) -> &str {
        match self {
            EvalResult::Loss(r) => &r.params.source,
            EvalResult::States(r) => &r.params.source,
            EvalResult::Passkey(_) => "corpus",
        }
    }

    /// The parameters as JSON (what the database stores in `evals.params`).
    pub fn params_json(&self) -> serde_json::Value {
        let v = match self {
            EvalResult::Loss(r) => serde_json::to_value(&r.params),
            EvalResult::Passkey(r) => serde_json::to_value(&r.params),
            EvalResult::States(r) => serde_json::to_value(&r.params),
        };
        v.expect("parameters serialize")
    }

    /// Parses a stored result.
    pub fn from_json(text: &str) -> Result<EvalResult, crate::Error> {
        serde_json::from_str(text).map_err(|e| crate::Error::Malformed { what: "evaluation result", message: e.to_string() })
    }

    /// Reads a result held as a JSON value (a dump's evaluation).
    pub fn from_value(v: &serde_json::Value) -> Result<EvalResult, crate::Error> {
        EvalResult::deserialize(v).map_err(|e| crate::Error::Malformed { what: "evaluation result", message: e.to_string() })
    }

    /// The headline numbers of the result, as (column, value) pairs: `loss[corpus].mean`,
    /// `loss[newlines,rri:...].collapsed`, `passkey.t_recall`, ... (`results list`, `results
    /// show`, the dashboard).
    pub fn headline(&self) -> Vec<(String, serde_json::Value)> {
        use serde_json::json;
        let m = self.mitigation();
        let tagged = |sep: &str| if m == "none" { String::new() } else { format!("{sep}{m}") };
        match self {
            EvalResult::Loss(r) => {
                let tag = format!("loss[{}{}]", r.params.source, tagged(","));
                let c = r.collapse.as_ref();
                vec![
                    (format!("{tag}.mean"), json!(r.mean_loss)),
                    (format!("{tag}.collapsed"), json!(c.and_then(|c| c.collapsed))),
                    (format!("{tag}.first_collapse"), json!(c.and_then(|c| c.first_position))),
                ]
            }
            EvalResult::Passkey(r) => {
                let t = tagged("");
                let tag = if t.is_empty() { "passkey".to_string() } else { format!("passkey[{t}]") };
                vec![(format!("{tag}.t_recall"), json!(r.t_recall))]
            }
            EvalResult::States(_) => vec![],
        }
    }

    pub fn as_loss(&self) -> Option<&LossResult> {
        match self {
            EvalResult::Loss(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_passkey(&self) -> Option<&PasskeyResult> {
        match self {
            EvalResult::Passkey(r) => Some(r),
            _ => None,
        }
    }

    pub fn as_states(&self) -> Option<&StatesResult> {
        match self {
            EvalResult::States(r) => Some(r),
            _ => None,
        }
    }
}

fn none() -> String {
    "none".into()
}

fn corpus() -> String {
    "corpus".into()
}

// ---- loss by position ----

/// Parameters of a loss-by-position evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossParams {
    /// `corpus` (held-out documents), `newlines` (the newline probe) or `text` (a file).
    pub source: String,
    /// The file of a `text` source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Tokens per prompt.
    pub len: i64,
    pub prompts: i64,
    /// Tokens per streamed forward call.
    pub chunk: i64,
    /// Position bucket width of the curve.
    pub bucket: i64,
    pub train_len: Option<i64>,
    pub mitigation: String,
    pub precision: Precision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Shortest held-out document a prompt is taken from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_doc_tokens: Option<i64>,
    /// Distinct documents behind the prompts (none for the newline probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<usize>,
}

impl Default for LossParams {
    fn default() -> Self {
        LossParams {
            source: corpus(),
            path: None,
            len: 0,
            prompts: 0,
            chunk: 0,
            bucket: 0,
            train_len: None,
            mitigation: none(),
            precision: Precision::Fp32,
            device: None,
            min_doc_tokens: None,
            documents: None,
        }
    }
}

/// One position bucket: mean loss (nats) over positions `start..end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: i64,
    pub end: i64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub loss: f64,
}

/// A collapse verdict (docs/methodology.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Collapsed,
    NotCollapsed,
    Inconclusive,
}

/// Why a verdict is inconclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inconclusive {
    /// No bucket (after dropping the first and last) within T_train.
    NoReference,
    /// No bucket (after dropping the first and last) at or after T_train.
    NoBeyond,
    /// Fewer sampled prompts than a decisive verdict needs.
    TooFewPrompts,
    /// The 95% interval of the ratio contains the factor 2.
    IntervalContainsThreshold,
    /// The threshold (2x the reference loss) is above ln V: the criterion cannot trigger.
    Degenerate,
}

/// The state-collapse verdict of a loss evaluation (paper v4 §4.2; the rule with its
/// uncertainty in docs/methodology.md). Results written before the verdict carried its
/// uncertainty have only the first six fields (`verdict` is then absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Collapse {
    pub train_len: i64,
    pub max_within_train: Option<f64>,
    pub threshold: Option<f64>,
    /// `Some` only for a decisive verdict (`None` when inconclusive).
    pub collapsed: Option<bool>,
    pub first_position: Option<i64>,
    /// Point ratio: max beyond T / max reference.
    pub worst_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<Inconclusive>,
    /// 95% bootstrap interval of the ratio (the point for a probe).
    pub ratio_ci: Option<[f64; 2]>,
    /// Max beyond T - max reference loss, nats.
    pub rise: Option<f64>,
    /// ln V of the model's output distribution.
    pub uniform_loss: Option<f64>,
    /// Prompts behind the curve.
    pub prompts: usize,
    /// The same text for every prompt (no sampling over prompts).
    pub probe: bool,
    /// Buckets dropped at each end (the authors drop the first and the last).
    pub dropped_buckets: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossResult {
    pub params: LossParams,
    pub buckets: Vec<Bucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collapse: Option<Collapse>,
    pub mean_loss: Option<f64>,
    pub tokens: i64,
    pub wall_s: f64,
    pub tokens_per_s: f64,
    /// Mean loss per prompt and bucket (`[prompt][bucket]`), for resampling the verdict
    /// (absent in results before it).
    #[serde(deserialize_with = "vecs_or_nan", skip_serializing_if = "Vec::is_empty")]
    pub prompt_buckets: Vec<Vec<f64>>,
}

impl LossResult {
    fn finite(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets.iter().filter(|b| b.loss.is_finite())
    }

    /// (bucket midpoint, loss) pairs with finite values, in bucket order.
    pub fn midpoints(&self) -> Vec<(f64, f64)> {
        self.finite().map(|b| (0.5 * (b.start + b.end) as f64, b.loss)).collect()
    }

    /// [`LossResult::midpoints`] with the width (`end - start`) of each of those buckets.
    pub fn midpoints_and_widths(&self) -> (Vec<(f64, f64)>, Vec<f64>) {
        self.finite().map(|b| ((0.5 * (b.start + b.end) as f64, b.loss), (b.end - b.start) as f64)).unzip()
    }

    /// The end of the last bucket with a finite loss (how far the evaluation reached).
    pub fn max_position(&self) -> Option<f64> {
        self.finite().map(|b| b.end as f64).reduce(f64::max)
    }

    pub fn collapsed(&self) -> Option<bool> {
        self.collapse.as_ref().and_then(|c| c.collapsed)
    }
}

// ---- passkey retrieval ----

/// The passkey prompt generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PasskeyFormat {
    /// The authors' text, byte for byte (prompts of at most the length).
    #[default]
    Authors,
    /// Prompts of exactly the length (the earlier generator).
    Exact,
}

impl std::fmt::Display for PasskeyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasskeyFormat::Authors => "authors",
            PasskeyFormat::Exact => "exact",
        })
    }
}

/// Accuracy above which a length counts as recalled (the paper's 95%).
pub const RECALL_THRESHOLD: f64 = 0.95;

/// Which reading of the accuracy grid `t_recall` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecallRule {
    /// The authors': the largest length whose accuracy averaged over depths is > 0.95.
    #[default]
    DepthMean,
    /// The largest length with accuracy > 0.95 at every depth.
    Strict,
}

impl RecallRule {
    /// Whether one length counts as recalled from the accuracies of its depths: their mean
    /// (NaN left out) above [`RECALL_THRESHOLD`], or every one of them above it. No accuracy
    /// is no recall. The one definition behind every T_recall (lists, searches, old results).
    pub fn recalled(self, accuracies: &[f64]) -> bool {
        match self {
            RecallRule::DepthMean => {
                let finite: Vec<f64> = accuracies.iter().copied().filter(|a| a.is_finite()).collect();
                !finite.is_empty() && finite.iter().sum::<f64>() / finite.len() as f64 > RECALL_THRESHOLD
            }
            RecallRule::Strict => !accuracies.is_empty() && accuracies.iter().all(|&a| a > RECALL_THRESHOLD),
        }
    }
}

/// The range of a passkey length search (`lengths: {search: [LO, HI], resolution: R}` in a job
/// config): LO, HI and the multiples of R between them are the lengths it may probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchRange {
    /// [LO, HI], LO < HI, probed as written (they need not be multiples of the resolution).
    pub range: [i64; 2],
    /// Interior probes are multiples of it: the final bracket is at most this wide.
    pub resolution: i64,
}

/// One length probed by a search, in the order run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchProbe {
    pub len: i64,
    /// Accuracy averaged over the depths.
    #[serde(deserialize_with = "f64_or_nan")]
    pub accuracy: f64,
    /// Recalled under the evaluation's `recall_rule` (the same test as a listed length's).
    pub recalled: bool,
}

/// Where a length search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchOutcome {
    /// LO recalled, HI not: T_recall in [`last_pass`, `first_fail`), adjacent probes.
    Bracketed,
    /// HI recalled: T_recall >= HI (right-censored; `t_recall` is HI).
    AboveRange,
    /// LO not recalled: T_recall below the range (`t_recall` is null).
    BelowRange,
    /// LO not recalled but HI recalled: the accuracy is not monotone in the length; the search
    /// stopped there (`t_recall` is HI, the largest recalled length, as for a list).
    NonMonotone,
}

/// What a passkey length search did: its probes and the bracket they leave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthSearch {
    pub outcome: SearchOutcome,
    /// The longest length recalled (`t_recall` under the evaluation's rule).
    pub last_pass: Option<i64>,
    /// The shortest length probed above `last_pass` that was not recalled.
    pub first_fail: Option<i64>,
    /// Every probe in the order run (LO and HI first).
    pub probes: Vec<SearchProbe>,
    /// No recalled probe is longer than a probe that was not recalled.
    pub monotone: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasskeyParams {
    /// The lengths evaluated (for a search: the lengths it probed, ascending).
    pub lengths: Vec<i64>,
    pub depths: Vec<f64>,
    /// Prompts per (length, depth) cell.
    pub n: i64,
    pub seed: u64,
    pub mitigation: String,
    pub precision: Precision,
    /// Tokens generated for the answer.
    pub answer_tokens: i64,
    pub template: PasskeyFormat,
    pub recall_rule: RecallRule,
    /// The range of a length search (then `lengths` are the lengths it probed, ascending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchRange>,
}

impl Default for PasskeyParams {
    fn default() -> Self {
        PasskeyParams {
            lengths: Vec::new(),
            depths: Vec::new(),
            n: 0,
            seed: 0,
            mitigation: none(),
            precision: Precision::Fp32,
            answer_tokens: 0,
            template: PasskeyFormat::default(),
            recall_rule: RecallRule::default(),
            search: None,
        }
    }
}

/// One cell of the passkey heat map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyCell {
    pub len: i64,
    pub depth: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub accuracy: f64,
    #[serde(default)]
    pub n: i64,
}

/// Accuracy over all depths at one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LenAccuracy {
    pub len: i64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub accuracy: f64,
}

/// T_recall at one depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthRecall {
    pub depth: f64,
    pub t_recall: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasskeyResult {
    pub params: PasskeyParams,
    pub cells: Vec<PasskeyCell>,
    pub accuracy_by_len: Vec<LenAccuracy>,
    /// The reading chosen by `params.recall_rule`.
    pub t_recall: Option<i64>,
    /// Largest length with depth-averaged accuracy > 0.95 (the authors').
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_recall_mean: Option<i64>,
    /// Largest length with accuracy > 0.95 at every depth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_recall_strict: Option<i64>,
    pub t_recall_per_depth: Vec<DepthRecall>,
    /// The probes and bracket of a length search (`params.search`); absent for a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<LengthSearch>,
    pub wall_s: f64,
    pub tokens_per_s: f64,
}

impl PasskeyResult {
    /// Lengths evaluated, ascending.
    pub fn lengths(&self) -> Vec<i64> {
        let mut l: Vec<i64> = self.cells.iter().map(|c| c.len).collect();
        l.sort_unstable();
        l.dedup();
        l
    }

    /// Accuracy at `len` averaged over its depths.
    pub fn mean_accuracy(&self, len: i64) -> Option<f64> {
        let a: Vec<f64> = self.cells.iter().filter(|c| c.len == len && c.accuracy.is_finite()).map(|c| c.accuracy).collect();
        (!a.is_empty()).then(|| a.iter().sum::<f64>() / a.len() as f64)
    }

    /// The highest depth-averaged accuracy at any length (`None` without cells).
    pub fn best_mean_accuracy(&self) -> Option<f64> {
        self.lengths().into_iter().filter_map(|l| self.mean_accuracy(l)).reduce(f64::max)
    }

    /// The largest length recalled under `rule`, from the cells.
    pub fn recall_from_cells(&self, rule: RecallRule) -> Option<i64> {
        t_recall_of(&self.cells, rule)
    }

    /// The authors' T_recall: the largest length whose depth-averaged accuracy is > 0.95
    /// (recomputed from the cells for results that predate `t_recall_mean`).
    pub fn recall_mean(&self) -> Option<i64> {
        self.t_recall_mean.or_else(|| self.recall_from_cells(RecallRule::DepthMean))
    }

    /// The strict T_recall: the largest length with accuracy > 0.95 at every depth.
    pub fn recall_strict(&self) -> Option<i64> {
        self.t_recall_strict.or_else(|| self.recall_from_cells(RecallRule::Strict))
    }
}

/// The largest length of `cells` recalled under `rule` ([`RecallRule::recalled`] over the
/// accuracies of its depths); `None` when no length is.
pub fn t_recall_of(cells: &[PasskeyCell], rule: RecallRule) -> Option<i64> {
    let mut lens: Vec<i64> = cells.iter().map(|c| c.len).collect();
    lens.sort_unstable();
    lens.dedup();
    lens.into_iter()
        .filter(|&l| {
            let accs: Vec<f64> = cells.iter().filter(|c| c.len == l).map(|c| c.accuracy).collect();
            rule.recalled(&accs)
        })
        .max()
}

// ---- state statistics ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatesParams {
    pub len: i64,
    pub bucket: i64,
    pub source: String,
    pub prompts: i64,
    pub mitigation: String,
    pub hist_layer: i64,
    pub hist_head: i64,
    pub hist_positions: Vec<i64>,
    pub train_len: Option<i64>,
}

impl Default for StatesParams {
    fn default() -> Self {
        StatesParams {
            len: 0,
            bucket: 0,
            source: corpus(),
            prompts: 0,
            mitigation: none(),
            hist_layer: 0,
            hist_head: 0,
            hist_positions: Vec::new(),
            train_len: None,
        }
    }
}

/// Per-head series, one value per entry of the result's `positions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeadStates {
    pub head: i64,
    #[serde(deserialize_with = "vec_or_nan")]
    pub state_mean: Vec<f64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub state_var: Vec<f64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub state_rms: Vec<f64>,
    /// log of the first token's retention (sum of log decays since position 0).
    #[serde(deserialize_with = "vec_or_nan")]
    pub log_retention: Vec<f64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub dt_mean: Vec<f64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub b_mean: Vec<f64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub x_mean: Vec<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerStates {
    pub layer: i64,
    pub heads: Vec<HeadStates>,
}

/// Histogram of one head's state channels at a few positions: `bins` are the bin edges
/// (`counts[i].len() + 1` values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StateHistogram {
    pub layer: i64,
    pub head: i64,
    pub positions: Vec<i64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub bins: Vec<f64>,
    #[serde(deserialize_with = "counts")]
    pub counts: Vec<Vec<i64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatesResult {
    pub params: StatesParams,
    pub positions: Vec<i64>,
    pub layers: Vec<LayerStates>,
    pub histogram: Option<StateHistogram>,
    pub wall_s: f64,
}

impl StatesResult {
    /// Checks that every series has one value per position.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let n = self.positions.len();
        for l in &self.layers {
            for h in &l.heads {
                for (name, series) in [("state_var", &h.state_var), ("log_retention", &h.log_retention)] {
                    if !series.is_empty() && series.len() != n {
                        return Err(crate::Error::Malformed {
                            what: "states result",
                            message: format!("layer {} head {} has {} {name} values for {n} positions", l.layer, h.head, series.len()),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The layer whose heads reach the largest state variance (where collapse shows first);
    /// ties go to the lowest layer index.
    pub fn loudest_layer(&self) -> Option<i64> {
        let mut best: Option<(f64, i64)> = None;
        for l in &self.layers {
            let m = l.heads.iter().flat_map(|h| h.state_var.iter().copied()).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
            if best.is_none_or(|(bm, bl)| m > bm || (m == bm && l.layer < bl)) {
                best = Some((m, l.layer));
            }
        }
        best.map(|(_, l)| l)
    }

    pub fn layer(&self, layer: i64) -> Option<&LayerStates> {
        self.layers.iter().find(|l| l.layer == layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nulls_read_as_nan_and_kinds_dispatch() {
        let r: EvalResult = serde_json::from_value(json!({"kind": "loss", "buckets": [
            {"start": 0, "end": 256, "loss": 3.0}, {"start": 256, "end": 512, "loss": null}]}))
        .unwrap();
        let l = r.as_loss().unwrap();
        assert!(l.buckets[1].loss.is_nan());
        assert_eq!(l.midpoints(), vec![(128.0, 3.0)]);
        assert_eq!(l.midpoints_and_widths(), (vec![(128.0, 3.0)], vec![256.0]));
        assert_eq!(l.max_position(), Some(256.0));
        assert_eq!(l.collapsed(), None);
        assert_eq!((r.kind(), r.mitigation(), r.source()), ("loss", "none", "corpus"));
        let s: EvalResult = serde_json::from_value(json!({"kind": "states", "positions": [128, 256], "layers": [{"layer": 0,
            "heads": [{"head": 0, "state_var": [1.0, null], "log_retention": [-1.0, -2.0]}]}]}))
        .unwrap();
        let s = s.as_states().unwrap();
        assert!(s.layers[0].heads[0].state_var[1].is_nan());
        assert_eq!(s.loudest_layer(), Some(0));
        s.validate().unwrap();
    }

    #[test]
    fn ragged_states_are_rejected() {
        let s: StatesResult = serde_json::from_value(json!({"positions": [128, 256], "layers": [{"layer": 0,
            "heads": [{"head": 0, "state_var": [1.0]}]}]}))
        .unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("1 state_var values for 2 positions"), "{e}");
    }

    #[test]
    fn one_recall_rule_for_lists_searches_and_old_results() {
        assert!(RecallRule::DepthMean.recalled(&[1.0, 0.92]) && !RecallRule::Strict.recalled(&[1.0, 0.92]));
        assert!(!RecallRule::DepthMean.recalled(&[0.95]) && !RecallRule::DepthMean.recalled(&[]) && !RecallRule::Strict.recalled(&[]));
        assert!(RecallRule::DepthMean.recalled(&[1.0, f64::NAN]) && !RecallRule::Strict.recalled(&[1.0, f64::NAN]));
        // A result written before searches existed reads without one; a search round-trips.
        let old: PasskeyResult =
            serde_json::from_value(json!({"cells": [{"len": 256, "depth": 0.5, "accuracy": 1.0}], "t_recall": 256})).unwrap();
        assert_eq!((&old.search, old.params.search, old.recall_mean()), (&None, None, Some(256)));
        let probe = |len, accuracy| SearchProbe { len, accuracy, recalled: RecallRule::DepthMean.recalled(&[accuracy]) };
        let r = PasskeyResult {
            params: PasskeyParams {
                lengths: vec![256, 512, 1024],
                search: Some(SearchRange { range: [256, 1024], resolution: 256 }),
                ..Default::default()
            },
            search: Some(LengthSearch {
                outcome: SearchOutcome::Bracketed,
                last_pass: Some(256),
                first_fail: Some(512),
                probes: vec![probe(256, 1.0), probe(1024, 0.0), probe(512, 0.5)],
                monotone: true,
            }),
            ..Default::default()
        };
        let text = serde_json::to_string(&EvalResult::Passkey(r.clone())).unwrap();
        assert!(text.contains(r#""search":{"outcome":"bracketed","last_pass":256,"first_fail":512,"probes":[{"len":256"#), "{text}");
        assert_eq!(EvalResult::from_json(&text).unwrap(), EvalResult::Passkey(r));
    }

    #[test]
    fn params_keep_their_written_order() {
        let r = EvalResult::Loss(LossResult { params: LossParams { len: 4096, ..Default::default() }, ..Default::default() });
        let p = r.params_json().to_string();
        assert!(
            p.starts_with(
                r#"{"source":"corpus","len":4096,"prompts":0,"chunk":0,"bucket":0,"train_len":null,"mitigation":"none","precision":"fp32"}"#
            ),
            "{p}"
        );
        let back = EvalResult::from_json(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(EvalResult::from_json(r#"{"kind": "vibes"}"#).is_err());
    }
}
