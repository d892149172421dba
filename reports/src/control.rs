// The collapse verdict against a longer-trained control (issue 21; rule: docs/methodology.md,
// "Against a longer-trained control"). The paper's verdict compares a curve past T_train with
// its own maximum within T_train, which content can make tiny (every long OpenJDK file opens
// with the same GPL header, which the model nearly memorises). Here the reference is instead
// the same model trained at a longer length, evaluated on the same prompts at the same point
// of training: the loss of both over doubling ranges of positions past T ([T, 2T), [2T, 4T),
// ...), their ratio per range, and a paired bootstrap interval of it over prompts. The paper's
// verdict is left as it is; this one is reported beside it.
use std::collections::BTreeSet;

use serde::Serialize;
use stuffed_protocol::eval::LossResult;

use crate::data::{EvalRecord, JobRecord, ReportData};
use crate::fit::percentile;
use crate::rng::SplitMix64;
use crate::verdict::{eval_verdict, uniform_loss, Verdict, FACTOR};

/// Bootstrap resamples of the prompts.
pub const BOOTSTRAP: usize = 1000;
/// Seed of the bootstrap (fixed: the same data give the same intervals, byte for byte).
pub const SEED: u64 = 0xC0_2711;
/// Fewest paired sampled prompts for a decisive verdict (the evaluation's `MIN_PROMPTS`,
/// model/src/eval/collapse.rs).
pub const MIN_PROMPTS: usize = 8;

/// What the ratios were computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Per-prompt losses of both curves (`prompt_buckets`), paired by prompt index.
    PerPrompt,
    /// The mean curves (one of the results has no per-prompt losses).
    MeanCurve,
}

/// One loss curve as the comparison reads it: bucket bounds and one row of losses per prompt
/// (a single row, the mean curve, when the result has no per-prompt losses).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// (start, end) of each bucket, in order.
    pub bounds: Vec<(i64, i64)>,
    /// `[prompt][bucket]` mean losses, nats.
    pub rows: Vec<Vec<f64>>,
}

impl Curve {
    /// The per-prompt curve of a result, when it has one of the right shape.
    pub fn per_prompt(r: &LossResult) -> Option<Curve> {
        let n = r.buckets.len();
        (!r.prompt_buckets.is_empty() && r.prompt_buckets.iter().all(|p| p.len() == n))
            .then(|| Curve { bounds: bounds(r), rows: r.prompt_buckets.clone() })
    }

    /// The mean curve of a result, as a single row.
    pub fn mean(r: &LossResult) -> Curve {
        Curve { bounds: bounds(r), rows: vec![r.buckets.iter().map(|b| b.loss).collect()] }
    }
}

fn bounds(r: &LossResult) -> Vec<(i64, i64)> {
    r.buckets.iter().map(|b| (b.start, b.end)).collect()
}

/// One range of positions past T: both mean losses, their ratio (job / control) and its 95%
/// interval. The losses are `None` when the buckets of either curve do not tile the range (a
/// control with buckets of 512 cannot be read over [128, 256)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeRatio {
    pub start: i64,
    pub end: i64,
    pub job_loss: Option<f64>,
    pub control_loss: Option<f64>,
    pub ratio: Option<f64>,
    /// Paired bootstrap 95% interval over prompts (the point for a probe; `None` for sampled
    /// prompts without per-prompt losses).
    pub ci: Option<[f64; 2]>,
}

/// The comparison of one curve with its control's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub ranges: Vec<RangeRatio>,
    pub verdict: Verdict,
    /// Why inconclusive (snake_case).
    pub reason: Option<String>,
    /// Index in `ranges` of the largest ratio.
    pub worst: Option<usize>,
    pub basis: Basis,
    /// Prompts behind the means (paired: finite in both curves).
    pub prompts: usize,
}

impl Comparison {
    /// The range with the largest ratio.
    pub fn worst_range(&self) -> Option<&RangeRatio> {
        self.ranges.get(self.worst?)
    }

