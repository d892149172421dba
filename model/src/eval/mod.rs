//! The study's evaluations: loss by position with the state-collapse verdict, the passkey
//! grid, state diagnostics, and the training-free mitigations they can run under.
pub mod loss;
pub mod mitigation;

pub use loss::{collapse_verdict, Bucket, Collapse, LossCurve, LossEval};
pub use mitigation::Mitigation;
