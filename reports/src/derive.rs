// Derived measurements: per-job collapse verdicts, T_forget per state size, T_recall per job and
// per state size, and the censored (S in millions, T in K tokens) points the capacity laws are
// fitted to.
//
// T_forget rule (documented in docs/methodology.md and in every report):
// * An eval's verdict (collapsed / no collapse / inconclusive) is `verdict::eval_verdict`; only
//   `loss` evals without mitigation count. A job collapsed if any of its evals collapsed, shows
//   no collapse if at least one says so and none collapsed, and is inconclusive otherwise.
// * Several jobs at one (state size, length) (learning rates, seeds) count as the paper's "best
//   run": the run with the best passkey validation (mean accuracy of its passkey evals) decides
//   when it is decisive; without validation (or among equals) the point shows no collapse when
//   any run does, collapses when none does and at least one collapsed, and is inconclusive
//   otherwise. Inconclusive points are left out.
// * T_forget(S) = the smallest decisive length without collapse such that every longer decisive
//   length tried for S also shows no collapse. It is censored: the interval (largest collapsed
//   length, T_forget]; an upper bound (0, T_forget] when no length collapsed; a lower bound
//   (largest length tried, ∞) when the longest decisive length still collapses.
// * T_recall of a job is the authors' depth-averaged one (largest length with mean accuracy over
//   depths > 0.95), censored between it and the next length of its grid (a length search's grid
//   is its probes: the bracket [last recalled, first not recalled), or a lower bound when the
//   top of its range was recalled, an upper bound when the bottom was not); the strict reading
//   (every depth > 0.95) is kept beside it. Per state size, the best job (the paper's choice of
//   learning rate by passkey validation).
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::censored::Censored;
use crate::control::ControlRow;
use crate::data::{EvalRecord, JobRecord, ReportData};
use crate::verdict::{combine, eval_verdict, Verdict};

/// The forget threshold of one state size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgetRow {
    pub state_size: i64,
    /// `None`: not reached (the longest length tried still collapses, or nothing was tried).
    pub t_forget: Option<i64>,
    /// Training lengths with a verdict, ascending.
    pub lengths_tried: Vec<i64>,
    /// The subset of `lengths_tried` that collapsed, ascending.
    pub collapsed_lengths: Vec<i64>,
    /// Lengths whose verdict was inconclusive (not in `lengths_tried`), ascending.
    pub inconclusive_lengths: Vec<i64>,
}

impl ForgetRow {
    pub fn largest_tried(&self) -> Option<i64> {
        self.lengths_tried.last().copied()
    }

    /// No length tried collapsed: the model forgets already at the shortest one, so T_forget is
    /// only known to be at or below it (not a point a law can be fitted to).
    pub fn is_upper_bound(&self) -> bool {
        self.collapsed_lengths.is_empty() && !self.lengths_tried.is_empty()
    }

    /// The largest collapsed length below T_forget (the open end of its interval).
    pub fn lower(&self) -> Option<i64> {
        let t = self.t_forget?;
        self.collapsed_lengths.iter().copied().filter(|&l| l < t).max()
    }

    /// T_forget as censored data, in (S millions, K tokens); `None` without decisive lengths.
    pub fn censored(&self) -> Option<Censored> {
        let x = s_millions(self.state_size);
        match (self.t_forget, self.largest_tried()) {
            (Some(t), _) => Some(Censored { x, lo: self.lower().map(t_kilo), hi: Some(t_kilo(t)) }),
            (None, Some(l)) => Some(Censored { x, lo: Some(t_kilo(l)), hi: None }),
            (None, None) => None,
        }
    }

    /// T_forget as a table cell: an interval `(L1, L2]`, `≤ L` (no collapse at any length
    /// tried) or `not reached (> L)`.
    pub fn describe(&self) -> String {
        match (self.t_forget, self.largest_tried()) {
            (Some(t), _) if self.is_upper_bound() => format!("≤ {t} (no collapse at any length tried)"),
            (Some(t), _) => match self.lower() {
                Some(l) => format!("{t} (in ({l}, {t}])"),
                None => t.to_string(),
            },
            (None, Some(l)) => format!("not reached (> {l})"),
            (None, None) if !self.inconclusive_lengths.is_empty() => "no decisive verdict".into(),
            (None, None) => "not reached (no verdicts)".into(),
        }
    }
}

