//! The command tree of `stuffed`; one file per subcommand (`cli/doctor.rs` holds
//! `stuffed doctor`). Each subcommand is an `Args` struct with a `run`.
use clap::{Parser, Subcommand, ValueEnum};

pub mod analyze;
pub mod bench;
pub mod common;
pub mod corpus;
pub mod doctor;
pub mod eval;
pub mod fit;
pub mod model;
pub mod passkey;
pub mod progress;
pub mod report;
pub mod results;
pub mod schema;
pub mod serve;
pub mod sweep;
pub mod train;
pub mod worker;

#[derive(Debug, Parser)]
#[command(
    name = "stuffed",
    version = crate::version::long_version(),
    about = "Run the Stuffed Mamba study (state collapse and state capacity of Mamba-2) at any scale",
    propagate_version = true
)]
pub struct Cli {
    /// SSD implementation of the commands that run a model here (eval, model): auto (fused
    /// on a GPU whose kernels load, else tensor), tensor or fused. Jobs take `train.ssd`.
    #[arg(long, global = true, default_value = "auto", env = "STUFFED_SSD")]
    pub ssd: stuffed_model::ssd::SsdBackend,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check libtorch, CUDA and the GPUs: versions, devices, a real tensor op on each.
    Doctor(doctor::Args),
    /// Inspect model presets and checkpoints.
    #[command(subcommand)]
    Model(model::Command),
    /// Build and inspect token corpora.
    #[command(subcommand)]
    Corpus(corpus::Command),
    /// Train one job config (and run the evaluations it lists).
    Train(train::Args),
    /// Evaluate a model: loss by position (state collapse), passkey retrieval, state diagnostics.
    #[command(subcommand)]
    Eval(eval::Command),
    /// The paper's first experiment on one checkpoint (e.g. hf:state-spaces/mamba2-130m): loss
    /// by position and the newline probe with the collapse verdict, passkey and T_recall, state
    /// diagnostics and every training-free mitigation, stored as an analysis job, with a report.
    Analyze(analyze::Args),
    /// Run sweeps of jobs (YAML grids), watch and cancel them.
    #[command(subcommand)]
    Sweep(sweep::Command),
    /// Query, export and import the results database.
    #[command(subcommand)]
    Results(results::Command),
    /// Figures, fitted capacity laws and an HTML/Markdown report from the database.
    Report(report::Args),
    /// JSON Schema of job or sweep files, for editors (docs/schema/ holds the same).
    Schema(schema::Args),
    /// Fit the paper's capacity laws (linear or exponential) to two columns of a CSV file.
    Fit(fit::Args),
    /// A local, read-only web dashboard: sweeps, jobs, live curves, figures.
    Serve(serve::Args),
    /// Passkey prompts as the evaluation uses them.
    #[command(subcommand)]
    Passkey(passkey::Command),
    /// Run one job in its run directory (started by the scheduler).
    #[command(hide = true)]
    Worker(worker::Args),
    /// Speed and memory benchmarks.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// Output format of every command that prints results: `text` for people (`table` is
/// accepted too), `json` for programs, one document on standard output whose shape
/// docs/cli-json.md gives. Tables that also write CSV take `common::TableFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    #[value(alias = "table")]
    Text,
    Json,
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Doctor(a) => a.run(),
        Command::Model(c) => c.run(),
        Command::Corpus(c) => c.run(),
        Command::Train(a) => a.run(),
        Command::Eval(c) => c.run(cli.ssd),
        Command::Analyze(a) => a.run(cli.ssd),
        Command::Passkey(c) => c.run(),
        Command::Sweep(c) => c.run(),
        Command::Results(c) => c.run(),
        Command::Report(a) => a.run(),
        Command::Schema(a) => a.run(),
        Command::Fit(a) => a.run(),
        Command::Serve(a) => a.run(),
        Command::Worker(a) => a.run(),
        Command::Bench(c) => c.run(),
    }
}

/// Default results database: `$STUFFED_DB`, else `results/stuffed.db`.
pub fn default_db_path() -> std::path::PathBuf {
    std::env::var_os("STUFFED_DB").map(Into::into).unwrap_or_else(|| std::path::PathBuf::from("results/stuffed.db"))
}
