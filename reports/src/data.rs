// The report's input records (what the runner reads out of SQLite) and small accessors on them.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stuffed_protocol::eval::{LossResult, PasskeyResult, StatesResult};
use stuffed_protocol::EvalResult;

use crate::Error;

/// Everything a report is made from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportData {
    pub sweeps: Vec<SweepRecord>,
    pub jobs: Vec<JobRecord>,
    /// Final evaluations: each of a job's evaluations at the last step it ran at.
    pub evals: Vec<EvalRecord>,
    pub metrics: Vec<MetricRecord>,
    /// The adaptive searches' steps (`search:` sweeps), in the order the store lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_steps: Vec<stuffed_protocol::SearchStep>,
    /// Every step of the evaluations that ran at two steps or more (`evals_at`): the final
    /// ones again, and those during training.
    #[serde(default)]
    pub eval_history: Vec<EvalRecord>,
}

/// One sweep: its name, description, creation time and job counts per status.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SweepRecord {
    pub name: String,
    pub description: String,
    pub created_at: String,
    /// status -> number of jobs
    pub counts: BTreeMap<String, i64>,
}

pub use stuffed_protocol::JobRecord;

/// One evaluation of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub job_id: String,
    /// Its index in the job's `evals`.
    #[serde(default)]
    pub eval_index: i64,
    /// The checkpoint's training step.
    #[serde(default)]
    pub step: i64,
    /// Training tokens of the checkpoint, when recorded.
    #[serde(default)]
    pub tokens: Option<i64>,
    pub result: EvalResult,
}

/// One training metric row (key `loss` for the training curves).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricRecord {
    pub job_id: String,
    pub step: i64,
    pub key: String,
    pub value: f64,
}

impl EvalRecord {
    /// `loss`, `passkey` or `states`.
    pub fn kind(&self) -> &'static str {
        self.result.kind()
    }

    /// The canonical mitigation text; `none` when absent.
    pub fn mitigation(&self) -> &str {
        self.result.mitigation()
    }

    /// The input source of a loss or states eval (`corpus`, `newlines`, `text`).
    pub fn source(&self) -> &str {
        self.result.source()
    }

    /// The result as a loss result (an error naming the job when it is another kind).
    pub fn loss(&self) -> Result<&LossResult, Error> {
        self.result.as_loss().ok_or_else(|| self.not("loss"))
    }

    pub fn passkey(&self) -> Result<&PasskeyResult, Error> {
        self.result.as_passkey().ok_or_else(|| self.not("passkey"))
    }

    /// The result as a states result whose series have one value per position.
    pub fn states(&self) -> Result<&StatesResult, Error> {
        let s = self.result.as_states().ok_or_else(|| self.not("states"))?;
        s.validate().map_err(|e| Error::Data(e.to_string()))?;
        Ok(s)
    }

    fn not(&self, kind: &str) -> Error {
        Error::Data(format!("evaluation of job {} is a {} result, not {kind}", self.job_id, self.kind()))
    }

    /// A key that orders evals deterministically whatever order the database returned them in.
    pub(crate) fn sort_key(&self) -> (String, String, String, String, String) {
        (
            self.job_id.clone(),
            self.kind().to_string(),
            self.mitigation().to_string(),
            self.source().to_string(),
            self.result.params_json().to_string(),
        )
    }
}

impl ReportData {
    /// A copy with jobs, evals, metrics and sweeps in a canonical order, so that everything
    /// derived from it is independent of the order the records were loaded in.
    pub fn canonical(&self) -> ReportData {
        let mut d = self.clone();
        d.sweeps.sort_by(|a, b| a.name.cmp(&b.name));
        d.jobs.sort_by(|a, b| (a.state_size, a.train_len(), &a.id).cmp(&(b.state_size, b.train_len(), &b.id)));
        d.evals.sort_by_key(EvalRecord::sort_key);
        d.eval_history.sort_by(|a, b| (&a.job_id, a.eval_index, a.step).cmp(&(&b.job_id, b.eval_index, b.step)));
        d.metrics.sort_by(|a, b| (&a.job_id, &a.key, a.step).cmp(&(&b.job_id, &b.key, b.step)).then(a.value.total_cmp(&b.value)));
        d
    }

    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The evals of one job and kind, in the stored order.
    pub fn evals_of<'a>(&'a self, job_id: &'a str, kind: &'a str) -> impl Iterator<Item = &'a EvalRecord> {
        self.evals.iter().filter(move |e| e.job_id == job_id && e.kind() == kind)
    }

    /// The last training loss of a job (metric `loss` at its largest step).
    pub fn final_loss(&self, job_id: &str) -> Option<f64> {
        self.metrics.iter().filter(|m| m.job_id == job_id && m.key == "loss" && m.value.is_finite()).max_by_key(|m| m.step).map(|m| m.value)
    }
}
