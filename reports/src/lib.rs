//! Capacity-law fits, figures and reports for `stuffed`, the automation of the "Stuffed Mamba"
//! study (arXiv 2410.07145).
//!
//! * [`curves`]: two training runs' loss curves compared (`stuffed bench lossmatch`);
//! * [`data`]: the report's input records (sweeps, jobs, evaluations, training metrics);
//! * [`results`]: typed views of the evaluation results of `docs/results-schema.md`;
//! * [`derive`]: collapse verdicts, T_forget per state size, T_recall per job and state size;
//! * [`fit`]: the linear and exponential capacity laws with R² and bootstrap intervals, also
//!   from a CSV file; [`censored`]: the same laws fitted to interval-censored thresholds;
//! * [`figures`]: the paper's figures as SVG + PNG (plotters, embedded DejaVu Sans, Okabe–Ito
//!   palette);
//! * [`report`]: `write_report`, which writes every figure the data supports plus `index.html`,
//!   `README.md`, `fits.json` and the fitted points, byte-identically for the same input.
//!
//! Units of the laws follow the paper: S in millions of state parameters, T in thousands of
//! tokens.
pub mod censored;
pub mod control;
pub mod csv;
pub mod curves;
pub mod data;
pub mod derive;
mod error;
pub mod figures;
pub mod fit;
pub mod report;
pub mod results;
pub mod rng;
pub mod verdict;

pub use censored::{fit_censored, Censored};
pub use data::{EvalRecord, JobRecord, MetricRecord, ReportData, SweepRecord};
pub use derive::{ForgetRow, JobRecall, StateRecall};
pub use error::Error;
pub use fit::{fit, fit_csv, Fit, FitModel};
pub use report::{write_report, write_report_with_progress, ReportOptions, ReportSummary, REPORT_STAGES};
