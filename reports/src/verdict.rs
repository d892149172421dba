// The collapse verdict of one loss evaluation as the report reads it (rule: docs/methodology.md,
// computed by the evaluation in model/src/eval/collapse.rs). Results written since the verdict
// carries its uncertainty (`collapse.verdict`, per-prompt bucket losses, bootstrap interval) are
// taken as they are. Older results have only the mean curve: the verdict is recomputed from it
// with the same rule (first and last bucket dropped, ratio > 2, ln V check) and marked
// `mean_curve`; there a fixed probe (the newline run) is decided by its point ratio, while
// sampled prompts, whose spread cannot be known, are inconclusive.
use serde::Serialize;

use crate::data::{EvalRecord, JobRecord};

/// The paper's factor: collapse when the loss exceeds 2x the in-training maximum.
pub const FACTOR: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Collapsed,
    NotCollapsed,
    Inconclusive,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "collapsed" => Some(Verdict::Collapsed),
            "not_collapsed" => Some(Verdict::NotCollapsed),
            "inconclusive" => Some(Verdict::Inconclusive),
            _ => None,
        }
    }

    pub fn words(self) -> &'static str {
        match self {
            Verdict::Collapsed => "collapsed",
            Verdict::NotCollapsed => "no collapse",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// What the verdict was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The evaluation's own verdict (per-prompt bootstrap, or a probe's exact ratio).
    Evaluation,
    /// Recomputed from the stored mean curve of an older result (no per-prompt losses).
    MeanCurve,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalVerdict {
    pub verdict: Verdict,
    pub basis: Basis,
    /// Why inconclusive (the evaluation's reason, snake_case).
    pub reason: Option<String>,
    pub ratio: Option<f64>,
    pub ratio_ci: Option<[f64; 2]>,
    /// Max loss after T_train minus the in-T maximum, nats.
    pub rise: Option<f64>,
}

/// ln V of the job's model: `model.vocab_size` when set, else the tokenizer's (bytes: 257,
/// gpt2: 50257); `None` when unknown.
pub fn uniform_loss(job: &JobRecord) -> Option<f64> {
    let v = (job.model.vocab_size > 0).then_some(job.model.vocab_size).or_else(|| match job.config.get("tokenizer")?.as_str()? {
        "bytes" => Some(257),
        "gpt2" => Some(50257),
        _ => None,
    })?;
    Some((v as f64).ln())
}

/// The verdict of a loss eval; `None` when the result has no training length to judge against.
pub fn eval_verdict(e: &EvalRecord, job: Option<&JobRecord>) -> Option<EvalVerdict> {
    let r = e.loss().ok()?;
    let c = r.collapse.as_ref();
    if let Some((c, v)) = c.and_then(|c| Some((c, c.verdict?))) {
        let verdict = match v {
            stuffed_protocol::eval::Verdict::Collapsed => Verdict::Collapsed,
            stuffed_protocol::eval::Verdict::NotCollapsed => Verdict::NotCollapsed,
            stuffed_protocol::eval::Verdict::Inconclusive => Verdict::Inconclusive,
        };
        let reason = c.inconclusive.and_then(|i| serde_json::to_value(i).ok()?.as_str().map(String::from));
        return Some(EvalVerdict { verdict, basis: Basis::Evaluation, reason, ratio: c.worst_ratio, ratio_ci: c.ratio_ci, rise: c.rise });
    }
    let train_len = c.map(|c| c.train_len).filter(|t| *t > 0).or(r.params.train_len).or_else(|| job?.train_len())? as f64;
    let losses: Vec<(f64, f64, f64)> = r.buckets.iter().map(|b| (b.start as f64, b.end as f64, b.loss)).collect();
    Some(mean_curve_verdict(&losses, train_len, e.source() == "newlines", job.and_then(uniform_loss)))
}

/// The rule on a mean curve of (start, end, loss) buckets alone.
pub fn mean_curve_verdict(buckets: &[(f64, f64, f64)], train_len: f64, probe: bool, uniform: Option<f64>) -> EvalVerdict {
    let kept = if buckets.len() >= 2 { &buckets[1..buckets.len() - 1] } else { &[][..] };
    let max =
        |it: &mut dyn Iterator<Item = f64>| it.filter(|l| !l.is_nan()).fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l))));
    let within = max(&mut kept.iter().filter(|b| b.1 <= train_len).map(|b| b.2));
    let beyond = max(&mut kept.iter().filter(|b| b.0 >= train_len).map(|b| b.2));
    let ratio = within.zip(beyond).map(|(w, b)| b / w);
    let degenerate = within.zip(uniform).is_some_and(|(w, u)| FACTOR * w > u);
    let (verdict, reason) = match ratio {
        None if within.is_none() => (Verdict::Inconclusive, Some("no_reference")),
        None => (Verdict::Inconclusive, Some("no_beyond")),
        Some(r) if probe && r > FACTOR => (Verdict::Collapsed, None),
        Some(_) if probe && degenerate => (Verdict::Inconclusive, Some("degenerate")),
        Some(_) if probe => (Verdict::NotCollapsed, None),
        Some(_) => (Verdict::Inconclusive, Some("no_per_prompt_losses")),
    };
    EvalVerdict {
        verdict,
        basis: Basis::MeanCurve,
        reason: reason.map(str::to_string),
        ratio,
        ratio_ci: if probe { ratio.map(|r| [r, r]) } else { None },
        rise: within.zip(beyond).map(|(w, b)| b - w),
    }
}