/// T_recall of one job, from its `passkey` eval without mitigation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecall {
    pub job_id: String,
    pub state_size: i64,
    pub train_len: Option<i64>,
    /// Depth-averaged T_recall; `None`: no length reached > 95% mean accuracy.
    pub t_recall: Option<i64>,
    /// Strict T_recall (> 95% at every depth).
    pub t_recall_strict: Option<i64>,
    /// Lengths of the passkey grid, ascending (the lengths probed, for a search).
    pub lengths: Vec<i64>,
    /// The eval behind `t_recall` was a length search (`lengths: {search: ...}`).
    pub searched: bool,
    /// The job learned retrieval: at some length its depth-averaged accuracy is above
    /// [`LEARNED_ACCURACY`].
    pub learned: bool,
}

/// Depth-averaged passkey accuracy above which, at some length, a job counts as having learned
/// retrieval. A job below it at every length (lease 5: 0 or 1 of 10 prompts at every length
/// from 512 to 32K, where the jobs that learned answer 8-10 of 10 at 512) failed to learn the
/// task; its "no T_recall" says nothing about its state's capacity.
pub const LEARNED_ACCURACY: f64 = 0.5;

impl JobRecall {
    /// The next length of the grid above T_recall (`None` when T_recall is the longest tried).
    pub fn next_len(&self) -> Option<i64> {
        let t = self.t_recall?;
        self.lengths.iter().copied().find(|&l| l > t)
    }
}

/// T_recall of one state size: the maximum over its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRecall {
    pub state_size: i64,
    pub t_recall: Option<i64>,
    /// The best job's strict T_recall.
    pub t_recall_strict: Option<i64>,
    /// The job that reached it (the first by id on ties); `None` when no job reached any length.
    pub job_id: Option<String>,
    pub jobs: usize,
    /// Censoring of T_recall: the best job's next grid length above it (`None`: it was the
    /// longest tried, a lower bound), and the shortest length any job tried (the upper bound
    /// when nothing was recalled).
    pub next_len: Option<i64>,
    pub shortest_len: Option<i64>,
    /// Some job of this state size found its T_recall by a length search.
    pub searched: bool,
    /// Jobs of this state size that learned retrieval ([`JobRecall::learned`]).
    pub learned: usize,
}

impl StateRecall {
    /// T_recall as censored data in (S millions, K tokens); `None` when no job of this state
    /// size learned retrieval (a failed training bounds nothing).
    pub fn censored(&self) -> Option<Censored> {
        let x = s_millions(self.state_size);
        match self.t_recall {
            Some(t) => Some(Censored { x, lo: Some(t_kilo(t)), hi: self.next_len.map(t_kilo) }),
            None if self.learned == 0 => None,
            None => Some(Censored { x, lo: None, hi: Some(t_kilo(self.shortest_len?)) }),
        }
    }

    /// T_recall as a table cell: the value, with its bracket when a search found it (`4096 (in
    /// [4096, 5120))`, `≥ 262144 (...)`, `none (below 1024)`); lists show the value alone.
    pub fn describe(&self) -> String {
        match (self.t_recall, self.searched) {
            (None, _) if self.learned == 0 => format!("not learned (no job above {:.0}% at any length)", LEARNED_ACCURACY * 100.0),
            (Some(t), false) => t.to_string(),
            (None, false) => "none".into(),
            (Some(t), true) => match self.next_len {
                Some(n) => format!("{t} (in [{t}, {n}))"),
                None => format!("≥ {t} (recalled at the longest length tried)"),
            },
            (None, true) => self.shortest_len.map_or("none".into(), |s| format!("none (below {s})")),
        }
    }
}

