//! `stuffed sweep ...`: run a sweep file (expanding its grid, skipping completed jobs by hash,
//! resuming the rest), watch its status, cancel it. A sweep with a `search:` block runs in
//! rounds of probes (`search`).
mod search;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use stuffed_model::cuda;
use stuffed_model::protocol::JobStatus;

use super::common::{print_json, print_rows, rows_json, runtime, DbArgs, TableFormat};
use super::Format;
use crate::sched::local::{Controller, GpuSlot, Options};
use crate::sched::slurm::{self, SlurmOptions};
use crate::sched::{estimate_memory_gb, estimate_secs, PlannedJob};
use crate::store::Db;
use crate::sweep::{expand, Backend, LoadedSweep, Override, SweepSpec};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Expand a sweep file into jobs and run the ones not completed yet (re-running the same
    /// file resumes: completed jobs are skipped by config hash, failed ones run again).
    Run(RunArgs),
    /// Jobs by status, and the running ones with their progress.
    Status(StatusArgs),
    /// Stop a sweep: pending jobs are cancelled, running workers checkpoint and stop (Slurm
    /// tasks are scancelled).
    Cancel(CancelArgs),
    /// Slurm sweeps: ingest the workers' events, settle ended tasks, resubmit what is worth it
    /// and submit pending jobs (one round; cron-friendly).
    Sync(SyncArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<i32> {
        match self {
            Command::Run(a) => a.run(),
            Command::Status(a) => runtime()?.block_on(a.run()),
            Command::Cancel(a) => runtime()?.block_on(a.run()),
            Command::Sync(a) => runtime()?.block_on(a.run()),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The sweep YAML.
    file: PathBuf,
    #[command(flatten)]
    db: DbArgs,
    /// Set a job-config key for this run, Hydra style (repeatable): `--set train.lr=1e-3`,
    /// `--set 'model.d_state=[64,128]'`. VALUE is YAML; a list is a grid key (use [[a, b]] for
    /// one list value), anything else one value for every job. It replaces the file's grid or
    /// derived entry of that key, is checked like the file, and is recorded in the sweep's
    /// stored spec (its `set:` block).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    set: Vec<Override>,
    /// Print the job table (ids, varied keys, estimated memory and time) and validate every
    /// job, without running anything.
    #[arg(long)]
    dry_run: bool,
    /// Concurrent workers at most (default: 8 per GPU, or the CPU cores).
    #[arg(long)]
    max_parallel: Option<usize>,
    /// Jobs sharing one GPU at most.
    #[arg(long, default_value_t = 8)]
    per_gpu: usize,
    /// GPUs to use: all, none (CPU workers) or a list like 0,1.
    #[arg(long, default_value = "all")]
    gpus: String,
    /// Refuse sweeps that expand to more jobs than this.
    #[arg(long, default_value_t = 10_000)]
    max_jobs: usize,
    /// Where run directories go (one per job id; on the shared file system for Slurm).
    #[arg(long, default_value = "results/runs")]
    runs_dir: PathBuf,
    /// Override the sweep file's backend.
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    /// Slurm: submit and exit; `stuffed sweep sync NAME` picks the results up later.
    #[arg(long)]
    detach: bool,
    /// Slurm: seconds between polls of the cluster.
    #[arg(long, default_value_t = 10)]
    poll: u64,
    /// text, or json: the plan (--dry-run) or the outcome as one JSON object (docs/cli-json.md).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Where a sweep's jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Workers on this machine.
    Local,
    /// Slurm tasks (`sbatch`).
    Slurm,
}

fn parse_override(s: &str) -> Result<Override, String> {
    s.parse()
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    db: DbArgs,
    name: String,
    /// The runs directory the sweep was run with (`sweep run --runs-dir`): job directories
    /// are created and read only inside it, whatever the database records.
    #[arg(long, default_value = "results/runs")]
    runs_dir: PathBuf,
    /// text, or json: the round's counts and the job table as one object.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    db: DbArgs,
    /// A sweep (default: every sweep).
    name: Option<String>,
    /// text, or json: every sweep with its counts, running jobs and search steps.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    #[command(flatten)]
    db: DbArgs,
    name: String,
    /// text, or json: what was cancelled and signalled.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// The GPUs a `--gpus` value selects, with the memory the scheduler may fill.
/// `STUFFED_TEST_GPUS=N` is a test aid: N GPU slots of 80 GB that need no device (the jobs of
/// such a test run on the CPU; tests/faults.rs checks the multi-GPU scheduling with it).
fn select_gpus(spec: &str) -> anyhow::Result<Vec<GpuSlot>> {
    if let Some(n) = std::env::var("STUFFED_TEST_GPUS").ok().filter(|_| spec == "all") {
        let n: usize = n.trim().parse().ok().filter(|n| (1..=64).contains(n)).context("STUFFED_TEST_GPUS: expected a count of 1 to 64")?;
        return Ok((0..n).map(|i| GpuSlot { index: i, name: format!("test GPU {i}"), capacity_gb: 80.0 }).collect());
    }
    let n = cuda::device_count();
    let wanted: Vec<usize> = match spec {
        "none" | "cpu" => return Ok(vec![]),
        "all" => (0..n).collect(),
        list => list
            .split(',')
            .map(|s| {
                s.trim().parse::<usize>().map_err(|_| anyhow::anyhow!("--gpus: '{s}' is not a GPU index (expected all, none or e.g. 0,1)"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    wanted
        .into_iter()
        .map(|i| {
            if i >= n {
                bail!("--gpus: GPU {i} requested but {n} are usable here");
            }
            let info = cuda::gpu_info(i)?;
            Ok(GpuSlot { index: i, name: info.name, capacity_gb: info.total_memory_bytes as f64 / 1e9 * 0.92 })
        })
        .collect()
}

/// A planned job with its varied keys and values.
type Planned = (PlannedJob, Vec<(String, Value)>);

/// This machine's memory, GB (MemTotal of /proc/meminfo).
fn host_memory_gb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024.0 / 1e9)
}

/// Where the jobs of a plan run, for the memory check before launch: the largest GPU, this
/// machine's memory for CPU workers, nothing known for Slurm (the cluster decides).
fn device_memory_gb(gpus: &[GpuSlot], slurm: bool) -> Option<(f64, String)> {
    if slurm {
        return None;
    }
    match gpus.iter().map(|g| g.capacity_gb).fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c)))) {
        Some(c) => Some((c, "the largest GPU selected".into())),
        None => host_memory_gb().map(|m| (m, "this machine's memory".into())),
    }
}

/// Jobs whose estimated memory exceeds the device they would run on: a configuration error
/// before anything starts (`--dry-run` shows them as warnings, for planning elsewhere).
fn memory_problems(planned: &[Planned], device: Option<(f64, String)>) -> Vec<String> {
    let Some((cap, what)) = device else { return vec![] };
    planned
        .iter()
        .filter(|(j, _)| j.est_mem_gb.is_nan() || j.est_mem_gb > cap)
        .map(|(j, _)| {
            format!(
                "job {} needs an estimated {:.1} GB, more than {what} ({cap:.1} GB): reduce the model, batch or length (or set resources.memory if the estimate is wrong)",
                j.label, j.est_mem_gb
            )
        })
        .collect()
}

/// Expands and sizes the jobs of a sweep.
fn plan(loaded: &LoadedSweep, max_jobs: usize, runs_dir: &Path, on_gpu: bool, parallel: usize) -> anyhow::Result<Vec<Planned>> {
    let jobs = expand(loaded, max_jobs)?;
    let mem_override = loaded.spec.resources.memory_gb();
    jobs.into_iter()
        .map(|j| {
            let model = j.config.model_config().with_context(|| format!("job {}", j.label))?;
            let est_mem_gb = mem_override.unwrap_or_else(|| estimate_memory_gb(&j.config, &model));
            let est_secs = estimate_secs(&j.config, &model, on_gpu, parallel);
            let run_dir = runs_dir.join(&j.id);
            Ok((PlannedJob { id: j.id, label: j.label, config: j.config, model, run_dir, est_mem_gb, est_secs }, j.varied))
        })
        .collect()
}

fn human_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

impl RunArgs {
    fn run(self) -> anyhow::Result<i32> {
        let loaded = SweepSpec::load_with(&self.file, &self.set)?;
        let backend = match self.backend {
            None => loaded.spec.backend.clone(),
            Some(BackendKind::Local) => Backend::Local,
            Some(BackendKind::Slurm) => match &loaded.spec.backend {
                Backend::Slurm(c) => Backend::Slurm(c.clone()),
                Backend::Local => Backend::Slurm(Default::default()),
            },
        };
        if let Backend::Slurm(cfg) = backend {
            if loaded.search.is_some() {
                bail!("{}: a `search:` sweep runs on the local backend only (the Slurm backend does not advance search rounds yet); use --backend local", self.file.display());
            }
            return self.run_slurm(loaded, cfg);
        }
        if self.detach {
            bail!("--detach needs the slurm backend (a local sweep runs in this process)");
        }
        let gpus = select_gpus(&self.gpus)?;
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let max_parallel = self.max_parallel.unwrap_or(if gpus.is_empty() { cores.min(4) } else { self.per_gpu * gpus.len() }).max(1);
        let planned = plan(&loaded, self.max_jobs, &self.runs_dir, !gpus.is_empty(), max_parallel)?;
        let too_big = memory_problems(&planned, device_memory_gb(&gpus, false));
        if self.dry_run {
            if self.format == Format::Json {
                let mut plan = plan_json(&loaded, &planned, gpus.len(), max_parallel);
                plan["search"] = search::plan_json(&loaded, &planned);
                plan["warnings"] = json!(too_big);
                print_json(&plan)?;
                return Ok(0);
            }
            print_plan(&loaded, &planned, &gpus, max_parallel)?;
            search::print_plan(&loaded, &planned);
            for p in &too_big {
                println!("warning: {p}");
            }
            return Ok(0);
        }
        if let Some(p) = too_big.first() {
            bail!("{p}{}", if too_big.len() > 1 { format!(" (and {} more job(s))", too_big.len() - 1) } else { String::new() });
        }
        // One controller per sweep and database: a second one would adopt the first's workers.
        let _lock = crate::sched::ctllock::acquire(&self.db.db, &loaded.spec.name)?;
        let opts = Options {
            max_parallel,
            per_gpu: self.per_gpu.max(1),
            cpu_threads: (cores / max_parallel).max(1),
            gpus,
            retries: loaded.spec.retries,
            timeout: loaded.spec.resources.timeout_secs().map(Duration::from_secs),
            poll: Duration::from_millis(500),
        };
        let stop = super::train::stop_flag()?;
        let name = loaded.spec.name.clone();
        runtime()?.block_on(async {
            let db = self.db.open().await?;
            let summary = if loaded.search.is_some() {
                eprintln!("sweep {name}: adaptive search in rounds; database {}", self.db.db.display());
                search::run(&db, &loaded, &self.file, &planned, &opts, &stop).await?
            } else {
                self.run_grid(&db, &loaded, planned, &opts, &stop).await?
            };
            eprintln!(
                "sweep {name}: {} completed, {} skipped (already done), {} failed, {} interrupted, {} retries{}",
                summary.completed,
                summary.skipped,
                summary.failed,
                summary.interrupted,
                summary.retried,
                match summary.gpus_retired.as_slice() {
                    [] => String::new(),
                    gs => format!(
                        "; GPUs retired after repeated failures: {}",
                        gs.iter().map(|g| format!("cuda:{g}")).collect::<Vec<_>>().join(", ")
                    ),
                }
            );
            if self.format == Format::Json {
                print_json(&json!({"sweep": name, "summary": summary, "jobs": sweep_jobs_json(&db, &name).await?,
                    "search": search::status_json(&db, &name).await?}))?;
            } else {
                print_sweep_table(&db, &name).await?;
                search::print_status(&db, &name).await?;
            }
            Ok(if summary.interrupted > 0 {
                crate::exit::INTERRUPTED
            } else if summary.failed > 0 {
                crate::exit::ERROR
            } else {
                crate::exit::OK
            })
        })
    }

    /// Runs every job of a grid sweep once on the local controller.
    async fn run_grid(
        &self,
        db: &Db,
        loaded: &LoadedSweep,
        planned: Vec<Planned>,
        opts: &Options,
        stop: &std::sync::atomic::AtomicBool,
    ) -> anyhow::Result<crate::sched::local::Summary> {
        let name = loaded.name();
        register(db, loaded, &self.file, "local", &planned).await?;
        let jobs: Vec<PlannedJob> = planned.into_iter().map(|(j, _)| j).collect();
        let device =
            if opts.gpus.is_empty() { format!("{} CPU worker(s)", opts.max_parallel) } else { format!("{} GPU(s)", opts.gpus.len()) };
        eprintln!("sweep {name}: {} jobs on {device}; database {}", jobs.len(), self.db.db.display());
        Controller::new(db, name, &jobs, opts).run(stop).await
    }
}

/// Registers a sweep and its jobs in the database.
async fn register(
    db: &Db,
    loaded: &LoadedSweep,
    file: &Path,
    backend: &str,
    planned: &[(PlannedJob, Vec<(String, Value)>)],
) -> anyhow::Result<()> {
    let name = &loaded.spec.name;
    db.upsert_sweep(name, &loaded.spec.description, &loaded.text, Some(&file.display().to_string()), backend).await?;
    for (pos, p) in planned.iter().enumerate() {
        add_planned(db, name, p, pos).await?;
    }
    Ok(())
}

/// Stores one planned job of sweep `name` at `position` in its expansion.
async fn add_planned(db: &Db, name: &str, (j, varied): &Planned, position: usize) -> anyhow::Result<()> {
    let varied_obj = Value::Object(varied.iter().cloned().collect());
    db.add_job(&crate::store::NewJob {
        id: &j.id,
        sweep: name,
        label: &j.label,
        varied: &varied_obj,
        position: position as i64,
        config: &serde_json::to_value(&j.config)?,
        state_size: j.model.state_size(),
        n_params: j.model.num_params(),
        train_len: j.config.train.seq_len,
        run_dir: &j.run_dir.display().to_string(),
    })
    .await
}

/// Slurm options of a sweep: the backend settings, shared directories, this binary.
fn slurm_options(cfg: crate::sweep::SlurmBackend, loaded: &LoadedSweep, runs_dir: &Path, poll: u64) -> anyhow::Result<SlurmOptions> {
    Ok(SlurmOptions {
        cfg,
        runs_dir: runs_dir.to_path_buf(),
        slurm_dir: runs_dir.join("slurm"),
        retries: loaded.spec.retries,
        timeout_secs: loaded.spec.resources.timeout_secs(),
        gpus: loaded.spec.resources.gpus,
        poll: Duration::from_secs(poll.max(1)),
        exe: std::env::current_exe().context("locating the stuffed binary")?,
    })
}

impl RunArgs {
    fn run_slurm(&self, loaded: LoadedSweep, cfg: crate::sweep::SlurmBackend) -> anyhow::Result<i32> {
        std::fs::create_dir_all(&self.runs_dir).with_context(|| format!("creating {}", self.runs_dir.display()))?;
        let runs_dir = std::fs::canonicalize(&self.runs_dir)?;
        let planned = plan(&loaded, self.max_jobs, &runs_dir, true, 1)?;
        if self.dry_run {
            match self.format {
                Format::Json => print_json(&json!(plan_json(&loaded, &planned, 0, 1)))?,
                Format::Text => print_plan(&loaded, &planned, &[], 1)?,
            }
            return Ok(0);
        }
        let _lock = crate::sched::ctllock::acquire(&self.db.db, &loaded.spec.name)?;
        let opts = slurm_options(cfg, &loaded, &runs_dir, self.poll)?;
        let stop = super::train::stop_flag()?;
        let name = loaded.spec.name.clone();
        runtime()?.block_on(async {
            let db = self.db.open().await?;
            register(&db, &loaded, &self.file, "slurm", &planned).await?;
            for (j, _) in &planned {
                let row = db.job(&j.id).await?;
                if row.status != JobStatus::Completed && db.open_attempt(&j.id).await?.is_none() {
                    db.set_status(&j.id, JobStatus::Pending, None, None).await?;
                }
            }
            slurm::run(&db, &name, &opts, self.detach, &stop).await?;
            if self.format == Format::Json {
                print_json(&json!({"sweep": name, "detached": self.detach, "jobs": sweep_jobs_json(&db, &name).await?}))?;
            } else if !self.detach {
                print_sweep_table(&db, &name).await?;
            }
            let jobs = db.sweep_jobs(&name).await?;
            Ok(if self.detach || jobs.iter().all(|j| j.status == JobStatus::Completed) { 0 } else { crate::exit::ERROR })
        })
    }
}

impl SyncArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let db = self.db.open_existing().await?;
        let Some(row) = db.sweep(&self.name).await? else { bail!("no sweep named '{}' in {}", self.name, self.db.db.display()) };
        let source = PathBuf::from(row.source_path.clone().unwrap_or_default());
        // The stored spec (perhaps imported) passes the same checks as a sweep file.
        let loaded = SweepSpec::parse(&row.spec, &source)?;
        if loaded.search.is_some() {
            bail!("sweep {}: a `search:` sweep runs on the local backend only; `sweep run` resumes it", self.name);
        }
        if loaded.spec.name != self.name {
            bail!("the stored spec of sweep '{}' names '{}': refusing to run it", self.name, crate::safety::short(&loaded.spec.name));
        }
        let cfg = match loaded.spec.backend.clone() {
            Backend::Slurm(c) => c,
            Backend::Local if row.backend == "slurm" => Default::default(),
            Backend::Local => bail!("sweep {} runs on the local backend: `sweep run` resumes it", self.name),
        };
        let _lock = crate::sched::ctllock::acquire(&self.db.db, &self.name)?;
        let runs_dir = std::fs::canonicalize(&self.runs_dir).with_context(|| format!("--runs-dir {}", self.runs_dir.display()))?;
        let opts = slurm_options(cfg, &loaded, &runs_dir, 10)?;
        let s = slurm::sync_once(&db, &self.name, &opts).await?;
        if self.format == Format::Json {
            print_json(&json!({"sweep": self.name, "summary": s, "jobs": sweep_jobs_json(&db, &self.name).await?}))?;
            return Ok(0);
        }
        println!(
            "sweep {}: {} completed, {} failed, {} resubmitted, {} running, {} newly submitted, {} pending",
            self.name, s.completed, s.failed, s.resubmitted, s.running, s.submitted, s.pending
        );
        print_sweep_table(&db, &self.name).await?;
        Ok(0)
    }
}

pub async fn print_sweep_table(db: &Db, name: &str) -> anyhow::Result<()> {
    let jobs = db.sweep_jobs(name).await?;
    let (h, rows) = super::results::list_rows(db, &jobs, TableFormat::Table).await?;
    print_rows(TableFormat::Table, &h, &rows)
}

/// The jobs of sweep `name` as `results list --format json` shows them.
async fn sweep_jobs_json(db: &Db, name: &str) -> anyhow::Result<Value> {
    let jobs = db.sweep_jobs(name).await?;
    let (h, rows) = super::results::list_rows(db, &jobs, TableFormat::Json).await?;
    Ok(rows_json(&h, &rows))
}

/// Bucket widths of a job's loss evaluations (the collapse verdict needs them <= train_len / 4).
fn loss_buckets(j: &PlannedJob) -> Vec<i64> {
    j.config
        .evals
        .iter()
        .filter_map(|e| match e {
            stuffed_model::train::config::EvalSpec::Loss(l) => Some(l.bucket),
            _ => None,
        })
        .collect()
}

/// The dry run as JSON: the sweep, its jobs (full ids, varied keys, sizes, estimates) and totals.
fn plan_json(loaded: &LoadedSweep, planned: &[Planned], gpus: usize, parallel: usize) -> Value {
    let jobs: Vec<Value> = planned
        .iter()
        .map(|(j, varied)| {
            json!({"id": j.id, "label": j.label, "varied": Value::Object(varied.iter().cloned().collect()),
                "state_size": j.model.state_size(), "loss_buckets": loss_buckets(j), "params": j.model.num_params(),
                "steps": j.config.train.total_steps(), "est_mem_gb": j.est_mem_gb, "est_secs": j.est_secs})
        })
        .collect();
    let total: f64 = planned.iter().map(|(j, _)| j.est_secs).sum();
    json!({"sweep": loaded.spec.name, "set": loaded.spec.set, "jobs": jobs, "gpus": gpus, "workers": parallel,
        "est_total_secs": total, "est_wall_secs": total / parallel.max(1) as f64, "warnings": [], "search": null})
}

fn print_plan(
    loaded: &LoadedSweep,
    planned: &[(PlannedJob, Vec<(String, Value)>)],
    gpus: &[GpuSlot],
    parallel: usize,
) -> anyhow::Result<()> {
    let keys: Vec<String> = planned.first().map(|(_, v)| v.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
    let mut header = vec!["id".to_string()];
    header.extend(keys.iter().cloned());
    header.extend(["state_size", "loss_buckets", "params", "steps", "est_mem_gb", "est_time"].map(String::from));
    let rows: Vec<Vec<Value>> = planned
        .iter()
        .map(|(j, varied)| {
            let mut r = vec![json!(&j.id[..12.min(j.id.len())])];
            for k in &keys {
                r.push(varied.iter().find(|(vk, _)| vk == k).map(|(_, v)| v.clone()).unwrap_or(Value::Null));
            }
            let buckets: Vec<String> = loss_buckets(j).iter().map(i64::to_string).collect();
            r.extend([
                json!(j.model.state_size()),
                json!(buckets.join("/")),
                json!(j.model.num_params()),
                json!(j.config.train.total_steps()),
                json!((j.est_mem_gb * 100.0).round() / 100.0),
                json!(human_secs(j.est_secs)),
            ]);
            r
        })
        .collect();
    print_rows(TableFormat::Table, &header, &rows)?;
    let total: f64 = planned.iter().map(|(j, _)| j.est_secs).sum();
    let on = if gpus.is_empty() { format!("{parallel} CPU worker(s)") } else { format!("{} GPU(s), {parallel} workers", gpus.len()) };
    println!(
        "\nsweep {}: {} jobs, all valid; estimated {} of work ({} wall on {on}); nothing was run (--dry-run)",
        loaded.spec.name,
        planned.len(),
        human_secs(total),
        human_secs(total / parallel.max(1) as f64)
    );
    Ok(())
}

impl StatusArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let db = self.db.open_read_only().await?;
        let sweeps = db.sweeps().await?;
        let chosen: Vec<_> = sweeps.iter().filter(|s| self.name.as_deref().is_none_or(|n| n == s.name)).collect();
        if let Some(n) = &self.name {
            if chosen.is_empty() {
                bail!("no sweep named '{n}' in {}", self.db.db.display());
            }
        }
        if self.format == Format::Json {
            let mut out = Vec::new();
            for s in chosen {
                let running: Vec<Value> = running(&db, &s.name)
                    .await?
                    .into_iter()
                    .map(|(j, on)| {
                        json!({"id": j.id, "label": j.label, "step": j.step, "total_steps": j.total_steps,
                            "loss": j.last_loss, "tokens_per_s": j.tokens_per_s, "on": on})
                    })
                    .collect();
                let early: Vec<Value> = stopped_early(&db, &s.name)
                    .await?
                    .into_iter()
                    .map(|(j, step)| json!({"id": j.id, "label": j.label, "step": step, "total_steps": j.total_steps}))
                    .collect();
                out.push(json!({"name": s.name, "description": s.description, "created_at": s.created_at,
                    "cancelled": s.cancelled, "total": s.total, "counts": s.counts, "running": running,
                    "stopped_early": early, "search": search::status_json(&db, &s.name).await?}));
            }
            print_json(&json!({"sweeps": out}))?;
            return Ok(0);
        }
        if chosen.is_empty() {
            println!("no sweeps in {}", self.db.db.display());
        }
        for s in chosen {
            let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let early = stopped_early(&db, &s.name).await?;
            let early_note = if early.is_empty() { String::new() } else { format!("; {} of them stopped early", early.len()) };
            println!("{}{}: {} jobs ({}{early_note})", s.name, if s.cancelled { " [cancelled]" } else { "" }, s.total, counts.join(", "));
            for (j, step) in &early {
                println!(
                    "  stopped early {} [{}] at step {step}/{} (its early_stop criterion answered)",
                    j.label,
                    &j.id[..8.min(j.id.len())],
                    j.total_steps.map_or("-".into(), |s| s.to_string())
                );
            }
            for (j, on) in running(&db, &s.name).await? {
                println!(
                    "  running {} [{}] step {}/{} loss {} {} on {on}",
                    j.label,
                    &j.id[..8.min(j.id.len())],
                    j.step.map_or("-".into(), |s| s.to_string()),
                    j.total_steps.map_or("-".into(), |s| s.to_string()),
                    j.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
                    j.tokens_per_s.map_or(String::new(), |t| format!("{t:.0} tok/s")),
                );
            }
            search::print_status(&db, &s.name).await?;
        }
        Ok(0)
    }
}