    /// (first start, last end) of the ranges that could be compared.
    pub fn compared_span(&self) -> Option<(i64, i64)> {
        let mut it = self.ranges.iter().filter(|r| r.ratio.is_some());
        let first = it.next()?;
        Some((first.start, it.next_back().map_or(first.end, |r| r.end)))
    }
}

/// The doubling ranges past `train_len` up to `len`: [T, 2T), [2T, 4T), ...; a last range
/// shorter than a doubling is merged into the one before it ([T, len) when 2T > len).
pub fn doubling_ranges(train_len: i64, len: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    if train_len <= 0 || len <= train_len {
        return out;
    }
    let mut start = train_len;
    while start.saturating_mul(2) <= len {
        out.push((start, start * 2));
        start *= 2;
    }
    match out.last_mut() {
        Some(last) if last.1 < len => last.1 = len,
        None => out.push((train_len, len)),
        _ => {}
    }
    out
}

/// The mean loss of each row over [start, end), weighted by bucket width; `None` when the
/// buckets inside the range do not cover it exactly (a bucket straddles an edge, or one is
/// missing).
pub fn range_means(curve: &Curve, start: i64, end: i64) -> Option<Vec<f64>> {
    let inside: Vec<usize> = (0..curve.bounds.len()).filter(|&i| curve.bounds[i].0 >= start && curve.bounds[i].1 <= end).collect();
    let straddles = curve.bounds.iter().any(|&(s, e)| s < end && e > start && (s < start || e > end));
    let covered: i64 = inside.iter().map(|&i| curve.bounds[i].1 - curve.bounds[i].0).sum();
    if inside.is_empty() || straddles || covered != end - start {
        return None;
    }
    let means = curve
        .rows
        .iter()
        .map(|row| {
            inside.iter().map(|&i| row.get(i).copied().unwrap_or(f64::NAN) * (curve.bounds[i].1 - curve.bounds[i].0) as f64).sum::<f64>()
                / covered as f64
        })
        .collect();
    Some(means)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n as f64
}

/// Job and control mean, ratio and interval of paired per-prompt means (`pairs` non-empty).
fn range_ratio(start: i64, end: i64, pairs: &[(f64, f64)], probe: bool, per_prompt: bool) -> RangeRatio {
    let (j, c) = (mean(pairs.iter().map(|p| p.0)), mean(pairs.iter().map(|p| p.1)));
    let ratio = j / c;
    let ci = if probe {
        Some([ratio, ratio])
    } else if per_prompt && pairs.len() >= 2 {
        bootstrap(pairs)
    } else {
        None
    };
    RangeRatio { start, end, job_loss: Some(j), control_loss: Some(c), ratio: Some(ratio), ci }
}

/// 95% percentile interval of the ratio of means over paired resamples of the prompts: each
/// resample draws prompt indices with replacement and takes both curves at the same indices.
fn bootstrap(pairs: &[(f64, f64)]) -> Option<[f64; 2]> {
    let n = pairs.len();
    let mut rng = SplitMix64::new(SEED);
    let mut ratios = Vec::with_capacity(BOOTSTRAP);
    for _ in 0..BOOTSTRAP {
        let (mut j, mut c) = (0.0, 0.0);
        for _ in 0..n {
            let p = pairs[rng.below(n)];
            j += p.0;
            c += p.1;
        }
        let r = j / c;
        if r.is_finite() {
            ratios.push(r);
        }
    }
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some([percentile(&ratios, 0.025), percentile(&ratios, 0.975)])
}

/// How a job's curve is compared with its control's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// The job's training length T: the ranges start there.
    pub train_len: i64,
    /// The evaluation length: the last range ends there.
    pub len: i64,
    /// The rows are prompts, paired by index (else each curve is its single mean row).
    pub per_prompt: bool,
    /// A fixed input (the newline run), decided by its point ratios.
    pub probe: bool,
    /// ln V, for the degenerate case (2x the control's loss above ln V: no doubling can show).
    pub uniform: Option<f64>,
    /// The job's own reference: its largest mean loss within T (the paper's, first bucket
    /// dropped). A range where this is already at or above 2x the control's loss cannot show
    /// collapse: the job doubled the control without rising past T (a job worse than its
    /// control at every position, e.g. one that never learned the newline run, did not
    /// collapse).
    pub within: Option<f64>,
}