/// The verdict of one job from its `loss` evals without mitigation; `None` when it has none.
pub fn job_verdict(data: &ReportData, job_id: &str) -> Option<Verdict> {
    job_verdict_except(data, job_id, &BTreeSet::new())
}

/// [`job_verdict`] where a collapse of an evaluation in `contradicted` (job, eval index, step)
/// counts as inconclusive, neither as collapse nor as its absence.
fn job_verdict_except(data: &ReportData, job_id: &str, contradicted: &BTreeSet<(String, i64, i64)>) -> Option<Verdict> {
    let job = data.job(job_id);
    let vs: Vec<Verdict> = data
        .evals_of(job_id, "loss")
        .filter(|e| e.mitigation() == "none")
        .filter_map(|e| {
            let v = eval_verdict(e, job)?.verdict;
            let key = (job_id.to_string(), e.eval_index, e.step);
            Some(if v == Verdict::Collapsed && contradicted.contains(&key) { Verdict::Inconclusive } else { v })
        })
        .collect();
    combine(&vs)
}

/// The collapse verdict of one job: `Some(true)` collapsed, `Some(false)` forgets, `None` no
/// decisive verdict.
pub fn job_collapse(data: &ReportData, job_id: &str) -> Option<bool> {
    match job_verdict(data, job_id)? {
        Verdict::Collapsed => Some(true),
        Verdict::NotCollapsed => Some(false),
        Verdict::Inconclusive => None,
    }
}

/// The loss evaluations, as (job, eval index, step), whose collapse by the paper's rule a
/// longer-trained control on the same prompts contradicts ("not collapsed vs control":
/// docs/methodology.md). Lease 3's jobs trained at 128 tokens are the case: every long file of
/// its corpus starts with the same licence header, so the rule's reference within T is tiny.
pub fn contradicted_by_control(controls: &[ControlRow]) -> BTreeSet<(String, i64, i64)> {
    controls.iter().filter(|r| r.contradicts_paper()).map(|r| (r.job_id.clone(), r.eval_index, r.step)).collect()
}

/// T_forget for every state size that has at least one job (rows ascending by state size).
/// A paper's-rule collapse that a longer-trained control contradicts does not count
/// ([`contradicted_by_control`]).
pub fn t_forget(data: &ReportData) -> Vec<ForgetRow> {
    t_forget_with(data, &crate::control::control_rows(data))
}

/// [`t_forget`] with the comparisons with a control already made (`control_rows(data)`).
pub fn t_forget_with(data: &ReportData, controls: &[ControlRow]) -> Vec<ForgetRow> {
    let contradicted = contradicted_by_control(controls);
    // state size -> length -> (verdict, passkey validation accuracy) of each run at this point
    let mut runs: BTreeMap<i64, BTreeMap<i64, Vec<Run>>> = BTreeMap::new();
    for job in &data.jobs {
        let per_len = runs.entry(job.state_size).or_default();
        let (Some(len), Some(v)) = (job.train_len(), job_verdict_except(data, &job.id, &contradicted)) else {
            continue;
        };
        per_len.entry(len).or_default().push((v, validation_accuracy(data, job)));
    }
    let grid: BTreeMap<i64, BTreeMap<i64, Verdict>> =
        runs.into_iter().map(|(s, per_len)| (s, per_len.into_iter().map(|(l, rs)| (l, point_verdict(&rs))).collect())).collect();
    grid.into_iter()
        .map(|(state_size, per_len)| {
            let decisive: BTreeMap<i64, bool> =
                per_len.iter().filter(|(_, v)| **v != Verdict::Inconclusive).map(|(l, v)| (*l, *v == Verdict::NotCollapsed)).collect();
            let mut row = forget_row(state_size, &decisive);
            row.inconclusive_lengths = per_len.iter().filter(|(_, v)| **v == Verdict::Inconclusive).map(|(l, _)| *l).collect();
            row
        })
        .collect()
}

/// One run at a (state size, length) point: its verdict and passkey validation accuracy.
type Run = (Verdict, Option<f64>);

