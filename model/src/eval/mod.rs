//! The study's evaluations: loss by position with the state-collapse verdict, the passkey
//! grid (or a bisection over lengths for T_recall), state diagnostics, and the training-free mitigations they can run under.
pub mod collapse;
pub mod length_search;
pub mod loss;
pub mod mitigation;
pub mod passkey;
pub mod states;

pub use loss::{collapse_verdict, Bucket, Collapse, LossCurve, LossEval};
pub use mitigation::Mitigation;
pub use passkey::{PasskeyEval, PasskeyResult};
pub use states::{StatesEval, StatesResult};

/// A progress report of a long evaluation: `(tokens done, tokens in all)`, called after every
/// forward call (a progress bar's update; the library draws nothing itself).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// The progress report that reports nothing.
pub fn no_progress(_: u64, _: u64) {}
