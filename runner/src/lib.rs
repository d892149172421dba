//! Library behind the `stuffed` binary: the CLI tree (`cli/`), sweep expansion, the scheduler
//! and its backends, the worker entry point and the SQLite store.
pub mod cli;
pub mod config_schema;
pub mod evaluate;
pub mod job;
pub mod safety;
pub mod sched;
pub mod serve;
pub mod store;
pub mod sweep;
pub mod tabular;
pub mod version;

/// Exit codes shared by every command (documented in the README).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any error: bad input, failed command.
    pub const ERROR: i32 = 1;
    /// Command-line usage error (clap's own code).
    pub const USAGE: i32 = 2;
    /// libtorch or a requested device is not usable.
    pub const DEVICE: i32 = 3;
    /// Training stopped on a NaN/inf loss or gradient.
    pub const DIVERGED: i32 = 4;
    /// Stopped by a signal after a clean checkpoint (Ctrl-C, SIGTERM).
    pub const INTERRUPTED: i32 = 130;
}

/// The error chain on one line: `outer: inner: root cause`.
pub fn report_error(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// How a failed job is classified: the model crate's error kind where the chain holds one
/// (its type says what went wrong), else an internal failure. Never read from the message.
pub fn failure_kind(err: &anyhow::Error) -> stuffed_model::protocol::FailureKind {
    err.chain()
        .find_map(|c| c.downcast_ref::<stuffed_model::Error>().map(stuffed_model::Error::failure_kind))
        .unwrap_or(stuffed_model::protocol::FailureKind::Internal)
}

/// Exit code for an error, looking through the chain for the model crate's error kinds.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    use stuffed_model::Error as E;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<E>() {
            return match e {
                E::Diverged(_) => exit::DIVERGED,
                E::Interrupted => exit::INTERRUPTED,
                E::Device(_) => exit::DEVICE,
                _ => exit::ERROR,
            };
        }
    }
    exit::ERROR
}
