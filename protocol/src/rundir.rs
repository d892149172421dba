//! File names inside a job's run directory, shared by the worker that writes them, the
//! controller that reads them and the dashboard that serves them.

/// The worker's event log, one JSON [`crate::Envelope`] per line.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The resolved job config the worker runs.
pub const JOB_FILE: &str = "job.yaml";
/// What the worker prints (stdout and stderr).
pub const WORKER_LOG: &str = "worker.log";
/// Held (flock) by the worker process for as long as it runs; holds its pid.
pub const LOCK_FILE: &str = "lock";
/// Checkpoints: `ckpt/step-NNNNNNNN/`.
pub const CKPT_DIR: &str = "ckpt";
/// `ckpt/latest` names the newest complete checkpoint.
pub const LATEST: &str = "latest";
/// The trainer's state inside a checkpoint (step, tokens, data cursor).
pub const TRAINER_FILE: &str = "trainer.json";

/// The checkpoint directory name of a step (`step-00000120`).
pub fn checkpoint_name(step: i64) -> String {
    format!("step-{step:08}")
}
