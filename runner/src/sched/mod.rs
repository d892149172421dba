//! Scheduling sweep jobs: the plan (what each job needs), resource estimates, how an attempt's
//! end is classified (retry or not), and the backends that run workers (`local` now).
pub mod display;
pub mod local;
pub mod owner;
pub mod slurm;

use std::path::PathBuf;

use serde::Serialize;
use stuffed_model::train::JobConfig;
use stuffed_model::MambaConfig;

/// A job ready to schedule.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub id: String,
    pub label: String,
    pub config: JobConfig,
    pub model: MambaConfig,
    pub run_dir: PathBuf,
    /// Estimated peak GPU memory, GB.
    pub est_mem_gb: f64,
    /// Estimated wall time, seconds (rough).
    pub est_secs: f64,
}

/// CUDA context and allocator slack per worker process, GB.
pub const PROCESS_OVERHEAD_GB: f64 = 0.6;

/// Peak training memory from the config: weights, gradients, AdamW moments and update buffers
/// (24 bytes per parameter), activations kept for backward (projections and the chunked SSD's
/// Q x Q blocks per head), and the logits. Calibrated on the eager anchors of shared/bench
/// (130m 8 x 2048: 74 GB; tiny 64 x 1024: 3.3 GB); an upper bound for smaller shapes.
pub fn estimate_memory_gb(job: &JobConfig, m: &MambaConfig) -> f64 {
    let params = m.num_params() as f64;
    let rows = job.train.micro_batch_size.unwrap_or(job.train.batch()).min(job.train.batch());
    let tokens = (rows * job.train.seq_len) as f64;
    let q = m.chunk_size().min(job.train.seq_len) as f64;
    let per_token_layer = 40.0 * m.d_inner() as f64 + 20.0 * m.nheads() as f64 * q + 8.0 * m.conv_dim() as f64;
    let acts = tokens * (m.n_layer as f64 * per_token_layer + 10.0 * m.padded_vocab() as f64);
    (24.0 * params + acts) / 1e9 + PROCESS_OVERHEAD_GB
}

/// Rough throughput model for the time estimate: FLOP/s one worker sustains.
pub fn estimate_secs(job: &JobConfig, m: &MambaConfig, on_gpu: bool, parallel: usize) -> f64 {
    let tokens = (job.train.total_steps() * job.train.batch() * job.train.seq_len) as f64;
    let flops = 3.0 * m.flops_per_token() * tokens;
    let rate = if on_gpu { 5e13 } else { 1.5e10 / parallel.max(1) as f64 };
    flops / rate + 5.0
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndClass {
    Completed,
    /// NaN/inf loss or gradient: deterministic, never retried.
    Diverged,
    /// Bad config or input (unknown keys, missing corpus, tokenizer mismatch): never retried.
    Config,
    /// CUDA out of memory: retried with the GPU to itself.
    Oom,
    /// Died without a final event (killed, crashed, machine lost): retried from the checkpoint.
    Killed,
    /// Ran past the sweep's timeout: retried from the checkpoint.
    Timeout,
    /// Stopped on request (Ctrl-C, cancel): not retried in this run.
    Interrupted,
    /// Any other failure: recorded, not retried.
    Failed,
}

impl EndClass {
    pub fn retryable(self) -> bool {
        matches!(self, EndClass::Oom | EndClass::Killed | EndClass::Timeout)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EndClass::Completed => "completed",
            EndClass::Diverged => "diverged",
            EndClass::Config => "config",
            EndClass::Oom => "oom",
            EndClass::Killed => "killed",
            EndClass::Timeout => "timeout",
            EndClass::Interrupted => "interrupted",
            EndClass::Failed => "failed",
        }
    }

    /// The job status this end leaves when it is not retried.
    pub fn job_status(self) -> &'static str {
        match self {
            EndClass::Completed => "completed",
            EndClass::Diverged => "diverged",
            EndClass::Interrupted => "interrupted",
            _ => "failed",
        }
    }
}

/// Classifies an attempt from its `done` event (if the worker wrote one).
pub fn classify(done: Option<&serde_json::Value>) -> (EndClass, Option<String>) {
    let Some(d) = done else { return (EndClass::Killed, Some("the worker died without a final event".into())) };
    let error = d["error"].as_str().map(String::from);
    let class = match d["status"].as_str().unwrap_or("") {
        "completed" => EndClass::Completed,
        "diverged" => EndClass::Diverged,
        "interrupted" => EndClass::Interrupted,
        _ => {
            let e = error.as_deref().unwrap_or("").to_ascii_lowercase();
            if e.contains("out of memory") {
                EndClass::Oom
            } else if ["yaml", "key `", "unknown field", "no corpus", "tokenizer", "not found", "invalid model config", "must be"]
                .iter()
                .any(|k| e.contains(k))
            {
                EndClass::Config
            } else {
                EndClass::Failed
            }
        }
    };
    (class, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classification_decides_retries() {
        assert_eq!(classify(None).0, EndClass::Killed);
        assert!(classify(None).0.retryable());
        let oom = json!({"status": "failed", "error": "CUDA out of memory. Tried to allocate 2.00 GiB"});
        assert_eq!(classify(Some(&oom)).0, EndClass::Oom);
        let nan = json!({"status": "diverged", "error": "training diverged: loss NaN"});
        assert!(!classify(Some(&nan)).0.retryable());
        let data = json!({"status": "failed", "error": "results/corpora/x: no corpus here (manifest.json missing)"});
        assert_eq!(classify(Some(&data)).0, EndClass::Config);
        assert!(!EndClass::Config.retryable());
    }

    #[test]
    fn memory_estimate_is_in_the_anchors_range() {
        let yaml = |preset: &str, tok: &str, b: i64, l: i64| {
            format!("model: {{preset: {preset}}}\ntokenizer: {tok}\ntrain: {{seq_len: {l}, batch_size: {b}, steps: 1, lr: 0.001}}\n")
        };
        let job = JobConfig::from_yaml(&yaml("130m", "gpt2", 8, 2048), std::path::Path::new("x")).unwrap();
        let gb = estimate_memory_gb(&job, &job.model_config().unwrap());
        assert!((60.0..100.0).contains(&gb), "130m 8x2048: {gb} GB");
        let job = JobConfig::from_yaml(&yaml("tiny", "bytes", 64, 1024), std::path::Path::new("x")).unwrap();
        let gb = estimate_memory_gb(&job, &job.model_config().unwrap());
        assert!((1.5..8.0).contains(&gb), "tiny 64x1024: {gb} GB");
    }
}
