//! The error type of the model crate: every failure carries the context a user needs
//! (the file, the tensor, the key, the expected and found shapes).
use std::path::PathBuf;

use stuffed_protocol::FailureKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    WithPath { path: PathBuf, msg: String },
    #[error("tensor '{name}': expected shape {expected:?}, found {got:?}")]
    Shape { name: String, expected: Vec<i64>, got: Vec<i64> },
    #[error("{0}")]
    Device(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Something named (a hub repository, a revision) is not on this machine.
    #[error("{0}")]
    NotFound(String),
    #[error("data: {0}")]
    Data(String),
    #[error("training diverged: {0}")]
    Diverged(String),
    #[error("interrupted")]
    Interrupted,
    #[error("evaluation: {0}")]
    Eval(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// How a job that failed with this error is classified (and so whether it is retried).
    /// libtorch reports CUDA out-of-memory only in its message: this is the one place that
    /// reads one, at the boundary where the error enters the crate.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Error::Config(_) | Error::Shape { .. } | Error::Device(_) => FailureKind::Config,
            Error::Io { .. } | Error::WithPath { .. } | Error::Tokenizer(_) | Error::Data(_) | Error::Json(_) | Error::NotFound(_) => {
                FailureKind::Data
            }
            Error::Diverged(_) => FailureKind::Diverged,
            Error::Interrupted => FailureKind::Interrupted,
            Error::Eval(_) => FailureKind::Internal,
            Error::Torch(e) if e.to_string().contains("out of memory") => FailureKind::Oom,
            Error::Torch(_) => FailureKind::Internal,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn at(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::WithPath { path: path.into(), msg: msg.into() }
    }
}
