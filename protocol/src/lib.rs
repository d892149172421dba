//! The contract between the worker (which trains and evaluates), the controller (which ingests
//! what workers write and is the only writer of the database), the database and the reports.
//! Everything that crosses those boundaries is a type here, serde-tagged and versioned, and
//! every reader matches on it: no reader looks a kind up by string.
//!
//! - [`event`]: the worker's event log (`events.jsonl`), one [`Event`] per line.
//! - [`criterion`]: a yes/no question asked of evaluations (adaptive search, early stopping).
//! - [`eval`]: evaluation results ([`EvalResult`]: loss, passkey, states).
//! - [`failure`]: how an attempt failed ([`FailureKind`]) and whether it is retried.
//! - [`status`]: a job's status.
//! - [`precision`]: compute precision of training and evaluations.
//! - [`job`]: a job as the store lists it and the reports read it ([`JobRecord`]).
//! - [`search`]: the adaptive threshold search's steps ([`SearchStep`]).
//! - [`rundir`]: file names inside a job's run directory.
//! - [`tidy`]: evaluation results in long form ([`EvalPoint`]), for the long-format exports.
pub mod criterion;
pub mod eval;
pub mod event;
pub mod failure;
pub mod job;
pub mod precision;
pub mod rundir;
pub mod schema;
pub mod search;
mod serde_nan;
pub mod status;
pub mod tidy;

pub use eval::{EvalResult, LossResult, PasskeyResult, StatesResult};
pub use event::{Done, Envelope, Event, EVENT_FORMAT};
pub use failure::{AttemptEnd, FailureKind};
pub use job::{JobRecord, ModelDims};
pub use precision::Precision;
pub use search::{SearchDecision, SearchStep};
pub use status::JobStatus;
pub use tidy::{EvalPoint, EVAL_POINT_COLUMNS};

/// A value that does not parse as a member of the contract.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown {what} '{value}' (expected one of: {expected})")]
    Unknown { what: &'static str, value: String, expected: String },
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
}