/// A job's verdict from its evals' verdicts: collapsed when any collapsed; no collapse when at
/// least one says so and none collapsed; inconclusive when all are inconclusive.
pub fn combine(verdicts: &[Verdict]) -> Option<Verdict> {
    if verdicts.contains(&Verdict::Collapsed) {
        Some(Verdict::Collapsed)
    } else if verdicts.contains(&Verdict::NotCollapsed) {
        Some(Verdict::NotCollapsed)
    } else if verdicts.is_empty() {
        None
    } else {
        Some(Verdict::Inconclusive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(losses: &[f64]) -> Vec<(f64, f64, f64)> {
        losses.iter().enumerate().map(|(i, &l)| (i as f64 * 10.0, i as f64 * 10.0 + 10.0, l)).collect()
    }

    /// The same hand-computed case as the evaluation's: first (9.0) and last (100) dropped,
    /// reference 2.5, ratio 6.5 / 2.5 = 2.6.
    #[test]
    fn mean_curve_rule_drops_first_and_last_buckets() {
        let v = mean_curve_verdict(&curve(&[9.0, 2.0, 2.5, 4.0, 6.5, 100.0]), 30.0, true, None);
        assert_eq!((v.verdict, v.ratio), (Verdict::Collapsed, Some(2.6)));
        assert_eq!(v.basis, Basis::MeanCurve);
        // Sampled prompts without per-prompt losses: the same curve is inconclusive.
        let v = mean_curve_verdict(&curve(&[9.0, 2.0, 2.5, 4.0, 6.5, 100.0]), 30.0, false, None);
        assert_eq!((v.verdict, v.reason.as_deref()), (Verdict::Inconclusive, Some("no_per_prompt_losses")));
        // 2x the in-T loss above ln V: no decisive "no collapse", the rise is kept.
        let v = mean_curve_verdict(&curve(&[1.0, 6.0, 6.0, 9.0, 9.0, 1.0]), 30.0, true, Some(256f64.ln()));
        assert_eq!((v.verdict, v.reason.as_deref(), v.rise), (Verdict::Inconclusive, Some("degenerate"), Some(3.0)));
        let v = mean_curve_verdict(&curve(&[1.0, 3.0, 3.0, 5.4, 5.0, 1.0]), 30.0, true, Some(256f64.ln()));
        assert_eq!(v.reason.as_deref(), Some("degenerate"));
        let v = mean_curve_verdict(&curve(&[1.0, 2.5, 2.5, 4.0, 4.0, 1.0]), 30.0, true, Some(256f64.ln()));
        assert_eq!(v.verdict, Verdict::NotCollapsed);
    }

    #[test]
    fn job_verdict_combines_evals() {
        use Verdict::*;
        assert_eq!(combine(&[Inconclusive, Collapsed]), Some(Collapsed));
        assert_eq!(combine(&[Inconclusive, NotCollapsed]), Some(NotCollapsed));
        assert_eq!(combine(&[Inconclusive]), Some(Inconclusive));
        assert_eq!(combine(&[]), None);
    }
}
