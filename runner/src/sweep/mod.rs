//! Sweep YAML: the spec (grid, zip, derived, seeds, evals, resources, retries, backend) and its
//! expansion into fully resolved, hashed job configs; the adaptive threshold search (`search`).
mod error;
mod expand;
mod expr;
mod keys;
mod overrides;
mod plan;
mod resources;
pub mod search;
mod spec;

pub use error::SweepError;
pub use expand::{canonical_json, expand, job_id, ExpandedJob};
pub use expr::{evaluate, is_template, ExprError};
pub use keys::{KeyPath, Origin, Segment};
pub use overrides::{job_with_overrides, Override};
pub use resources::{parse_duration, parse_memory_gb, Backend, MemorySpec, Resources, SlurmBackend};
pub use spec::{Base, BaseConfig, LoadedSearch, LoadedSweep, SweepSpec};
