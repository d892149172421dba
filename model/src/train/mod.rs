//! Training: AdamW in tensor ops, the learning-rate schedule, the training step, the job
//! config and the training loop with exact resume.
pub mod adamw;
pub mod schedule;
pub mod step;

pub use adamw::{AdamW, AdamWConfig};
pub use schedule::Schedule;
pub use step::{train_step, Batch, StepResult, IGNORE};
