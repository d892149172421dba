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