/// The jobs of sweep `name` that ended early (their `early_stop` criterion answered), with the
/// step they stopped at.
async fn stopped_early(db: &Db, name: &str) -> anyhow::Result<Vec<(crate::store::JobRow, i64)>> {
    Ok(db.sweep_jobs(name).await?.into_iter().filter_map(|j| j.stopped_early.map(|s| (j, s))).collect())
}

/// The running jobs of sweep `name`, each with where it runs (`gpu 0`, `cpu`, `Slurm task 12`).
async fn running(db: &Db, name: &str) -> anyhow::Result<Vec<(crate::store::JobRow, String)>> {
    let mut out = Vec::new();
    for j in db.sweep_jobs(name).await?.into_iter().filter(|j| j.status == JobStatus::Running) {
        let on = match db.open_attempt(&j.id).await? {
            Some(a) => match (a.backend_id, a.gpu) {
                (Some(id), _) => format!("Slurm task {id}"),
                (None, Some(g)) => format!("gpu {g}"),
                (None, None) => "cpu".into(),
            },
            None => "-".into(),
        };
        out.push((j, on));
    }
    Ok(out)
}

impl CancelArgs {
    async fn run(self) -> anyhow::Result<i32> {
        let db = self.db.open_existing().await?;
        if db.sweep(&self.name).await?.is_none() {
            bail!("no sweep named '{}' in {}", self.name, self.db.db.display());
        }
        let slurm_cancelled =
            if db.sweep(&self.name).await?.is_some_and(|s| s.backend == "slurm") { slurm::cancel(&db, &self.name).await? } else { 0 };
        let n = db.cancel_sweep(&self.name).await?;
        if slurm_cancelled > 0 && self.format == Format::Text {
            println!("sweep {}: scancelled {slurm_cancelled} Slurm task(s)", self.name);
        }
        // Workers of a controller that is gone: signal them directly (their controller, if
        // alive, does the same on its next poll).
        let mut signalled = 0;
        for j in db.sweep_jobs(&self.name).await?.iter().filter(|j| j.status == JobStatus::Running) {
            if let Some(a) = db.open_attempt(&j.id).await? {
                // The stored pid is a hint: only a process of this host holding the job's
                // run-directory lock is signalled.
                if crate::sched::owner::signal_worker(Path::new(&j.run_dir), a.pid, a.host.as_deref(), libc::SIGTERM) {
                    signalled += 1;
                }
            }
        }
        if self.format == Format::Json {
            print_json(&json!({"sweep": self.name, "cancelled_pending": n, "scancelled": slurm_cancelled, "signalled": signalled}))?;
        } else {
            println!("sweep {}: cancelled {n} pending job(s), asked {signalled} running worker(s) to stop", self.name);
        }
        Ok(0)
    }
}
