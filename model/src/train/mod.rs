//! Training: AdamW in tensor ops, the learning-rate schedule, the training step, the job
//! config and the training loop with exact resume.
pub mod adamw;
pub mod config;
pub mod events;
pub mod graph;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use config::{EvalPoint, EvalSpec, JobConfig, Precision, PrecisionExt};
pub use events::EventLog;
pub use graph::GraphedStep;
pub use schedule::Schedule;
pub use step::{train_step, Batch, StepResult, IGNORE};
pub use trainer::{latest_checkpoint, train, Control, EvalMoment, OnEval, StepInfo, TrainOutcome};
