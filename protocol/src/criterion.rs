//! A yes/no question asked of a job's evaluations: "did it collapse?", "is the worst loss ratio
//! past T_train above 1.5?", "is passkey accuracy at 4096 tokens at least 0.95?". The adaptive
//! search bisects an ordered sweep key on it (runner `sweep::search`), and a worker stops a job
//! early when an evaluation during training has already answered it (`early_stop`). One type,
//! so both read a result the same way.
//!
//! In YAML: `{test: collapsed}`, `{test: ratio, above: 1.5}`, `{test: passkey, len: 4096,
//! accuracy: 0.95}`; each takes an optional `eval: N` (the index in the job's `evals`; default:
//! the first evaluation of the kind the test reads).
use serde::{Deserialize, Serialize};

use crate::eval::{EvalResult, Verdict};

/// The question, and which evaluation answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "test", rename_all = "snake_case", deny_unknown_fields)]
pub enum Criterion {
    /// The loss evaluation's state-collapse verdict (docs/methodology.md): yes when collapsed,
    /// no when not collapsed, undecided when inconclusive.
    Collapsed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eval: Option<usize>,
    },
    /// The loss evaluation's point ratio (worst bucket past T_train over the worst within) is
    /// above `above`: a softer question than the 2x verdict, for small models.
    Ratio {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eval: Option<usize>,
        above: f64,
    },
    /// Passkey accuracy at prompt length `len` is at least `accuracy`.
    Passkey {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eval: Option<usize>,
        len: i64,
        accuracy: f64,
    },
}

/// What a job's evaluations say to a [`Criterion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Yes,
    No,
    /// The evaluation ran but cannot answer (an inconclusive verdict, a NaN ratio); why.
    Undecided(String),
}

impl Answer {
    /// `Some(true)` for yes, `Some(false)` for no, `None` when undecided.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Answer::Yes => Some(true),
            Answer::No => Some(false),
            Answer::Undecided(_) => None,
        }
    }

    /// `yes`, `no` or `undecided`.
    pub fn word(&self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::Undecided(_) => "undecided",
        }
    }

    fn of(b: bool) -> Answer {
        if b {
            Answer::Yes
        } else {
            Answer::No
        }
    }
}

impl Criterion {
    /// The evaluation index written in the criterion, if any.
    pub fn eval_index(&self) -> Option<usize> {
        match self {
            Criterion::Collapsed { eval } | Criterion::Ratio { eval, .. } | Criterion::Passkey { eval, .. } => *eval,
        }
    }

    /// The kind of evaluation it reads (`loss` or `passkey`).
    pub fn eval_kind(&self) -> &'static str {
        match self {
            Criterion::Collapsed { .. } | Criterion::Ratio { .. } => "loss",
            Criterion::Passkey { .. } => "passkey",
        }
    }

    /// Checks the criterion against the kinds of a job's evaluations (in config order) and
    /// returns the index of the evaluation that answers it.
    pub fn resolve(&self, kinds: &[&str]) -> Result<usize, String> {
        let want = self.eval_kind();
        if let Criterion::Ratio { above, .. } = self {
            if !(above.is_finite() && *above > 0.0) {
                return Err(format!("`above` must be a positive ratio, got {above}"));
            }
        }
        if let Criterion::Passkey { len, accuracy, .. } = self {
            if *len <= 0 {
                return Err(format!("`len` must be a positive prompt length, got {len}"));
            }
            if !(0.0..=1.0).contains(accuracy) {
                return Err(format!("`accuracy` must be within 0..1, got {accuracy}"));
            }
        }
        match self.eval_index() {
            Some(i) => match kinds.get(i) {
                Some(k) if *k == want => Ok(i),
                Some(k) => Err(format!("evaluation {i} is a {k} evaluation; the `{}` test reads a {want} evaluation", self.name())),
                None => Err(format!("evaluation {i} does not exist (the job has {} evaluations)", kinds.len())),
            },
            None => kinds
                .iter()
                .position(|k| *k == want)
                .ok_or_else(|| format!("the `{}` test reads a {want} evaluation and the job has none", self.name())),
        }
    }

    /// The test's name as written (`collapsed`, `ratio`, `passkey`).
    pub fn name(&self) -> &'static str {
        match self {
            Criterion::Collapsed { .. } => "collapsed",
            Criterion::Ratio { .. } => "ratio",
            Criterion::Passkey { .. } => "passkey",
        }
    }

    /// A short text for tables: `collapsed`, `ratio > 1.5`, `passkey@4096 >= 0.95`.
    pub fn describe(&self) -> String {
        match self {
            Criterion::Collapsed { .. } => "collapsed".into(),
            Criterion::Ratio { above, .. } => format!("ratio > {above}"),
            Criterion::Passkey { len, accuracy, .. } => format!("passkey@{len} >= {accuracy}"),
        }
    }

    /// The answer of one evaluation result (the one [`Criterion::resolve`] picked). A result of
    /// the wrong kind, or a passkey result that did not probe `len`, is an error.
    pub fn answer(&self, result: &EvalResult) -> Result<Answer, String> {
        match (self, result) {
            (Criterion::Collapsed { .. }, EvalResult::Loss(r)) => {
                let Some(c) = &r.collapse else { return Ok(Answer::Undecided("no collapse verdict (no training length)".into())) };
                Ok(match (c.verdict, c.collapsed) {
                    (Some(Verdict::Collapsed), _) | (None, Some(true)) => Answer::Yes,
                    (Some(Verdict::NotCollapsed), _) | (None, Some(false)) => Answer::No,
                    _ => {
                        let why = c.inconclusive.map(|i| format!("{i:?}")).unwrap_or_else(|| "inconclusive".into());
                        Answer::Undecided(format!("inconclusive verdict ({why})"))
                    }
                })
            }
            (Criterion::Ratio { above, .. }, EvalResult::Loss(r)) => {
                Ok(match r.collapse.as_ref().and_then(|c| c.worst_ratio).filter(|x| x.is_finite()) {
                    Some(x) => Answer::of(x > *above),
                    None => Answer::Undecided("no finite loss ratio".into()),
                })
            }
            (Criterion::Passkey { len, accuracy, .. }, EvalResult::Passkey(r)) => match r.accuracy_by_len.iter().find(|a| a.len == *len) {
                Some(a) if a.accuracy.is_finite() => Ok(Answer::of(a.accuracy >= *accuracy)),
                Some(_) => Ok(Answer::Undecided(format!("no accuracy at {len} tokens"))),
                None => Err(format!("the passkey evaluation did not probe length {len}")),
            },
            (c, r) => Err(format!("the `{}` test reads a {} evaluation, got a {} result", c.name(), c.eval_kind(), r.kind())),
        }
    }
}

