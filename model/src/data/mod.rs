//! Data: corpora of token shards (plain and cleaned builds, readers, packing for transfer),
//! training samplers, the passkey and probe generators.
pub mod clean;
pub mod corpus;
pub mod dedup;
pub mod pack;
pub mod passkey;
pub mod pipeline;
pub mod probes;
pub mod reader;
pub mod sampler;

pub use corpus::{Corpus, Split};
pub use sampler::{MixtureItem, PasskeyScore, Sampler, SamplerState, Selection, SourceKind};
