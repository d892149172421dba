//! `stuffed fit`: the paper's capacity-law fits on any CSV table (linear `T = a*S + b` or
//! exponential `T = b*(a^S - 1) + c`), with R^2 and bootstrap 95% intervals.
use std::path::PathBuf;

use stuffed_reports::{fit_csv, FitModel};

use super::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// linear (T = a*S + b) or exp (T = b*(a^S - 1) + c).
    #[arg(long)]
    model: String,
    /// CSV file with a header row.
    #[arg(long)]
    csv: PathBuf,
    /// Column of the x values (e.g. state size in millions).
    #[arg(long)]
    x: String,
    /// Column of the y values (e.g. length in K tokens).
    #[arg(long)]
    y: String,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let model: FitModel = self.model.parse().map_err(|e| anyhow::anyhow!("--model: {e}"))?;
        let fit = fit_csv(&self.csv, model, &self.x, &self.y)?;
        // Values near the edge of f64 (1e308) overflow inside the fit: a NaN law is no answer.
        if let Some((k, v)) = fit.params.iter().find(|(_, v)| !v.is_finite()) {
            anyhow::bail!("{}: the fit did not converge to finite numbers ({k} = {v}); are the values within a sane range?", self.csv.display());
        }
        match self.format {
            Format::Json => println!("{}", serde_json::to_string(&fit.to_json())?),
            Format::Text => {
                println!("{}", fit.equation());
                for (k, (lo, hi)) in &fit.ci {
                    println!("  {k}: 95% interval [{lo:.6}, {hi:.6}]");
                }
                println!("  n = {}", fit.n);
            }
        }
        Ok(0)
    }
}