/// Passkey validation of a job: its mean accuracy over every cell of its passkey evals without
/// mitigation; `None` without any.
pub fn validation_accuracy(data: &ReportData, job: &JobRecord) -> Option<f64> {
    let accs: Vec<f64> = plain_passkeys(data, job)
        .filter_map(|e| e.passkey().ok())
        .flat_map(|r| r.cells.iter().map(|c| c.accuracy))
        .filter(|a| a.is_finite())
        .collect();
    (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64)
}

/// The verdict of one (state size, length) point from its runs (learning rates, seeds): the
/// paper's best run, the one with the best passkey validation when runs have one (its verdict
/// when decisive); otherwise, and among equally good runs, no collapse wins, then collapse.
fn point_verdict(runs: &[Run]) -> Verdict {
    let best = runs.iter().filter_map(|r| r.1).fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
    let chosen: Vec<Verdict> = match best {
        Some(b) => runs.iter().filter(|r| r.1 == Some(b) && r.0 != Verdict::Inconclusive).map(|r| r.0).collect(),
        None => Vec::new(),
    };
    let pool: Vec<Verdict> = if chosen.is_empty() { runs.iter().map(|r| r.0).collect() } else { chosen };
    pool.into_iter().reduce(best_run).unwrap_or(Verdict::Inconclusive)
}

/// Two runs at one point: no collapse wins, then collapsed, then inconclusive.
fn best_run(a: Verdict, b: Verdict) -> Verdict {
    use Verdict::*;
    match (a, b) {
        (NotCollapsed, _) | (_, NotCollapsed) => NotCollapsed,
        (Collapsed, _) | (_, Collapsed) => Collapsed,
        _ => Inconclusive,
    }
}

/// Apply the T_forget rule to one state size's (length -> forgets) map.
pub fn forget_row(state_size: i64, per_len: &BTreeMap<i64, bool>) -> ForgetRow {
    let lengths_tried: Vec<i64> = per_len.keys().copied().collect();
    let collapsed_lengths: Vec<i64> = per_len.iter().filter(|(_, f)| !**f).map(|(l, _)| *l).collect();
    let mut t_forget = None;
    for (len, forgets) in per_len.iter().rev() {
        if !forgets {
            break;
        }
        t_forget = Some(*len);
    }
    ForgetRow { state_size, t_forget, lengths_tried, collapsed_lengths, inconclusive_lengths: Vec::new() }
}

/// The passkey evals of a job that count for T_recall (mitigation `none`).
fn plain_passkeys<'a>(data: &'a ReportData, job: &'a JobRecord) -> impl Iterator<Item = &'a EvalRecord> {
    data.evals_of(&job.id, "passkey").filter(|e| e.mitigation() == "none")
}

/// T_recall per job that has a passkey eval without mitigation (the largest over several evals).
pub fn job_recalls(data: &ReportData) -> Vec<JobRecall> {
    let mut out = Vec::new();
    for job in &data.jobs {
        let mut any = false;
        let (mut best, mut strict, mut lengths, mut searched, mut learned) = (None, None, Vec::new(), false, false);
        for e in plain_passkeys(data, job) {
            let Ok(r) = e.passkey() else {
                continue;
            };
            any = true;
            // A search's lengths are its probes: the next one above its T_recall is the first
            // length not recalled, and HI recalled leaves a lower bound, as for a list.
            if r.recall_mean() >= best {
                best = r.recall_mean();
                lengths = r.lengths();
                searched = r.search.is_some();
            }
            strict = strict.max(r.recall_strict());
            learned |= r.best_mean_accuracy().is_some_and(|a| a > LEARNED_ACCURACY);
        }
        if any {
            out.push(JobRecall {
                job_id: job.id.clone(),
                state_size: job.state_size,
                train_len: job.train_len(),
                t_recall: best,
                t_recall_strict: strict,
                lengths,
                searched,
                learned,
            });
        }
    }
    out
}