/// The paper's reference of a mean curve: the largest finite loss of the buckets ending at or
/// before `train_len`, the first bucket dropped.
pub fn within_max(bounds: &[(i64, i64)], losses: &[f64], train_len: i64) -> Option<f64> {
    bounds.iter().zip(losses).skip(1).filter(|(b, l)| b.1 <= train_len && l.is_finite()).map(|(_, l)| *l).reduce(f64::max)
}

/// Compares a job's curve with its control's over the doubling ranges past T. Both curves must
/// hold the same prompts in the same order (rows are paired by index).
///
/// Verdict: "collapsed vs control" when some range's interval has its lower bound >= 2 and the
/// job's own reference within T is below 2x the control's loss there (the doubling came from
/// the rise past T); "not collapsed vs control" when every
/// compared range's upper bound is < 2; else inconclusive. Inconclusive also when no range could
/// be compared, when sampled prompts have no per-prompt losses or fewer than [`MIN_PROMPTS`]
/// pairs, or (unless collapsed) when degenerate.
pub fn compare(job: &Curve, control: &Curve, s: &Setting) -> Comparison {
    let mut ranges = Vec::new();
    let mut prompts = BTreeSet::new();
    for (start, end) in doubling_ranges(s.train_len, s.len) {
        let pairs: Vec<(f64, f64)> = match (range_means(job, start, end), range_means(control, start, end)) {
            (Some(j), Some(c)) => {
                let pairs: Vec<(usize, (f64, f64))> =
                    j.into_iter().zip(c).enumerate().filter(|(_, (a, b))| a.is_finite() && b.is_finite() && *b > 0.0).collect();
                prompts.extend(pairs.iter().map(|p| p.0));
                pairs.into_iter().map(|p| p.1).collect()
            }
            _ => Vec::new(),
        };
        ranges.push(if pairs.is_empty() {
            RangeRatio { start, end, job_loss: None, control_loss: None, ratio: None, ci: None }
        } else {
            range_ratio(start, end, &pairs, s.probe, s.per_prompt)
        });
    }
    let worst = (0..ranges.len())
        .filter(|&i| ranges[i].ratio.is_some())
        .max_by(|&a, &b| ranges[a].ratio.unwrap_or(0.0).total_cmp(&ranges[b].ratio.unwrap_or(0.0)));
    let prompts = if s.per_prompt { prompts.len() } else { usize::from(!prompts.is_empty()) };
    let (verdict, reason) = decide(&ranges, s, prompts);
    Comparison {
        ranges,
        verdict,
        reason: reason.map(str::to_string),
        worst,
        basis: if s.per_prompt { Basis::PerPrompt } else { Basis::MeanCurve },
        prompts,
    }
}

fn decide(ranges: &[RangeRatio], s: &Setting, prompts: usize) -> (Verdict, Option<&'static str>) {
    let compared: Vec<&RangeRatio> = ranges.iter().filter(|r| r.ratio.is_some()).collect();
    if compared.is_empty() {
        return (Verdict::Inconclusive, Some("no_comparable_range"));
    }
    if !s.probe && !s.per_prompt {
        return (Verdict::Inconclusive, Some("no_per_prompt_losses"));
    }
    if !s.probe && prompts < MIN_PROMPTS {
        return (Verdict::Inconclusive, Some("too_few_prompts"));
    }
    let cis: Vec<([f64; 2], &RangeRatio)> = compared.iter().filter_map(|r| Some((r.ci?, *r))).collect();
    if cis.len() < compared.len() {
        return (Verdict::Inconclusive, Some("too_few_prompts"));
    }
    let rose = |r: &RangeRatio| s.within.zip(r.control_loss).is_none_or(|(w, c)| w < FACTOR * c);
    if cis.iter().any(|(ci, r)| ci[0] >= FACTOR && rose(r)) {
        return (Verdict::Collapsed, None);
    }
    let degenerate = compared.iter().any(|r| r.control_loss.zip(s.uniform).is_some_and(|(c, u)| FACTOR * c > u));
    if cis.iter().any(|(ci, _)| ci[0] >= FACTOR) {
        (Verdict::Inconclusive, Some("worse_within_t"))
    } else if degenerate {
        (Verdict::Inconclusive, Some("degenerate"))
    } else if cis.iter().all(|(ci, _)| ci[1] < FACTOR) {
        (Verdict::NotCollapsed, None)
    } else {
        (Verdict::Inconclusive, Some("interval_contains_threshold"))
    }
}

