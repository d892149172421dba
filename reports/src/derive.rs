// Derived measurements: per-job collapse verdicts, T_forget per state size, T_recall per job and
// per state size, and the (S in millions, T in K tokens) points the capacity laws are fitted to.
//
// T_forget rule (documented in README.md of every report):
// * A job's verdict comes from its `loss` evals without mitigation (`mitigation = none`): the
//   job *collapsed* if any of them (e.g. the corpus and the newlines source) collapsed, it
//   *forgets* if at least one has `collapsed == false` and none collapsed, and it has no verdict
//   when none has a verdict (no loss eval, or `collapsed` null because the training length is
//   shorter than one bucket).
// * A training length of a state size collapses when every job with a verdict at that
//   (state size, length) collapsed: several jobs at one point (learning rates, seeds) count as
//   the paper's "best run".
// * T_forget(S) = the smallest length without collapse such that every longer length tried for
//   S also shows no collapse. When the longest length tried collapses, T_forget is "not reached".
use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::{EvalRecord, JobRecord, ReportData};

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

    /// T_forget as a table cell: a length, `≤ L` (no collapse at any length tried) or
    /// `not reached (> L)`.
    pub fn describe(&self) -> String {
        match (self.t_forget, self.largest_tried()) {
            (Some(t), _) if self.is_upper_bound() => format!("≤ {t} (no collapse at any length tried)"),
            (Some(t), _) => t.to_string(),
            (None, Some(l)) => format!("not reached (> {l})"),
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
    /// `None`: no length reached > 95% accuracy at every depth.
    pub t_recall: Option<i64>,
}

/// T_recall of one state size: the maximum over its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRecall {
    pub state_size: i64,
    pub t_recall: Option<i64>,
    /// The job that reached it (the first by id on ties); `None` when no job reached any length.
    pub job_id: Option<String>,
    pub jobs: usize,
}

/// The collapse verdict of one job: `Some(true)` collapsed, `Some(false)` forgets, `None` no
/// verdict. Only evals with mitigation `none` count.
pub fn job_collapse(data: &ReportData, job_id: &str) -> Option<bool> {
    let mut verdict = None;
    for e in data
        .evals_of(job_id, "loss")
        .filter(|e| e.mitigation() == "none")
    {
        match e.loss()
            .ok()
            .and_then(|r| r.collapsed())
        {
            Some(true) => return Some(true),
            Some(false) => verdict = Some(false),
            None => {}
        }
    }
    verdict
}

/// T_forget for every state size that has at least one job (rows ascending by state size).
pub fn t_forget(data: &ReportData) -> Vec<ForgetRow> {
    // state size -> length -> "some job at this point forgets"
    let mut grid: BTreeMap<i64, BTreeMap<i64, bool>> = BTreeMap::new();
    for job in &data.jobs {
        let per_len = grid.entry(job.state_size).or_default();
        let (Some(len), Some(collapsed)) = (job.train_len(), job_collapse(data, &job.id)) else {
            continue;
        };
        let forgets = per_len.entry(len).or_insert(false);
        *forgets |= !collapsed;
    }
    grid.into_iter()
        .map(|(state_size, per_len)| forget_row(state_size, &per_len))
        .collect()
}

/// Apply the T_forget rule to one state size's (length -> forgets) map.
pub fn forget_row(state_size: i64, per_len: &BTreeMap<i64, bool>) -> ForgetRow {
    let lengths_tried: Vec<i64> = per_len.keys().copied().collect();
    let collapsed_lengths: Vec<i64> = per_len
        .iter()
        .filter(|(_, f)| !**f)
        .map(|(l, _)| *l)
        .collect();
    let mut t_forget = None;
    for (len, forgets) in per_len.iter().rev() {
        if !forgets {
            break;
        }
        t_forget = Some(*len);
    }
    ForgetRow {
        state_size,
        t_forget,
        lengths_tried,
        collapsed_lengths,
    }
}

/// The passkey evals of a job that count for T_recall (mitigation `none`).
fn plain_passkeys<'a>(
    data: &'a ReportData,
    job: &'a JobRecord,
) -> impl Iterator<Item = &'a EvalRecord> {
    data.evals_of(&job.id, "passkey")
        .filter(|e| e.mitigation() == "none")
}

/// T_recall per job that has a passkey eval without mitigation (the largest over several evals).
pub fn job_recalls(data: &ReportData) -> Vec<JobRecall> {
    let mut out = Vec::new();
    for job in &data.jobs {
        let mut any = false;
        let mut best: Option<i64> = None;
        for e in plain_passkeys(data, job) {
            let Ok(r) = e.passkey() else {
                continue;
            };
            any = true;
            best = best.max(r.t_recall);
        }
        if any {
            out.push(JobRecall {
                job_id: job.id.clone(),
                state_size: job.state_size,
                train_len: job.train_len(),
                t_recall: best,
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
            StateRecall {
                state_size,
                t_recall: best.map(|b| b.0),
                job_id: best.map(|b| b.1.to_string()),
                jobs: js.len(),
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
    rows.iter()
        .filter(|r| !r.is_upper_bound())
        .filter_map(|r| r.t_forget.map(|t| (s_millions(r.state_size), t_kilo(t))))
        .unzip()
}

/// (S in M, T_recall in K) for the state sizes where some length was recalled.
pub fn recall_points(rows: &[StateRecall]) -> (Vec<f64>, Vec<f64>) {
    rows.iter()
        .filter_map(|r| r.t_recall.map(|t| (s_millions(r.state_size), t_kilo(t))))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(i64, bool)]) -> ForgetRow {
        let m: BTreeMap<i64, bool> = pairs.iter().copied().collect();
        forget_row(1, &m)
    }

    #[test]
    fn forget_is_smallest_length_of_the_stable_tail() {
        // collapse at 256, forgets at 512, collapses again at 1024, forgets from 2048 on
        let r = row(&[
            (256, false),
            (512, true),
            (1024, false),
            (2048, true),
            (4096, true),
        ]);
        assert_eq!(r.t_forget, Some(2048));
        assert_eq!(r.collapsed_lengths, vec![256, 1024]);
        assert_eq!(r.lengths_tried, vec![256, 512, 1024, 2048, 4096]);
    }

    #[test]
    fn forget_not_reached_when_longest_collapses() {
        let r = row(&[(256, true), (512, false)]);
        assert_eq!(r.t_forget, None);
        assert_eq!(r.largest_tried(), Some(512));
        assert_eq!(row(&[]).t_forget, None);
    }
}
