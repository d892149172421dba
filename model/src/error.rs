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

    /// Runs `f`, turning a panic into an error. tch's infallible tensor methods report a
    /// libtorch error, a CUDA out-of-memory included, by panicking; a training step run
    /// through this ends as a classified failure (an OOM is retried alone on its GPU) with
    /// libtorch's message, instead of killing the worker without a final event.
    pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|e| {
            let msg = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            Error::Torch(tch::TchError::Torch(msg.to_string()))
        })
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn at(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::WithPath { path: path.into(), msg: msg.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_out_of_memory_becomes_a_retryable_oom() {
        // What tch's infallible methods panic with when CUDA runs out of memory (lease 3).
        let r: Result<()> = Error::catch_panic(|| {
            panic!("called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 4.00 GiB\")")
        });
        let e = r.unwrap_err();
        assert_eq!(e.failure_kind(), FailureKind::Oom);
        assert!(e.to_string().contains("Tried to allocate 4.00 GiB"), "{e}");
        let other: Result<()> = Error::catch_panic(|| panic!("index out of range"));
        assert_eq!(other.unwrap_err().failure_kind(), FailureKind::Internal);
        assert_eq!(Error::catch_panic(|| 7).unwrap(), 7);
    }
}