/// The control verdict in words, as the report shows it.
pub fn words(v: Verdict) -> &'static str {
    match v {
        Verdict::Collapsed => "collapsed vs control",
        Verdict::NotCollapsed => "not collapsed vs control",
        Verdict::Inconclusive => "inconclusive vs control",
    }
}

/// One loss evaluation of a job at one step, against its control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlRow {
    pub job_id: String,
    pub eval_index: i64,
    pub step: i64,
    pub tokens: Option<i64>,
    /// `corpus`, `newlines` or `text`.
    pub source: String,
    pub train_len: i64,
    pub control_id: String,
    pub control_eval_index: i64,
    pub control_train_len: i64,
    /// The paper's verdict of the job's evaluation (unchanged) and its point ratio.
    pub paper: Option<Verdict>,
    pub paper_ratio: Option<f64>,
    pub comparison: Comparison,
}

impl ControlRow {
    /// Whether the control contradicts the paper's verdict: "collapsed" by the paper's rule,
    /// "not collapsed vs control" here.
    pub fn contradicts_paper(&self) -> bool {
        self.paper == Some(Verdict::Collapsed) && self.comparison.verdict == Verdict::NotCollapsed
    }
}

/// Whether two jobs differ at most in their training length (and what follows from it: name,
/// eval buckets): the same model config, tokenizer, learning rate, seed and data.
pub fn same_setup(a: &JobRecord, b: &JobRecord) -> bool {
    let key = |j: &JobRecord| ["/model", "/tokenizer", "/train/lr", "/train/seed", "/data"].map(|p| j.config.pointer(p).cloned());
    a.config.pointer("/model").is_some() && key(a) == key(b)
}

/// Whether two loss evaluations read the same prompts: the same source (and file), length,
/// number of prompts and shortest document, both without mitigation. The bucket may differ.
pub fn same_eval(a: &LossResult, b: &LossResult) -> bool {
    let (a, b) = (&a.params, &b.params);
    a.mitigation == "none"
        && b.mitigation == "none"
        && (&a.source, &a.path, a.len, a.prompts, a.min_doc_tokens.unwrap_or(0))
            == (&b.source, &b.path, b.len, b.prompts, b.min_doc_tokens.unwrap_or(0))
}

/// The same point of training: the same training tokens when both record them, else the same
/// step.
fn same_time(a: &EvalRecord, b: &EvalRecord) -> bool {
    match (a.tokens, b.tokens) {
        (Some(x), Some(y)) => x == y,
        _ => a.step == b.step,
    }
}

/// Every loss evaluation without mitigation of the report's jobs, at every step it ran at
/// (final and during training), each (job, evaluation, step) once.
fn loss_evals(data: &ReportData) -> Vec<&EvalRecord> {
    let jobs: BTreeSet<&str> = data.jobs.iter().map(|j| j.id.as_str()).collect();
    let mut seen = BTreeSet::new();
    data.eval_history
        .iter()
        .chain(&data.evals)
        .filter(|e| e.kind() == "loss" && e.mitigation() == "none" && jobs.contains(e.job_id.as_str()))
        .filter(|e| seen.insert((e.job_id.as_str(), e.eval_index, e.step)))
        .collect()
}