/// T_recall per state size (the maximum over its jobs), ascending by state size.
pub fn state_recalls(jobs: &[JobRecall]) -> Vec<StateRecall> {
    let mut by_size: BTreeMap<i64, Vec<&JobRecall>> = BTreeMap::new();
    for j in jobs {
        by_size.entry(j.state_size).or_default().push(j);
    }
    by_size
        .into_iter()
        .map(|(state_size, js)| {
            let mut best: Option<(i64, &str)> = None;
            for j in &js {
                if let Some(t) = j.t_recall {
                    let better = match best {
                        None => true,
                        Some((bt, bid)) => t > bt || (t == bt && j.job_id.as_str() < bid),
                    };
                    if better {
                        best = Some((t, &j.job_id));
                    }
                }
            }
            let best_job = best.and_then(|b| js.iter().find(|j| j.job_id == b.1));
            StateRecall {
                state_size,
                t_recall: best.map(|b| b.0),
                t_recall_strict: js.iter().filter_map(|j| j.t_recall_strict).max(),
                job_id: best.map(|b| b.1.to_string()),
                jobs: js.len(),
                next_len: best_job.and_then(|j| j.next_len()),
                shortest_len: js.iter().filter_map(|j| j.lengths.first().copied()).min(),
                searched: js.iter().any(|j| j.searched),
                learned: js.iter().filter(|j| j.learned).count(),
            }
        })
        .collect()
}

/// State size in millions of state parameters (the x unit of the capacity laws).
pub fn s_millions(state_size: i64) -> f64 {
    state_size as f64 / 1e6
}

/// Tokens in thousands (the y unit of the capacity laws).
pub fn t_kilo(tokens: i64) -> f64 {
    tokens as f64 / 1e3
}

/// (S in M, T_forget in K) for the state sizes where T_forget was reached.
pub fn forget_points(rows: &[ForgetRow]) -> (Vec<f64>, Vec<f64>) {
    rows.iter().filter(|r| !r.is_upper_bound()).filter_map(|r| r.t_forget.map(|t| (s_millions(r.state_size), t_kilo(t)))).unzip()
}

/// T_forget of every state size with decisive lengths, as censored points.
pub fn forget_censored(rows: &[ForgetRow]) -> Vec<Censored> {
    rows.iter().filter_map(ForgetRow::censored).collect()
}

/// T_recall of every state size, as censored points.
pub fn recall_censored(rows: &[StateRecall]) -> Vec<Censored> {
    rows.iter().filter_map(StateRecall::censored).collect()
}

