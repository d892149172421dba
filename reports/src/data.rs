// The report's input records (what the runner reads out of SQLite) and small accessors on them.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything a report is made from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportData {
    pub sweeps: Vec<SweepRecord>,
    pub jobs: Vec<JobRecord>,
    pub evals: Vec<EvalRecord>,
    pub metrics: Vec<MetricRecord>,
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

/// One training job of a sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub sweep: String,
    pub status: String,
    /// Short human label, e.g. "d_state=16 seq_len=256".
    pub label: String,
    /// Resolved job config: `config["train"]["seq_len"]` is the training length,
    /// `config["model"]` holds the flat model keys (d_model, n_layer, d_state, headdim, ...).
    pub config: Value,
    /// Total SSM state size S = sum over layers of H * P * N.
    pub state_size: i64,
    pub n_params: i64,
}

/// One evaluation of a job; `result` has the shape of docs/results-schema.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvalRecord {
    pub job_id: String,
    /// `loss`, `passkey` or `states`.
    pub kind: String,
    pub params: Value,
    pub result: Value,
}

/// One training metric row (key `loss` for the training curves).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricRecord {
    pub job_id: String,
    pub step: i64,
    pub key: String,
    pub value: f64,
}

impl JobRecord {
    /// The training length `config.train.seq_len`, if present.
    pub fn train_len(&self) -> Option<i64> {
        self.config.get("train")?.get("seq_len")?.as_i64()
    }

    /// A flat model key such as `d_state`, if present and an integer.
    pub fn model_int(&self, key: &str) -> Option<i64> {
        self.config.get("model")?.get(key)?.as_i64()
    }
}

impl EvalRecord {
    /// A string parameter, looked up in `params` and then in `result.params`.
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .and_then(Value::as_str)
            .or_else(|| self.result.get("params")?.get(key)?.as_str())
    }

    /// The canonical mitigation text; `none` when absent.
    pub fn mitigation(&self) -> &str {
        self.param_str("mitigation").unwrap_or("none")
    }

    /// The input source of a loss or states eval (`corpus`, `newlines`, `text`); `corpus`
    /// when absent.
    pub fn source(&self) -> &str {
        self.param_str("source").unwrap_or("corpus")
    }

    /// A key that orders evals deterministically whatever order the database returned them in.
    pub(crate) fn sort_key(&self) -> (String, String, String, String, String) {
        (
            self.job_id.clone(),
            self.kind.clone(),
            self.mitigation().to_string(),
            self.source().to_string(),
            self.params.to_string(),
        )
    }
}

impl ReportData {
    /// A copy with jobs, evals, metrics and sweeps in a canonical order, so that everything
    /// derived from it is independent of the order the records were loaded in.
    pub fn canonical(&self) -> ReportData {
        let mut d = self.clone();
        d.sweeps.sort_by(|a, b| a.name.cmp(&b.name));
        d.jobs.sort_by(|a, b| {
            (a.state_size, a.train_len(), &a.id).cmp(&(b.state_size, b.train_len(), &b.id))
        });
        d.evals.sort_by_key(EvalRecord::sort_key);
        d.metrics.sort_by(|a, b| {
            (&a.job_id, &a.key, a.step)
                .cmp(&(&b.job_id, &b.key, b.step))
                .then(a.value.total_cmp(&b.value))
        });
        d
    }

    pub fn job(&self, id: &str) -> Option<&JobRecord> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The evals of one job and kind, in the stored order.
    pub fn evals_of<'a>(
        &'a self,
        job_id: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a EvalRecord> {
        self.evals
            .iter()
            .filter(move |e| e.job_id == job_id && e.kind == kind)
    }

    /// The last training loss of a job (metric `loss` at its largest step).
    pub fn final_loss(&self, job_id: &str) -> Option<f64> {
        self.metrics
            .iter()
            .filter(|m| m.job_id == job_id && m.key == "loss" && m.value.is_finite())
            .max_by_key(|m| m.step)
            .map(|m| m.value)
    }
}
