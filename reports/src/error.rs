// The crate's error type: one `thiserror` enum with enough context (paths, lines) to act on.
use std::path::PathBuf;

/// Everything that can go wrong while fitting laws, drawing figures or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be read as numbers; `line` is 1-based, `msg` names the column.
    #[error("{}:{line}: {msg}", path.display())]
    Csv { path: PathBuf, line: usize, msg: String },
    /// A fit was asked for with fewer points than the model needs.
    #[error("too few points to fit: needed at least {needed}, got {got}")]
    TooFewPoints { needed: usize, got: usize },
    /// A figure could not be drawn or encoded.
    #[error("plot: {0}")]
    Plot(String),
    /// A fit failed for a reason other than the number of points.
    #[error("fit: {0}")]
    Fit(String),
    /// The points do not follow the exponential law: its least-squares base a = e^`log_a` is
    /// too far from 1 to be represented.
    #[error(
        "the {n} points do not follow an exponential law T = b·(a^S − 1) + c: the closest such \
         curve has a base a = e^{log_a:.1}, which cannot be represented"
    )]
    NotExponential { n: usize, log_a: f64 },
    /// An evaluation result or record does not have the documented shape.
    #[error("data: {0}")]
    Data(String),
}

impl Error {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

impl<E: std::error::Error + Send + Sync> From<plotters::drawing::DrawingAreaErrorKind<E>> for Error {
    fn from(e: plotters::drawing::DrawingAreaErrorKind<E>) -> Self {
        Error::Plot(e.to_string())
    }
}
