//! Data: corpora of token shards, training samplers, the passkey and probe generators.
pub mod probes;
