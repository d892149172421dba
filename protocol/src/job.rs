//! A job as the store lists it, the dump carries it and the reports read it: one row type.
//! The quantities the study is about are typed columns (state size, training length, model
//! sizes, the keys the sweep varied); the full resolved config is kept for provenance and
//! display, never dug into by readers.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::JobStatus;

/// How a job label writes one value of a varied key (`d_state=16`, `corpus=results/corpora/java`):
/// strings bare, everything else as compact JSON.
pub fn label_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Model sizes of a job, resolved from its preset and overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelDims {
    pub d_model: i64,
    pub n_layer: i64,
    pub d_state: i64,
    pub headdim: i64,
    pub expand: i64,
    pub ngroups: i64,
    pub nheads: i64,
    pub vocab_size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobRecord {
    pub id: String,
    /// The job's (first) sweep and its label there, e.g. "d_state=16 seq_len=256".
    pub sweep: String,
    pub label: String,
    /// The keys the sweep varied for this job and their values (`model.d_state` -> 16).
    pub varied: Map<String, Value>,
    pub position: i64,
    pub status: JobStatus,
    /// Total SSM state size S = sum over layers of H * P * N.
    pub state_size: i64,
    pub n_params: i64,
    /// Training length (tokens per sequence).
    pub train_len: i64,
    pub model: ModelDims,
    /// The resolved job config (provenance; readers use the typed columns).
    pub config: Value,
    /// Where the job ran (provenance of another machine for imported jobs).
    pub run_dir: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub error_class: Option<String>,
    pub last_seq: i64,
    pub step: Option<i64>,
    pub total_steps: Option<i64>,
    pub last_loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
    pub peak_mem_gb: Option<f64>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// The step at which training stopped early (`early_stop`): a completed job, not a failure.
    pub stopped_early: Option<i64>,
}

impl Default for JobRecord {
    fn default() -> Self {
        JobRecord {
            id: String::new(),
            sweep: String::new(),
            label: String::new(),
            varied: Map::new(),
            position: 0,
            status: JobStatus::Pending,
            state_size: 0,
            n_params: 0,
            train_len: 0,
            model: ModelDims::default(),
            config: Value::Null,
            run_dir: String::new(),
            attempts: 0,
            error: None,
            error_class: None,
            last_seq: 0,
            step: None,
            total_steps: None,
            last_loss: None,
            tokens_per_s: None,
            peak_mem_gb: None,
            created_at: String::new(),
            updated_at: String::new(),
            finished_at: None,
            stopped_early: None,
        }
    }
}

impl JobRecord {
    /// The training length, when the job has one.
    pub fn train_len(&self) -> Option<i64> {
        (self.train_len > 0).then_some(self.train_len)
    }

    /// A varied key's value (`model.d_state`), when the sweep varied it.
    pub fn varied_value(&self, key: &str) -> Option<&Value> {
        self.varied.get(key)
    }
}
