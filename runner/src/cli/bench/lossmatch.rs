//! `stuffed bench lossmatch RUN REFERENCE`: whether one training run's loss curve follows a
//! reference run's over the same steps (a backend or kernel change against the tensor path, same
//! config, data and seed). Reads both runs' event logs (a run directory or its events.jsonl),
//! compares the training losses of the steps both logged (`stuffed_reports::curves`), prints the
//! windows, and exits 1 when a window's mean differs by more than `--tolerance`.
use std::path::{Path, PathBuf};

use anyhow::Context;
use stuffed_model::protocol::{Envelope, Event};
use stuffed_reports::curves::{compare_losses, LossMatch};

/// The largest event log read (a million logged steps take about 250 MB).
const MAX_EVENTS_BYTES: u64 = 512 << 20;

#[derive(Debug, clap::Args)]
pub struct LossMatchArgs {
    /// The run to check: its directory (holding events.jsonl) or the event file.
    run: PathBuf,
    /// The reference run, the same way.
    reference: PathBuf,
    /// Shared logged steps per window.
    #[arg(long, default_value_t = 20)]
    window: usize,
    /// The largest relative difference of a window's mean loss that still matches.
    #[arg(long, default_value_t = 0.01)]
    tolerance: f64,
    /// Write the record (JSON) here; without it, it goes to stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl LossMatchArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        anyhow::ensure!(self.window >= 1, "--window: expected at least 1 step");
        anyhow::ensure!(self.tolerance.is_finite() && self.tolerance >= 0.0, "--tolerance: expected a number >= 0");
        let (run, reference) = (train_losses(&self.run)?, train_losses(&self.reference)?);
        let m = compare_losses(&run.points, &reference.points, self.window)?;
        print_windows(&m, &run.ssd, &reference.ssd);
        let matched = m.worst_window_rel_diff <= self.tolerance;
        let record = serde_json::json!({
            "stuffed": crate::version::provenance(),
            "date": crate::store::now(),
            "what": "training losses of a run against a reference run, at the steps both logged",
            "run": {"events": run.file, "ssd": run.ssd},
            "reference": {"events": reference.file, "ssd": reference.ssd},
            "tolerance": self.tolerance,
            "matched": matched,
            "result": m,
        });
        super::write_record(self.out.as_deref(), &record)?;
        if matched {
            eprintln!(
                "the run follows the reference: every window's mean within {:.2}% (worst {:.3}%, n = {} steps)",
                100.0 * self.tolerance,
                100.0 * m.worst_window_rel_diff,
                m.n_steps
            );
            Ok(0)
        } else {
            let w = m.windows.iter().max_by(|a, b| a.rel_diff.total_cmp(&b.rel_diff)).expect("windows");
            eprintln!(
                "error: the run departs from the reference: steps {}-{} differ by {:.3}% in their mean loss (tolerance {:.2}%)",
                w.steps[0],
                w.steps[1],
                100.0 * w.rel_diff,
                100.0 * self.tolerance
            );
            Ok(1)
        }
    }
}

/// One run's training losses as its event log has them.
struct RunLosses {
    /// The event file read.
    file: PathBuf,
    /// The SSD its start (or last resume) event names ("unknown" before that field existed).
    ssd: String,
    /// (step, training loss) in the order logged.
    points: Vec<(i64, f64)>,
}

/// The event file of `path` (a run directory or the file), the run's SSD as its start event
/// names it, and its (step, training loss) points. Every complete line must be an event; a last
/// line without its newline (a run still writing it) is left out.
fn train_losses(path: &Path) -> anyhow::Result<RunLosses> {
    let file = if path.is_dir() { path.join("events.jsonl") } else { path.to_path_buf() };
    let meta = std::fs::metadata(&file).with_context(|| format!("{}: no event log here", file.display()))?;
    anyhow::ensure!(
        meta.len() <= MAX_EVENTS_BYTES,
        "{}: {} bytes, more than the {} an event log may have",
        file.display(),
        meta.len(),
        MAX_EVENTS_BYTES
    );
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(&bytes[..0], |i| &bytes[..=i]);
    let (mut ssd, mut points) = (String::from("unknown"), Vec::new());
    for (i, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let env =
            Envelope::parse(line).map_err(|e| anyhow::anyhow!("{}:{}: not an event of the worker's log: {e}", file.display(), i + 1))?;
        match env.event {
            Event::Start { ssd: Some(s), .. } | Event::Resume { ssd: Some(s), .. } => ssd = s,
            Event::Train { step, loss, .. } => points.push((step, loss)),
            _ => {}
        }
    }
    anyhow::ensure!(!points.is_empty(), "{}: no training losses logged", file.display());
    Ok(RunLosses { file, ssd, points })
}

fn print_windows(m: &LossMatch, run: &str, reference: &str) {
    println!("{:>13}  {:>10}  {:>10}  {:>8}", "steps", run, reference, "diff");
    for w in &m.windows {
        println!("{:>6}-{:<6}  {:>10.4}  {:>10.4}  {:>7.3}%", w.steps[0], w.steps[1], w.run, w.reference, 100.0 * w.rel_diff);
    }
    println!(
        "n = {} shared steps; per step: mean {:.3}%, largest {:.3}% (step {}); final (step {}): {:.4} vs {:.4}",
        m.n_steps,
        100.0 * m.mean_rel_diff,
        100.0 * m.max_rel_diff,
        m.max_rel_diff_step,
        m.final_step,
        m.final_run,
        m.final_reference
    );
}
