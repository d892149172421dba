//! `stuffed fit`: the paper's capacity-law fits on any CSV table (linear `T = a*S + b` or
//! exponential `T = b*(a^S - 1) + c`), with R^2 and bootstrap 95% intervals; by least squares on
//! a y column, or by interval-censored maximum likelihood on lo/hi columns (thresholds known
//! only between two grid lengths, or only bounded on one side: an empty field is unbounded).
use std::path::PathBuf;

use anyhow::bail;
use stuffed_reports::csv::read_columns_opt;
use stuffed_reports::fit::{DEFAULT_BOOTSTRAP, DEFAULT_SEED};
use stuffed_reports::{fit_censored, fit_csv, Censored, FitModel};

use super::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// linear (T = a*S + b) or exp (T = b*(a^S - 1) + c).
    #[arg(long, value_parser = model_values())]
    model: String,
    /// CSV file with a header row.
    #[arg(long)]
    csv: PathBuf,
    /// Column of the x values (e.g. state size in millions).
    #[arg(long)]
    x: String,
    /// Column of the y values (e.g. length in K tokens); or give --lo and --hi.
    #[arg(long, conflicts_with_all = ["lo", "hi"])]
    y: Option<String>,
    /// Column of the lower ends of censored values (the value is > lo; empty: unbounded below).
    #[arg(long, requires = "hi")]
    lo: Option<String>,
    /// Column of the upper ends of censored values (the value is <= hi; empty: unbounded above).
    #[arg(long, requires = "lo")]
    hi: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The laws `--model` names (with the spellings `FitModel` also reads).
fn model_values() -> clap::builder::PossibleValuesParser {
    use clap::builder::PossibleValue;
    [PossibleValue::new("linear").alias("lin"), PossibleValue::new("exp").alias("exponential")].into()
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let model: FitModel = self.model.parse().map_err(|e| anyhow::anyhow!("--model: {e}"))?;
        let fit = match (&self.y, &self.lo, &self.hi) {
            (Some(y), _, _) => fit_csv(&self.csv, model, &self.x, y)?,
            (None, Some(lo), Some(hi)) => {
                let cols = read_columns_opt(&self.csv, &[&self.x, lo, hi])?;
                let mut pts = Vec::with_capacity(cols[0].len());
                for (i, x) in cols[0].iter().enumerate() {
                    let Some(x) = *x else { bail!("{}: row {}: the x column is empty", self.csv.display(), i + 1) };
                    pts.push(Censored { x, lo: cols[1][i], hi: cols[2][i] });
                }
                fit_censored(model, &pts, DEFAULT_BOOTSTRAP, DEFAULT_SEED)?
            }
            _ => bail!("give --y COLUMN, or --lo COLUMN and --hi COLUMN"),
        };
        // Values near the edge of f64 (1e308) overflow inside the fit: a NaN law is no answer.
        if let Some((k, v)) = fit.params.iter().find(|(_, v)| !v.is_finite()) {
            anyhow::bail!(
                "{}: the fit did not converge to finite numbers ({k} = {v}); are the values within a sane range?",
                self.csv.display()
            );
        }
        match self.format {
            Format::Json => println!("{}", serde_json::to_string(&fit.to_json())?),
            Format::Text => {
                println!("{}", fit.equation());
                for (k, (lo, hi)) in &fit.ci {
                    println!("  {k}: 95% interval [{lo:.6}, {hi:.6}]");
                }
                println!("  n = {}", fit.n);
                if let Some(c) = fit.censoring {
                    println!(
                        "  points: {} measured ({} exact, {} intervals), {} bounded ({} lower, {} upper); interval-censored maximum likelihood",
                        c.measured(),
                        c.exact,
                        c.interval,
                        c.bounded(),
                        c.lower_bound,
                        c.upper_bound
                    );
                }
            }
        }
        Ok(0)
    }
}
