//! The live view of a running sweep: on a terminal, an overall bar with ETA and one line per
//! running job (step, loss, tokens/s, device); elsewhere, a plain line per start, end and
//! every 30 seconds.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Display {
    terminal: bool,
    multi: MultiProgress,
    overall: ProgressBar,
    lines: BTreeMap<String, ProgressBar>,
    last_plain: Instant,
}

/// What the display shows of a running job.
pub struct JobView<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub device: &'a str,
    pub step: Option<i64>,
    pub total: Option<i64>,
    pub loss: Option<f64>,
    pub tokens_per_s: Option<f64>,
}

impl Display {
    pub fn new(total_jobs: u64) -> Display {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let multi = MultiProgress::new();
        if !terminal {
            multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        let overall = multi.add(ProgressBar::new(total_jobs * 1000));
        overall.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {msg} (ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Display { terminal, multi, overall, lines: BTreeMap::new(), last_plain: Instant::now() }
    }

    /// A one-off message (job started/finished), above the bars.
    pub fn event(&self, msg: &str) {
        if self.terminal {
            let _ = self.multi.println(msg);
        } else {
            eprintln!("{msg}");
        }
    }

    /// Redraws: `done` jobs finished of `total`, `running` with their progress.
    pub fn update(&mut self, done: u64, total: u64, running: &[JobView]) {
        let frac: f64 = running
            .iter()
            .map(|j| match (j.step, j.total) {
                (Some(s), Some(t)) if t > 0 => s as f64 / t as f64,
                _ => 0.0,
            })
            .sum();
        self.overall.set_length(total.max(1) * 1000);
        self.overall.set_position(done * 1000 + (frac * 1000.0) as u64);
        self.overall.set_message(format!("{done}/{total} jobs done, {} running", running.len()));
        let line = |j: &JobView| {
            format!(
                "{:<8} {:<36} step {:>7} loss {:>8} {:>10}",
                j.device,
                j.label,
                match (j.step, j.total) {
                    (Some(s), Some(t)) => format!("{s}/{t}"),
                    _ => "-".into(),
                },
                j.loss.map_or("-".into(), |l| format!("{l:.4}")),
                j.tokens_per_s.map_or("-".into(), |t| format!("{:.0} tok/s", t)),
            )
        };
        if self.terminal {
            self.lines.retain(|id, pb| {
                let keep = running.iter().any(|j| j.id == id);
                if !keep {
                    pb.finish_and_clear();
                }
                keep
            });
            for j in running {
                let pb = self.lines.entry(j.id.to_string()).or_insert_with(|| {
                    let pb = self.multi.add(ProgressBar::new_spinner());
                    pb.enable_steady_tick(Duration::from_millis(250));
                    pb
                });
                pb.set_message(line(j));
            }
        } else if self.last_plain.elapsed() >= Duration::from_secs(30) {
            self.last_plain = Instant::now();
            eprintln!("{done}/{total} jobs done, {} running", running.len());
            for j in running {
                eprintln!("  {}", line(j));
            }
        }
    }

    pub fn finish(&mut self) {
        for pb in self.lines.values() {
            pb.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}