/// Early stopping of a job (`early_stop` in a job config): training stops at an evaluation
/// during training (`evals_at`) whose answer to `criterion` is `stop_when`, the job is recorded
/// as completed and stopped early (never as failed), and its later evaluation points are not
/// run. An adaptive search sets it on its probes when the sweep asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStop {
    pub criterion: Criterion,
    /// Stop when the answer is this (`true`: yes).
    #[serde(default = "yes")]
    pub stop_when: bool,
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{Collapse, LenAccuracy, LossResult, PasskeyResult};

    fn loss(verdict: Option<Verdict>, ratio: Option<f64>) -> EvalResult {
        let collapse = Collapse {
            verdict,
            worst_ratio: ratio,
            collapsed: verdict.and_then(|v| match v {
                Verdict::Collapsed => Some(true),
                Verdict::NotCollapsed => Some(false),
                Verdict::Inconclusive => None,
            }),
            ..Default::default()
        };
        EvalResult::Loss(LossResult { collapse: Some(collapse), ..Default::default() })
    }

    #[test]
    fn criteria_parse_resolve_and_answer() {
        let c: Criterion = serde_json::from_str(r#"{"test": "ratio", "above": 1.5}"#).unwrap();
        assert_eq!(c.resolve(&["passkey", "loss"]), Ok(1));
        assert_eq!(c.answer(&loss(None, Some(1.7))), Ok(Answer::Yes));
        assert_eq!(c.answer(&loss(None, Some(1.2))), Ok(Answer::No));
        assert!(matches!(c.answer(&loss(None, Some(f64::NAN))), Ok(Answer::Undecided(_))));
        let c: Criterion = serde_json::from_str(r#"{"test": "collapsed", "eval": 0}"#).unwrap();
        assert_eq!(c.answer(&loss(Some(Verdict::Collapsed), Some(3.0))), Ok(Answer::Yes));
        assert!(matches!(c.answer(&loss(Some(Verdict::Inconclusive), Some(2.1))), Ok(Answer::Undecided(_))));
        assert!(c.resolve(&["passkey"]).unwrap_err().contains("is a passkey evaluation"));
        let c: Criterion = serde_json::from_str(r#"{"test": "passkey", "len": 256, "accuracy": 0.9}"#).unwrap();
        let mut r = PasskeyResult { accuracy_by_len: vec![LenAccuracy { len: 256, accuracy: 0.95 }], ..Default::default() };
        assert_eq!(c.answer(&EvalResult::Passkey(r.clone())), Ok(Answer::Yes));
        r.accuracy_by_len[0].len = 512;
        assert!(c.answer(&EvalResult::Passkey(r)).unwrap_err().contains("did not probe length 256"));
        assert!(c.resolve(&["loss"]).unwrap_err().contains("has none"));
        // Unknown keys and bad values are refused.
        assert!(serde_json::from_str::<Criterion>(r#"{"test": "ratio", "above": 1.5, "abov": 2}"#).is_err());
        let bad: Criterion = serde_json::from_str(r#"{"test": "passkey", "len": 256, "accuracy": 2}"#).unwrap();
        assert!(bad.resolve(&["passkey"]).unwrap_err().contains("within 0..1"));
    }
}