/// (S in M, T_recall in K) for the state sizes where some length was recalled.
pub fn recall_points(rows: &[StateRecall]) -> (Vec<f64>, Vec<f64>) {
    rows.iter().filter_map(|r| r.t_recall.map(|t| (s_millions(r.state_size), t_kilo(t)))).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_summaries_read_growth_past_t_retention_and_dt() {
        use stuffed_protocol::eval::{HeadStates, LayerStates, StatesResult};
        use stuffed_protocol::EvalResult;
        let head = |head: i64, rms: [f64; 3], log_ret: f64, dt: f64| HeadStates {
            head,
            state_rms: rms.to_vec(),
            log_retention: vec![0.0, log_ret / 2.0, log_ret],
            dt_mean: vec![dt; 3],
            ..HeadStates::default()
        };
        let states = StatesResult {
            positions: vec![1024, 2048, 4096],
            layers: vec![
                LayerStates { layer: 0, heads: vec![head(0, [1.0, 2.0, 4.0], -0.1, 0.01), head(1, [1.0, 100.0, 3.0], -5.0, 1e-4)] },
                LayerStates { layer: 1, heads: vec![head(0, [0.0, 1.0, 9.0], -1.0, f64::NAN)] },
            ],
            ..StatesResult::default()
        };
        let job = |id: &str, t: i64| JobRecord { id: id.into(), train_len: t, ..JobRecord::default() };
        let data = ReportData {
            jobs: vec![job("a", 2048), job("b", 128), job("none", 128)],
            evals: ["a", "b"]
                .map(|j| EvalRecord { job_id: j.into(), eval_index: 0, step: 1, tokens: None, result: EvalResult::States(states.clone()) })
                .to_vec(),
            ..ReportData::default()
        };
        let s = state_summaries(&data);
        assert_eq!(s.len(), 2, "a job without states has no row");
        // Trained at 2048: growth from 2048 on (head 0.1 shrinks 100 -> 3, head 0.0 doubles; the
        // zero RMS of 1.0 at 1024 does not matter past T).
        assert_eq!((s[0].from, s[0].to), (2048, 4096));
        assert_eq!(s[0].rms_growth, Some((9.0, (1, 0))));
        // Trained at 128: from the first position, 1024; a zero RMS there gives no ratio.
        assert_eq!((s[1].from, s[1].rms_growth), (1024, Some((4.0, (0, 0)))));
        assert_eq!(s[1].retention.map(|(r, at)| ((r - (-0.1f64).exp()).abs() < 1e-12, at)), Some((true, (0, 0))));
        assert_eq!(s[1].min_dt, Some((1e-4, (0, 1))), "a NaN dt is skipped");
    }

    fn row(pairs: &[(i64, bool)]) -> ForgetRow {
        let m: BTreeMap<i64, bool> = pairs.iter().copied().collect();
        forget_row(1, &m)
    }

    #[test]
    fn forget_is_smallest_length_of_the_stable_tail() {
        // collapse at 256, forgets at 512, collapses again at 1024, forgets from 2048 on
        let r = row(&[(256, false), (512, true), (1024, false), (2048, true), (4096, true)]);
        assert_eq!(r.t_forget, Some(2048));
        assert_eq!(r.collapsed_lengths, vec![256, 1024]);
        assert_eq!(r.lengths_tried, vec![256, 512, 1024, 2048, 4096]);
        // Censored: T_forget in (1024, 2048] tokens.
        assert_eq!(r.lower(), Some(1024));
        let c = r.censored().unwrap();
        assert_eq!((c.lo, c.hi), (Some(1.024), Some(2.048)));
    }

    #[test]
    fn forget_bounds_are_one_sided() {
        let never = row(&[(256, true), (512, true)]);
        assert!(never.is_upper_bound());
        let c = never.censored().unwrap();
        assert_eq!((c.lo, c.hi), (None, Some(0.256)));
        let always = row(&[(256, false), (512, false)]);
        let c = always.censored().unwrap();
        assert_eq!((c.lo, c.hi), (Some(0.512), None));
        assert_eq!(row(&[]).censored(), None);
    }

    #[test]
    fn point_verdict_follows_the_best_passkey_validation() {
        use Verdict::*;
        // The run validating best collapsed: the point collapsed, though another run did not.
        assert_eq!(point_verdict(&[(NotCollapsed, Some(0.4)), (Collapsed, Some(0.9))]), Collapsed);
        // The best run is inconclusive: the others decide, no collapse first.
        assert_eq!(point_verdict(&[(NotCollapsed, Some(0.4)), (Collapsed, Some(0.3)), (Inconclusive, Some(0.9))]), NotCollapsed);
        // No validation: the best-run rule.
        assert_eq!(point_verdict(&[(Collapsed, None), (NotCollapsed, None)]), NotCollapsed);
    }

    #[test]
    fn best_run_prefers_no_collapse_then_collapse() {
        use Verdict::*;
        assert_eq!(best_run(Collapsed, NotCollapsed), NotCollapsed);
        assert_eq!(best_run(Inconclusive, Collapsed), Collapsed);
        assert_eq!(best_run(Inconclusive, Inconclusive), Inconclusive);
    }

    #[test]
    fn forget_not_reached_when_longest_collapses() {
        let r = row(&[(256, true), (512, false)]);
        assert_eq!(r.t_forget, None);
        assert_eq!(r.largest_tried(), Some(512));
        assert_eq!(row(&[]).t_forget, None);
    }
}