/// Every loss evaluation of `data` that has a control, compared with it, in the order of the
/// jobs in `data`, then evaluation and step. The control of an evaluation is the evaluation of
/// the job with the longest training length above the job's own among those of the same setup
/// ([`same_setup`]) that ran the same evaluation ([`same_eval`]) at the same point of training;
/// ties go to the smaller job id.
pub fn control_rows(data: &ReportData) -> Vec<ControlRow> {
    let evals = loss_evals(data);
    let order = |id: &str| data.jobs.iter().position(|j| j.id == id).unwrap_or(usize::MAX);
    let mut rows: Vec<ControlRow> = evals.iter().filter_map(|e| control_row(data, &evals, e)).collect();
    rows.sort_by_key(|r| (order(&r.job_id), r.eval_index, r.step));
    rows
}

fn control_row(data: &ReportData, evals: &[&EvalRecord], e: &EvalRecord) -> Option<ControlRow> {
    let job = data.job(&e.job_id)?;
    let t = job.train_len()?;
    let r = e.loss().ok()?;
    let (ct, cj, c, cr) = evals
        .iter()
        .filter_map(|c| {
            let cj = data.job(&c.job_id)?;
            let ct = cj.train_len()?;
            let cr = c.loss().ok()?;
            (ct > t && same_setup(job, cj) && same_eval(r, cr) && same_time(e, c)).then_some((ct, cj, *c, cr))
        })
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.id.cmp(&a.1.id)).then(b.2.eval_index.cmp(&a.2.eval_index)))?;
    let paired = Curve::per_prompt(r).zip(Curve::per_prompt(cr)).filter(|(a, b)| a.rows.len() == b.rows.len());
    let per_prompt = paired.is_some();
    let (jc, cc) = paired.unwrap_or_else(|| (Curve::mean(r), Curve::mean(cr)));
    let len = if r.params.len > 0 { r.params.len } else { r.buckets.iter().map(|b| b.end).max()? };
    let mean: Vec<f64> = r.buckets.iter().map(|b| b.loss).collect();
    let setting = Setting {
        train_len: t,
        len,
        per_prompt,
        probe: e.source() == "newlines",
        uniform: uniform_loss(job),
        within: within_max(&bounds(r), &mean, t),
    };
    let comparison = compare(&jc, &cc, &setting);
    let paper = eval_verdict(e, Some(job));
    Some(ControlRow {
        job_id: job.id.clone(),
        eval_index: e.eval_index,
        step: e.step,
        tokens: e.tokens,
        source: e.source().to_string(),
        train_len: t,
        control_id: cj.id.clone(),
        control_eval_index: c.eval_index,
        control_train_len: ct,
        paper: paper.as_ref().map(|v| v.verdict),
        paper_ratio: paper.and_then(|v| v.ratio),
        comparison,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stuffed_protocol::eval::{Bucket, LossParams};
    use stuffed_protocol::EvalResult;

    /// `prompts` rows of buckets of `width` up to `len`, loss `f(prompt, bucket start)`.
    fn curve(width: i64, len: i64, prompts: usize, f: impl Fn(usize, i64) -> f64) -> Curve {
        let bounds: Vec<(i64, i64)> = (0..len / width).map(|i| (i * width, (i + 1) * width)).collect();
        let rows = (0..prompts).map(|p| bounds.iter().map(|b| f(p, b.0)).collect()).collect();
        Curve { bounds, rows }
    }

    fn setting(train_len: i64, len: i64, per_prompt: bool, probe: bool, uniform: Option<f64>) -> Setting {
        Setting { train_len, len, per_prompt, probe, uniform, within: None }
    }

    /// A loss that varies by prompt (0.8 .. 1.15), as documents do.
    fn by_prompt(p: usize) -> f64 {
        0.8 + 0.05 * p as f64
    }

    #[test]
    fn ranges_double_past_t_and_merge_the_last_partial_one() {
        let r = doubling_ranges(128, 65536);
        assert_eq!((r.len(), r[0], r[8]), (9, (128, 256), (32768, 65536)));
        assert_eq!(doubling_ranges(100, 1000), [(100, 200), (200, 400), (400, 1000)]);
        assert_eq!(doubling_ranges(100, 150), [(100, 150)]);
        assert!(doubling_ranges(100, 100).is_empty());
    }

    #[test]
    fn range_means_need_buckets_that_tile_the_range() {
        let c = curve(512, 4096, 2, |p, s| p as f64 + s as f64 / 512.0);
        assert_eq!(range_means(&c, 128, 256), None);
        assert_eq!(range_means(&c, 512, 1024), Some(vec![1.0, 2.0]));
        assert_eq!(range_means(&c, 1024, 4096), Some(vec![4.5, 5.5]));
        // narrower buckets: weighted by width
        let c = Curve { bounds: vec![(0, 1), (1, 4)], rows: vec![vec![4.0, 0.0]] };
        assert_eq!(range_means(&c, 0, 4), Some(vec![1.0]));
        assert_eq!(range_means(&c, 0, 2), None);
    }

    #[test]
    fn a_control_equal_to_the_job_gives_ratio_one() {
        let job = curve(32, 4096, 8, |p, s| by_prompt(p) + (s as f64).ln() * 0.01);
        let ctl = curve(512, 4096, 8, |p, s| by_prompt(p) + (s as f64).ln() * 0.01);
        let same = compare(&job, &job, &setting(128, 4096, true, false, Some(257f64.ln())));
        assert_eq!(same.verdict, Verdict::NotCollapsed);
        for r in &same.ranges {
            assert!((r.ratio.unwrap() - 1.0).abs() < 1e-12, "{r:?}");
            let ci = r.ci.unwrap();
            assert!((ci[0] - 1.0).abs() < 1e-12 && (ci[1] - 1.0).abs() < 1e-12);
        }
        // a control with coarser buckets: the ranges below its first bucket are not compared
        let c = compare(&job, &ctl, &setting(128, 4096, true, false, None));
        assert_eq!(c.ranges.iter().map(|r| r.ratio.is_some()).collect::<Vec<_>>(), [false, false, true, true, true]);
        assert_eq!((c.verdict, c.compared_span(), c.prompts), (Verdict::NotCollapsed, Some((512, 4096)), 8));
    }

    #[test]
    fn a_job_that_doubles_past_4t_collapses() {
        let ctl = curve(32, 4096, 8, |p, _| by_prompt(p));
        let job = curve(32, 4096, 8, |p, s| if s >= 512 { 2.5 * by_prompt(p) } else { by_prompt(p) });
        let c = compare(&job, &ctl, &setting(128, 4096, true, false, Some(257f64.ln())));
        assert_eq!(c.verdict, Verdict::Collapsed);
        let w = c.worst_range().unwrap();
        assert!((w.ratio.unwrap() - 2.5).abs() < 1e-12 && w.start >= 512, "{w:?}");
        assert!(c.ranges[0].ci.unwrap()[1] < 1.0 + 1e-12);
        // worse than 2x the control everywhere, within T too: no rise past T, no collapse
        let worse = curve(32, 4096, 8, |p, _| 2.5 * by_prompt(p));
        let within = within_max(&worse.bounds, &worse.rows[7], 128);
        let c = compare(&worse, &ctl, &Setting { within, ..setting(128, 4096, true, false, None) });
        assert_eq!((c.verdict, c.reason.as_deref()), (Verdict::Inconclusive, Some("worse_within_t")));
        // the same with 4 prompts: too few for a decisive verdict
        let few = |c: &Curve| Curve { bounds: c.bounds.clone(), rows: c.rows[..4].to_vec() };
        let c = compare(&few(&job), &few(&ctl), &setting(128, 4096, true, false, None));
        assert_eq!((c.verdict, c.reason.as_deref()), (Verdict::Inconclusive, Some("too_few_prompts")));
        // mean curves of sampled prompts: no interval, inconclusive; a probe goes by its point
        let mean = |c: &Curve| Curve { bounds: c.bounds.clone(), rows: c.rows[..1].to_vec() };
        let c = compare(&mean(&job), &mean(&ctl), &setting(128, 4096, false, false, None));
        assert_eq!((c.verdict, c.reason.as_deref()), (Verdict::Inconclusive, Some("no_per_prompt_losses")));
        let c = compare(&mean(&job), &mean(&ctl), &setting(128, 4096, false, true, None));
        let ci = c.worst_range().unwrap().ci.unwrap();
        assert_eq!((c.verdict, ci[0]), (Verdict::Collapsed, ci[1]));
        assert!((ci[0] - 2.5).abs() < 1e-12);
    }

    #[test]
    fn a_ratio_whose_interval_contains_two_is_inconclusive() {
        let ctl = curve(64, 1024, 8, |_, _| 1.0);
        let job = curve(64, 1024, 8, |p, _| if p % 2 == 0 { 1.0 } else { 3.0 });
        let c = compare(&job, &ctl, &setting(256, 1024, true, false, None));
        assert_eq!((c.verdict, c.reason.as_deref()), (Verdict::Inconclusive, Some("interval_contains_threshold")));
        // 2x the control's loss above ln V: no doubling can show
        let c = compare(&ctl, &curve(64, 1024, 8, |_, _| 3.0), &setting(256, 1024, true, false, Some(257f64.ln())));
        assert_eq!(c.reason.as_deref(), Some("degenerate"));
    }

    fn job(id: &str, t: i64, d_state: i64, seed: u64) -> JobRecord {
        JobRecord {
            id: id.into(),
            train_len: t,
            config: json!({"model": {"d_state": d_state}, "tokenizer": "bytes", "data": {"corpus": "java"},
                "train": {"seq_len": t, "lr": 0.002, "seed": seed}}),
            ..JobRecord::default()
        }
    }

    fn eval(job: &str, t: i64, step: i64, bucket: i64, f: impl Fn(usize, i64) -> f64) -> EvalRecord {
        let c = curve(bucket, 4096, 8, f);
        let buckets = c.bounds.iter().zip(&c.rows[0]).map(|(b, _)| Bucket { start: b.0, end: b.1, loss: 1.0 }).collect();
        let params = LossParams { len: 4096, prompts: 8, bucket, train_len: Some(t), min_doc_tokens: Some(4096), ..LossParams::default() };
        let result = EvalResult::Loss(LossResult { params, buckets, prompt_buckets: c.rows, ..LossResult::default() });
        EvalRecord { job_id: job.into(), eval_index: 0, step, tokens: Some(step * 10), result }
    }

    #[test]
    fn the_control_is_the_longest_longer_job_of_the_same_setup() {
        let flat = |p: usize, _| by_prompt(p);
        let data = ReportData {
            jobs: vec![job("a", 128, 64, 0), job("b", 512, 64, 0), job("c", 2048, 64, 0), job("d", 2048, 64, 1), job("e", 128, 16, 0)],
            evals: vec![
                eval("a", 128, 100, 32, flat),
                eval("b", 512, 100, 128, flat),
                eval("c", 2048, 100, 512, flat),
                eval("c", 2048, 50, 512, flat),
                eval("d", 2048, 100, 512, flat),
                eval("e", 128, 100, 32, flat),
            ],
            ..ReportData::default()
        };
        let rows = control_rows(&data);
        let pairs: Vec<(&str, i64, &str)> = rows.iter().map(|r| (r.job_id.as_str(), r.step, r.control_id.as_str())).collect();
        // c at step 50 has no job at that step; d has another seed; e another state size
        assert_eq!(pairs, [("a", 100, "c"), ("b", 100, "c")]);
        assert!(rows.iter().all(|r| r.comparison.verdict == Verdict::NotCollapsed));
        assert_eq!(rows[0].control_train_len, 2048);
    }
}
