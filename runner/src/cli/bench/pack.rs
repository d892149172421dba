//! `stuffed bench pack`: what several training jobs packed on one GPU deliver together. Each
//! job is a separate `stuffed bench train` process (as the scheduler packs real jobs); after
//! their warm-ups they all start timing at the same instant (`--start-at`), and the aggregate
//! is the tokens of all timed steps over the span from the first start to the last end. With
//! `--mps`, the same curve is measured again under CUDA MPS (a daemon started for the
//! measurement with its pipes in a temporary directory, and stopped after it). Jobs run the
//! fused SSD, as training does on a GPU.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use super::suite::CASES;

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// The training case every job runs (one of `bench suite`'s train-* cases).
    #[arg(long, default_value = "train-study-128")]
    case: String,
    /// Numbers of packed jobs to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    jobs: Vec<u32>,
    /// Override the case's batch.
    #[arg(long)]
    batch: Option<i64>,
    /// Override the case's training length.
    #[arg(long)]
    len: Option<i64>,
    /// Timed steps per job.
    #[arg(long, default_value_t = 30)]
    steps: i64,
    /// Untimed warm-up steps per job.
    #[arg(long, default_value_t = 3)]
    warmup: i64,
    /// The GPU: cuda or cuda:N.
    #[arg(long, default_value = "cuda")]
    device: String,
    /// Also measure the curve under CUDA MPS (needs nvidia-cuda-mps-control on PATH).
    #[arg(long)]
    mps: bool,
    /// Every job runs its steps as CUDA graphs.
    #[arg(long)]
    graph: bool,
    /// Write the record (JSON) here; without it, it goes to stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// One packed measurement.
#[derive(Debug, Serialize)]
struct Point {
    jobs: u32,
    mps: bool,
    /// All jobs' timed tokens over the span from the first window's start to the last's end.
    aggregate_tokens_per_s: f64,
    /// The aggregate over the single job's tokens/s (same mode).
    over_one: Option<f64>,
    /// Each job's own tokens/s over its window.
    per_job_tokens_per_s: Vec<f64>,
    /// Seconds by which the windows' starts differ (0 when all started together).
    start_spread_s: f64,
    peak_memory_gb: Vec<f64>,
}

