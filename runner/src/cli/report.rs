//! `stuffed report`: every figure the stored results support (SVG and PNG), the fitted capacity
//! laws, `index.html` and `README.md`, regenerated from the database alone (byte-identical for
//! the same database), with a progress bar over its stages on a terminal.
use std::path::PathBuf;

use anyhow::Context;
use stuffed_reports::{write_report_with_progress, ReportOptions, REPORT_STAGES};

use super::common::{runtime, DbArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    db: DbArgs,
    /// Sweeps to include (repeatable; default: all).
    #[arg(long)]
    sweep: Vec<String>,
    /// Output directory.
    #[arg(long, default_value = "results/report")]
    out: PathBuf,
    /// Log-scale y axes on the capacity-law figures.
    #[arg(long)]
    log_scale: bool,
    /// Title of the report.
    #[arg(long)]
    title: Option<String>,
}

impl Args {
    pub fn run(self) -> anyhow::Result<i32> {
        let data = runtime()?.block_on(async {
            let db = self.db.open_read_only().await?;
            db.report_data(&self.sweep).await
        })?;
        std::fs::create_dir_all(&self.out).with_context(|| format!("creating {}", self.out.display()))?;
        let opts = ReportOptions { log_scale: self.log_scale, title: self.title.clone() };
        let bar = super::progress::bar(REPORT_STAGES as u64, "stages");
        let mut begun = 0;
        let mut progress = |stage: &str| {
            bar.set_position(begun);
            bar.set_message(stage.to_string());
            begun += 1;
        };
        let s = write_report_with_progress(&data, &self.out, &opts, &mut progress)
            .with_context(|| format!("writing the report into {}", self.out.display()))?;
        bar.finish_and_clear();
        println!("report: {} files in {}", s.files.len(), self.out.display());
        for (what, why) in &s.skipped {
            println!("  skipped {what}: {why}");
        }
        if let Some(f) = &s.forget_fit {
            println!("  T_forget fit: {}", f.equation());
        }
        if let Some(f) = &s.recall_fit {
            println!("  T_recall fit: {}", f.equation());
        }
        println!("open {}", self.out.join("index.html").display());
        Ok(0)
    }
}
