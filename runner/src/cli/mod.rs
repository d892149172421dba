//! The command tree of `stuffed`; one file per subcommand (`cli/doctor.rs` holds
//! `stuffed doctor`). Each subcommand is an `Args` struct with a `run`.
use clap::{Parser, Subcommand, ValueEnum};

pub mod analyze;
pub mod bench;
pub mod common;
pub mod completions;
pub mod corpus;
pub mod doctor;
pub mod eval;
pub mod fit;
pub mod man;
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
    #[command(subcommand)]
    pub command: Command,
}

/// `--ssd`, only on the commands that run a model in this process (`eval`, `analyze`); sweeps
/// and `train` take `train.ssd` from the job config.
#[derive(Debug, Clone, clap::Args)]
pub struct SsdArg {
    /// SSD implementation of the model run here: auto (fused on a GPU whose kernels load, else
    /// tensor), tensor or fused.
    #[arg(long, global = true, default_value = "auto", env = "STUFFED_SSD")]
    pub ssd: stuffed_model::ssd::SsdBackend,
}

/// `stuffed eval [--ssd S] loss|passkey|states ...`: `--ssd` is accepted before or after the
/// evaluation's name.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub ssd: SsdArg,
    #[command(subcommand)]
    pub command: eval::Command,
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
    Eval(EvalArgs),
    /// The paper's first experiment on one checkpoint (e.g. hf:state-spaces/mamba2-130m): loss
    /// by position and the newline probe with the collapse verdict, passkey and T_recall, state
    /// diagnostics and every training-free mitigation, stored as an analysis job, with a report.
    Analyze {
        #[command(flatten)]
        ssd: SsdArg,
        #[command(flatten)]
        args: analyze::Args,
    },
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
    /// Shell completions on standard output (bash, zsh, fish, elvish or powershell).
    Completions(completions::Args),
    /// The manual page (roff) on standard output, or one page per command into a directory.
    Man(man::Args),
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
        Command::Eval(e) => e.command.run(e.ssd.ssd),
        Command::Analyze { ssd, args } => args.run(ssd.ssd),
        Command::Passkey(c) => c.run(),
        Command::Sweep(c) => c.run(),
        Command::Results(c) => c.run(),
        Command::Report(a) => a.run(),
        Command::Schema(a) => a.run(),
        Command::Fit(a) => a.run(),
        Command::Serve(a) => a.run(),
        Command::Worker(a) => a.run(),
        Command::Bench(c) => c.run(),
        Command::Completions(a) => a.run(),
        Command::Man(a) => a.run(),
    }
}

/// Default results database: `$STUFFED_DB`, else `results/stuffed.db`.
pub fn default_db_path() -> std::path::PathBuf {
    std::env::var_os("STUFFED_DB").map(Into::into).unwrap_or_else(|| std::path::PathBuf::from("results/stuffed.db"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    fn help(path: &[&str]) -> String {
        let mut cmd = super::Cli::command();
        cmd.build();
        let mut sub = &mut cmd;
        for name in path {
            sub = sub.find_subcommand_mut(name).unwrap_or_else(|| panic!("no subcommand {name}"));
        }
        sub.render_long_help().to_string()
    }

    /// Issue 24 item 8: `--ssd` only where a model runs in this process.
    #[test]
    fn ssd_flag_only_on_the_commands_that_run_a_model_here() {
        for path in [
            &["results"][..],
            &["results", "list"],
            &["report"],
            &["sweep"],
            &["sweep", "run"],
            &["train"],
            &["corpus", "build"],
            &["serve"],
        ] {
            assert!(!help(path).contains("--ssd"), "`stuffed {}` help offers --ssd", path.join(" "));
        }
        for path in [&["eval", "loss"][..], &["eval", "passkey"], &["eval", "states"], &["analyze"]] {
            assert!(help(path).contains("--ssd"), "`stuffed {}` help lacks --ssd", path.join(" "));
        }
        let err = super::Cli::command().try_get_matches_from(["stuffed", "results", "list", "--ssd", "tensor"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
