//! `SweepError`: what can go wrong loading or expanding a sweep. Problems with a place in a file
//! are `stuffed_model::yaml::YamlError`s (`FILE:LINE:COL: key `k`: message`); the rest name the
//! sweep file.
use std::path::{Path, PathBuf};

use stuffed_model::yaml::YamlError;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A problem in the sweep file or its base job config, located when possible.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// The cartesian product is larger than the caller allows.
    #[error("{}: the sweep expands to {jobs} jobs, more than --max-jobs {max}", file.display())]
    TooManyJobs { file: PathBuf, jobs: u128, max: usize },
    /// Two combinations resolve to the same job config.
    #[error(
        "{}: jobs `{first}` and `{second}` resolve to the same config (id {id}); remove one of them",
        file.display()
    )]
    DuplicateJob { file: PathBuf, id: String, first: String, second: String },
    /// A problem with a value given on the command line (`--set KEY=VALUE`).
    #[error("--set {arg}: {}{msg}", key.as_ref().filter(|k| !msg.contains(&format!("`{k}`"))).map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Override { arg: String, key: Option<String>, msg: String },
}

impl SweepError {
    /// The located error inside, if any.
    pub fn yaml(&self) -> Option<&YamlError> {
        match self {
            SweepError::Yaml(e) => Some(e),
            _ => None,
        }
    }
}

/// A `YamlError` at `loc` (1-based line and column) in `file`.
pub(crate) fn at(file: &Path, loc: Option<(usize, usize)>, key: Option<&str>, msg: impl Into<String>) -> SweepError {
    SweepError::Yaml(YamlError {
        file: file.to_path_buf(),
        line: loc.map(|(l, _)| l),
        column: loc.map(|(_, c)| c),
        key: key.map(str::to_string),
        msg: msg.into(),
    })
}
