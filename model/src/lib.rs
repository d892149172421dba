//! stuffed-model: an exact Mamba-2 language model in tch (chunked SSD, recurrent step,
//! streaming state), its tokenizers and data, the trainer and the study's evaluations.
//! A pure library: no CLI, no database.

// `t = t * x` on tensors is deliberate: `t *= x` is in place, which autograd must not see on a
// tensor it saved for backward.
#![allow(clippy::assign_op_pattern)]
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod cuda;
pub mod data;
pub mod error;
pub mod eval;
pub mod hub;
pub mod limits;
pub mod lm;
pub mod mixer;
pub mod params;
pub mod probe;
pub mod rng;
pub mod ssd;
pub mod state;
pub mod tokenizer;
pub mod train;
pub mod yaml;

pub use config::{MambaConfig, ModelSpec, SsmConfig};
pub use error::{Error, Result};
pub use lm::Mamba2LM;
pub use mixer::Exec;
pub use probe::{Knobs, MixerObservation, Probe};
pub use state::State;
/// The typed worker/controller/report contract (events, results, failure kinds).
pub use stuffed_protocol as protocol;
pub use tokenizer::Tokenizer;

/// libtorch version this crate was built for (tch 0.24 pairs with PyTorch 2.11.0).
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// Whether every element of `t` is finite (no NaN, no inf).
pub fn all_finite(t: &tch::Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}
