//! Scheduling sweep jobs: the plan (what each job needs), resource estimates, how an attempt's
//! end is classified (retry or not), and the backends that run workers (`local` now).
pub mod ctllock;
pub mod display;
pub mod gpus;
pub mod local;
pub mod owner;
pub mod slurm;

use std::path::PathBuf;

use stuffed_model::protocol::{AttemptEnd, Done, FailureKind};
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

/// Classifies an attempt from its `done` event (if the worker wrote one): the kind the worker
/// recorded decides; a worker that died without a final event was killed.
pub fn classify(done: Option<&Done>) -> (AttemptEnd, Option<String>) {
    match done {
        Some(d) => (d.end(), d.error.clone()),
        None => (AttemptEnd::Failed(FailureKind::Killed), Some("the worker died without a final event".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_decides_retries_from_the_kind_alone() {
        assert_eq!(classify(None).0, AttemptEnd::Failed(FailureKind::Killed));
        assert!(classify(None).0.retryable());
        // The message plays no part: an OOM kind is retried whatever it says, and a config
        // error is not, even when its text mentions memory.
        let oom = Done::failed(FailureKind::Oom, 1, "anything".into());
        assert_eq!(classify(Some(&oom)).0, AttemptEnd::Failed(FailureKind::Oom));
        assert!(classify(Some(&oom)).0.retryable());
        let cfg = Done::failed(FailureKind::Config, 1, "model too large: CUDA out of memory expected".into());
        assert!(!classify(Some(&cfg)).0.retryable());
        let nan = Done::failed(FailureKind::Diverged, 4, "training diverged: loss NaN".into());
        assert!(!classify(Some(&nan)).0.retryable());
        assert_eq!(classify(Some(&nan)).0.job_status().as_str(), "diverged");
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
