// The evaluation results the reports read: the protocol crate's typed results (loss, passkey,
// states; docs/results-schema.md), re-exported under the names the figures use.
pub use stuffed_protocol::eval::{
    Bucket, Collapse, EvalResult, HeadStates, LayerStates, LossResult, PasskeyCell, PasskeyResult, StateHistogram, StatesResult,
};
