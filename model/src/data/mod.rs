//! Data: corpora of token shards, training samplers, the passkey and probe generators.
pub mod corpus;
pub mod passkey;
pub mod probes;
pub mod sampler;

pub use corpus::{Corpus, Split};
pub use sampler::{MixtureItem, Sampler, SamplerState, SourceKind};