impl PackArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        let case = CASES
            .iter()
            .find(|c| c.name == self.case && c.chunk.is_none())
            .with_context(|| format!("--case: '{}' is not a training case of `bench suite`", self.case))?;
        anyhow::ensure!(!self.jobs.is_empty() && self.jobs.iter().all(|&n| (1..=64).contains(&n)), "--jobs: expected numbers in 1..=64");
        anyhow::ensure!(self.steps >= 1 && self.warmup >= 0, "--steps: at least 1; --warmup: 0 or more");
        let (batch, len) = (self.batch.unwrap_or(case.batch), self.len.unwrap_or(case.len));
        anyhow::ensure!(batch >= 1 && len >= 1, "--batch and --len: expected at least 1");
        let exe = std::env::current_exe().context("locating the stuffed binary")?;
        let mut points = Vec::new();
        let mut modes = vec![false];
        if self.mps {
            modes.push(true);
        }
        for mps in modes {
            let daemon = if mps { Some(Mps::start()?) } else { None };
            let env = daemon.as_ref().map(|d| d.env()).unwrap_or_default();
            let mut one: Option<f64> = None;
            let mut setup_s = 30.0;
            for &n in &self.jobs {
                let t0 = Instant::now();
                // Enough for every job to build its model and warm up before the common start.
                let start_at = (n > 1).then(|| SystemTime::now() + Duration::from_secs_f64(setup_s * (1.0 + n as f64 / 8.0) + 3.0));
                let children: Vec<_> =
                    (0..n).map(|_| self.spawn(&exe, case.preset, batch, len, start_at, &env)).collect::<anyhow::Result<_>>()?;
                let mut runs = Vec::new();
                for child in children {
                    runs.push(finish(child)?);
                }
                let start = runs.iter().map(|r| r.window.0).fold(f64::INFINITY, f64::min);
                let end = runs.iter().map(|r| r.window.1).fold(f64::NEG_INFINITY, f64::max);
                let latest_start = runs.iter().map(|r| r.window.0).fold(f64::NEG_INFINITY, f64::max);
                let tokens: f64 = runs.iter().map(|r| (r.batch * r.seq * r.steps) as f64).sum();
                let aggregate = tokens / (end - start).max(1e-9);
                if n == 1 {
                    one = Some(aggregate);
                    let timed: f64 = runs.iter().map(|r| r.window.1 - r.window.0).sum();
                    setup_s = (t0.elapsed().as_secs_f64() - timed).max(5.0);
                }
                let point = Point {
                    jobs: n,
                    mps,
                    aggregate_tokens_per_s: aggregate,
                    over_one: one.map(|o| aggregate / o),
                    per_job_tokens_per_s: runs.iter().map(|r| r.tokens_per_s).collect(),
                    start_spread_s: latest_start - start,
                    peak_memory_gb: runs.iter().map(|r| r.peak_memory_gb).collect(),
                };
                println!(
                    "pack {} x {}{}: {:.0} tokens/s together{}, windows started within {:.2} s",
                    n,
                    case.name,
                    if mps { " (MPS)" } else { "" },
                    aggregate,
                    point.over_one.map(|r| format!(" ({r:.2}x one job)")).unwrap_or_default(),
                    point.start_spread_s
                );
                points.push(point);
            }
            drop(daemon);
        }
        let record = serde_json::json!({
            "stuffed": crate::version::provenance(),
            "date": crate::store::now(),
            "case": case.name,
            "preset": case.preset,
            "batch": batch,
            "seq": len,
            "device": self.device,
            "steps": self.steps,
            "ssd": "fused",
            "graph": self.graph,
            "points": points,
        });
        super::write_record(self.out.as_deref(), &record)?;
        Ok(0)
    }

    fn spawn(
        &self,
        exe: &Path,
        preset: &str,
        batch: i64,
        seq: i64,
        start_at: Option<SystemTime>,
        env: &[(String, PathBuf)],
    ) -> anyhow::Result<std::process::Child> {
        let mut cmd = Command::new(exe);
        cmd.args(["bench", "train", "--preset", preset, "--format", "json"])
            .args(["--batch", &batch.to_string(), "--seq", &seq.to_string()])
            .args(["--steps", &self.steps.to_string(), "--warmup", &self.warmup.to_string()])
            .args(["--compare", "fused", "--device", &self.device])
            .args(["--graph", if self.graph { "on" } else { "off" }]);
        if let Some(at) = start_at {
            let secs = at.duration_since(UNIX_EPOCH).context("clock before 1970")?.as_secs_f64();
            cmd.args(["--start-at", &format!("{secs:.3}")]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("starting a packed `stuffed bench train`")
    }
}

/// The one run of a packed `bench train --format json`.
#[derive(Debug, serde::Deserialize)]
struct ChildRun {
    batch: i64,
    seq: i64,
    steps: i64,
    tokens_per_s: f64,
    peak_memory_gb: f64,
    window: (f64, f64),
}

fn finish(child: std::process::Child) -> anyhow::Result<ChildRun> {
    let out = child.wait_with_output().context("waiting for a packed job")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "a packed job failed ({}): {}", out.status, stderr.trim());
    #[derive(serde::Deserialize)]
    struct Out {
        runs: Vec<ChildRun>,
    }
    let parsed: Out = serde_json::from_slice(&out.stdout).context("reading a packed job's JSON")?;
    parsed.runs.into_iter().next().context("a packed job measured nothing")
}

/// A CUDA MPS daemon with its pipe and log directories in a temporary directory; stopped when
/// dropped.
struct Mps {
    dir: PathBuf,
}

impl Mps {
    fn start() -> anyhow::Result<Mps> {
        let dir = std::env::temp_dir().join(format!("stuffed-mps-{}", std::process::id()));
        eprintln!(
            "starting a CUDA MPS daemon for this measurement (nvidia-cuda-mps-control -d, pipes in {}); it is stopped after it",
            dir.display()
        );
        let mps = Mps { dir };
        for (_, d) in mps.env() {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        let status = Command::new("nvidia-cuda-mps-control")
            .arg("-d")
            .envs(mps.env())
            .status()
            .context("--mps: nvidia-cuda-mps-control is not on PATH")?;
        anyhow::ensure!(status.success(), "--mps: nvidia-cuda-mps-control -d failed ({status})");
        std::thread::sleep(Duration::from_secs(1));
        Ok(mps)
    }

    fn env(&self) -> Vec<(String, PathBuf)> {
        vec![("CUDA_MPS_PIPE_DIRECTORY".into(), self.dir.join("pipe")), ("CUDA_MPS_LOG_DIRECTORY".into(), self.dir.join("log"))]
    }
}

impl Drop for Mps {
    fn drop(&mut self) {
        let quit = Command::new("nvidia-cuda-mps-control").envs(self.env()).stdin(Stdio::piped()).spawn().and_then(|mut c| {
            if let Some(mut stdin) = c.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(b"quit\n");
            }
            c.wait()
        });
        if let Err(e) = quit {
            eprintln!("warning: stopping the MPS daemon: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