/// One loss evaluation of a job during training (`evals_at`), as the report's figure and table
/// of "when did collapse appear" read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuringRow {
    pub job_id: String,
    pub eval_index: i64,
    /// Input source and mitigation of the evaluation (`corpus`, `newlines rri:...`).
    pub what: String,
    pub step: i64,
    pub tokens: Option<i64>,
    pub ratio: Option<f64>,
    pub ratio_ci: Option<[f64; 2]>,
    pub verdict: Option<Verdict>,
}

/// The loss evaluations of `eval_history` (those that ran at two steps or more), by job,
/// evaluation and step.
pub fn during_training(data: &ReportData) -> Vec<DuringRow> {
    let mut rows: Vec<DuringRow> = data
        .eval_history
        .iter()
        .filter(|e| e.kind() == "loss")
        .map(|e| {
            let v = eval_verdict(e, data.job(&e.job_id));
            let what = match e.mitigation() {
                "none" => e.source().to_string(),
                m => format!("{} {m}", e.source()),
            };
            DuringRow {
                job_id: e.job_id.clone(),
                eval_index: e.eval_index,
                what,
                step: e.step,
                tokens: e.tokens,
                ratio: v.as_ref().and_then(|v| v.ratio),
                ratio_ci: v.as_ref().and_then(|v| v.ratio_ci),
                verdict: v.map(|v| v.verdict),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.job_id, a.eval_index, a.step).cmp(&(&b.job_id, b.eval_index, b.step)));
    rows
}

/// The state diagnostics of one job's final states evaluation (no mitigation) in three numbers,
/// each with the head it comes from (paper section 3): how much the state grew past the training
/// length, how much of the first token the most retentive head still holds at the end, and the
/// smallest mean dt at the end (a head that neither writes nor forgets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateSummary {
    pub job_id: String,
    /// The positions compared: the first at or past the training length, and the last.
    pub from: i64,
    pub to: i64,
    /// Largest ratio of a head's state RMS at `to` to its RMS at `from`, and its (layer, head).
    pub rms_growth: Option<(f64, (i64, i64))>,
    /// Largest first-token retention at `to` over heads, and its (layer, head).
    pub retention: Option<(f64, (i64, i64))>,
    /// Smallest mean dt at `to` over heads, and its (layer, head).
    pub min_dt: Option<(f64, (i64, i64))>,
}

/// [`StateSummary`] of every job with a final states evaluation without mitigation (the first
/// such evaluation of a job), in job order.
pub fn state_summaries(data: &ReportData) -> Vec<StateSummary> {
    let mut out = Vec::new();
    for job in &data.jobs {
        let Some(s) = data.evals_of(&job.id, "states").filter(|e| e.mitigation() == "none").find_map(|e| e.states().ok()) else {
            continue;
        };
        let (Some(last), Some(&to)) = (s.positions.len().checked_sub(1), s.positions.last()) else {
            continue;
        };
        let t = job.train_len().unwrap_or(0);
        let first = s.positions.iter().position(|&p| p >= t).unwrap_or(last);
        let (mut rms_growth, mut retention, mut min_dt) = (None, None, None);
        let keep = |slot: &mut Option<(f64, (i64, i64))>, v: f64, at: (i64, i64), larger: bool| {
            if v.is_finite() && slot.is_none_or(|(b, _)| if larger { v > b } else { v < b }) {
                *slot = Some((v, at));
            }
        };
        for layer in &s.layers {
            for h in &layer.heads {
                let at = (layer.layer, h.head);
                if let (Some(&a), Some(&b)) = (h.state_rms.get(first), h.state_rms.get(last)) {
                    if a > 0.0 && first < last {
                        keep(&mut rms_growth, b / a, at, true);
                    }
                }
                if let Some(&r) = h.log_retention.get(last) {
                    keep(&mut retention, r.exp(), at, true);
                }
                if let Some(&d) = h.dt_mean.get(last) {
                    keep(&mut min_dt, d, at, false);
                }
            }
        }
        out.push(StateSummary { job_id: job.id.clone(), from: s.positions[first], to, rms_growth, retention, min_dt });
    }
    out
}
