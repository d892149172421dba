//! The Slurm backend: pending jobs go to the cluster as sbatch job arrays (one array per
//! submission, identical resources, `%K` throttle), each task running `stuffed worker` on its
//! job's run directory on the shared file system. Tracking is one batched `sacct` (when
//! accounting works) or `squeue -r` call per poll for all arrays; the workers' event files are
//! the source of truth for results and completion. PREEMPTED, NODE_FAIL and TIMEOUT are
//! resubmitted by us (resuming from the checkpoint, counted against `retries`); OUT_OF_MEMORY
//! and FAILED are recorded with their class; a task Slurm requeues by itself stays the same
//! attempt, so nothing is counted twice. The database stays on the controller's disk; `--detach`
//! submits and exits, `sweep sync` (cron-friendly) ingests and advances later.
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};

use stuffed_model::protocol::event::DoneStatus;
use stuffed_model::protocol::{AttemptEnd, Done, Envelope, Event, FailureKind, JobStatus};

use super::classify;
use crate::job::{EVENTS_FILE, JOB_FILE};
use crate::store::{read_events, AttemptRow, Db, JobRow, NewAttempt};
use crate::sweep::SlurmBackend;

#[derive(Debug, Clone)]
pub struct SlurmOptions {
    pub cfg: SlurmBackend,
    /// The runs directory (canonical): every job's run directory must be `runs_dir/<id>`.
    pub runs_dir: PathBuf,
    /// Where scripts and Slurm output files go (shared file system).
    pub slurm_dir: PathBuf,
    pub retries: u32,
    /// Per-task time limit when the backend sets no `time`.
    pub timeout_secs: Option<u64>,
    /// The sweep's `resources.gpus`: 0 asks Slurm for no GPU (no `--gres`).
    pub gpus: u32,
    pub poll: Duration,
    /// The `stuffed` binary the tasks run.
    pub exe: PathBuf,
}

/// One array task as Slurm reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskState {
    pub state: String,
    pub exit: Option<i64>,
}

impl TaskState {
    /// Still queued, running or being requeued by Slurm.
    pub fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SUSPENDED"
                | "STAGE_OUT"
                | "SIGNALING"
        )
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SyncSummary {
    pub submitted: usize,
    pub running: usize,
    pub completed: usize,
    pub failed: usize,
    pub resubmitted: usize,
    pub cancelled: usize,
    pub pending: usize,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn slurm_time(secs: u64) -> String {
    let m = secs.div_ceil(60);
    format!("{}:{:02}:00", m / 60, m % 60)
}

/// Whether job config `config` needs a GPU: the sweep asks for GPUs and the job does not
/// train on the CPU (`train.device: cpu`).
pub fn uses_gpu(opts: &SlurmOptions, config: &serde_json::Value) -> bool {
    opts.gpus > 0 && config["train"]["device"].as_str() != Some("cpu")
}

/// The sbatch script of one array over `dirs`; `gpu` says whether its jobs use a GPU (only then
/// is the backend's `gres` requested). Every value is checked again here (whatever its source:
/// a sweep file, a spec stored in the database, an import): no control character reaches a
/// `#SBATCH` line, options come from a known set, paths are quoted.
pub fn array_script(opts: &SlurmOptions, sweep: &str, dirs: &[String], gpu: bool) -> anyhow::Result<String> {
    let c = &opts.cfg;
    crate::safety::check_slurm_backend(c).map_err(|e| anyhow::anyhow!("backend.{e}"))?;
    crate::safety::check_sweep_name(sweep).map_err(anyhow::Error::msg)?;
    let slurm_dir = opts.slurm_dir.display().to_string();
    crate::safety::check_text("the Slurm output directory", &slurm_dir).map_err(anyhow::Error::msg)?;
    if slurm_dir.contains(char::is_whitespace) {
        bail!("the Slurm output directory {slurm_dir:?} contains white space: sbatch would split it (choose a --runs-dir without spaces)");
    }
    for d in dirs {
        if d.contains(|c: char| c.is_control()) {
            bail!("run directory {d:?} contains a control character");
        }
    }
    let mut s = String::from("#!/bin/bash\n");
    let mut sb = |line: String| s.push_str(&format!("#SBATCH {line}\n"));
    sb(format!("--job-name=stuffed:{sweep}"));
    let throttle = c.max_concurrent.map(|k| format!("%{k}")).unwrap_or_default();
    sb(format!("--array=0-{}{throttle}", dirs.len().saturating_sub(1)));
    sb(format!("--output={slurm_dir}/%A_%a.out"));
    for (flag, v) in [("partition", &c.partition), ("account", &c.account), ("qos", &c.qos), ("mem", &c.mem)] {
        if let Some(v) = v {
            sb(format!("--{flag}={v}"));
        }
    }
    match (&c.time, opts.timeout_secs) {
        (Some(t), _) => sb(format!("--time={t}")),
        (None, Some(secs)) => sb(format!("--time={}", slurm_time(secs))),
        _ => {}
    }
    if let Some(n) = c.cpus_per_task {
        sb(format!("--cpus-per-task={n}"));
    }
    if gpu && !c.gres.trim().is_empty() {
        sb(format!("--gres={}", c.gres.trim()));
    }
    for extra in &c.extra_sbatch {
        sb(extra.trim().to_string());
    }
    s.push_str("set -u\n");
    s.push_str(&format!("DIRS=({})\n", dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" ")));
    s.push_str(&format!("exec {} worker --run-dir \"${{DIRS[$SLURM_ARRAY_TASK_ID]}}\"\n", quote(&opts.exe.display().to_string())));
    Ok(s)
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?} (is Slurm installed here?)"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Submits `jobs` as arrays (one for the jobs that use a GPU, one for those that run on the
/// CPU, so a CPU job never waits for or fails on a GPU request) and records an attempt per
/// task. Returns the array job ids.
pub async fn submit(db: &Db, sweep: &str, jobs: &[JobRow], opts: &SlurmOptions) -> anyhow::Result<Vec<String>> {
    let (gpu, cpu): (Vec<JobRow>, Vec<JobRow>) = jobs.iter().cloned().partition(|j| uses_gpu(opts, &j.config));
    let mut ids = Vec::new();
    for (group, uses) in [(gpu, true), (cpu, false)] {
        if let Some(id) = submit_array(db, sweep, &group, opts, uses).await? {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Submits `jobs` as one array and records an attempt per task. Returns the array job id.
async fn submit_array(db: &Db, sweep: &str, jobs: &[JobRow], opts: &SlurmOptions, gpu: bool) -> anyhow::Result<Option<String>> {
    if jobs.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(&opts.slurm_dir).with_context(|| format!("creating {}", opts.slurm_dir.display()))?;
    let mut dirs = Vec::new();
    for j in jobs {
        // The run directory the database records is checked, never trusted: a dump from
        // another machine may name any directory.
        let dir = crate::safety::run_dir_inside(&opts.runs_dir, &j.run_dir, &j.id).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join(JOB_FILE), stuffed_model::yaml::to_string(&j.config)?)?;
        dirs.push(dir.display().to_string());
    }
    let script = array_script(opts, sweep, &dirs, gpu)?;
    let n = std::fs::read_dir(&opts.slurm_dir).map(|d| d.count()).unwrap_or(0);
    let path = opts.slurm_dir.join(format!("{sweep}-{n:04}.sh"));
    std::fs::write(&path, &script).with_context(|| format!("writing {}", path.display()))?;
    let out = run_cmd(Command::new("sbatch").arg("--parsable").arg(&path))?;
    let id = out.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch returned '{}' instead of a job id", out.trim());
    }
    for (i, j) in jobs.iter().enumerate() {
        let task = format!("{id}_{i}");
        db.start_attempt(&NewAttempt {
            job_id: j.id.clone(),
            backend: "slurm".into(),
            backend_id: Some(task.clone()),
            log_path: Some(opts.slurm_dir.join(format!("{task}.out")).display().to_string()),
            seed: j.config["train"]["seed"].as_i64(),
            ..Default::default()
        })
        .await?;
    }
    Ok(Some(id))
}

/// Parses `squeue -r -h -O JobArrayID,State,exit_code` lines (exit_code = raw wait status).
pub fn parse_squeue(text: &str) -> HashMap<String, TaskState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (id, state) = (f.next()?, f.next()?);
            let exit = f.next().and_then(|e| e.parse::<i64>().ok()).map(|w| if w > 255 { w >> 8 } else { w });
            Some((id.to_string(), TaskState { state: state.trim_end_matches('+').to_string(), exit }))
        })
        .collect()
}

/// Parses `sacct -X -n -P -o JobID,State,ExitCode` lines (`123_4|COMPLETED|0:0`).
pub fn parse_sacct(text: &str) -> HashMap<String, TaskState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (id, state, exit) = (f.next()?, f.next()?, f.next()?);
            let state = state.split_whitespace().next()?.trim_end_matches('+').to_string();
            Some((id.to_string(), TaskState { state, exit: exit.split(':').next().and_then(|e| e.parse().ok()) }))
        })
        .collect()
}

/// The state of every task of `arrays`, in one call: sacct when accounting works, else squeue.
pub fn query(arrays: &[String]) -> anyhow::Result<HashMap<String, TaskState>> {
    if arrays.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = arrays.join(",");
    let sacct = Command::new("sacct").args(["-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", &ids]).output();
    if let Ok(o) = sacct {
        if o.status.success() {
            return Ok(parse_sacct(&String::from_utf8_lossy(&o.stdout)));
        }
    }
    let out = Command::new("squeue")
        .args(["-r", "--states=all", "-h", "-O", "JobArrayID:30,State:20,exit_code:8", "-j", &ids])
        .output()
        .context("running squeue")?;
    // squeue exits non-zero when every id is unknown (aged out): no states then.
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

/// The `done` event of the latest run of an attempt started at `started_at` (RFC 3339): the
/// newest `done` at or after that time, unless a newer run has begun since (a task Slurm
/// requeued is running again).
fn attempt_done(events: &[Envelope], started_at: &str) -> Option<Done> {
    for e in events.iter().rev() {
        if e.time.as_str() < started_at {
            return None;
        }
        match &e.event {
            Event::Done(d) => return Some(d.clone()),
            Event::Start { .. } | Event::Resume { .. } => return None,
            Event::Train { .. }
            | Event::Val { .. }
            | Event::Checkpoint { .. }
            | Event::Interrupted { .. }
            | Event::Diverged { .. }
            | Event::Eval { .. }
            | Event::EarlyStop { .. } => {}
        }
    }
    None
}

/// Open Slurm attempts of a sweep's jobs.
async fn open_attempts(db: &Db, jobs: &[JobRow]) -> anyhow::Result<Vec<(JobRow, AttemptRow)>> {
    let mut out = Vec::new();
    for j in jobs {
        if let Some(a) = db.open_attempt(&j.id).await? {
            if a.backend == "slurm" {
                out.push((j.clone(), a));
            }
        }
    }
    Ok(out)
}

/// One round: ingest events, settle ended tasks (resubmitting what is worth it), submit the
/// pending jobs.
pub async fn sync_once(db: &Db, sweep: &str, opts: &SlurmOptions) -> anyhow::Result<SyncSummary> {
    let mut sum = SyncSummary::default();
    let jobs = db.sweep_jobs(sweep).await?;
    let open = open_attempts(db, &jobs).await?;
    let mut arrays: Vec<String> = open.iter().filter_map(|(_, a)| a.backend_id.as_ref()?.split('_').next().map(String::from)).collect();
    arrays.sort();
    arrays.dedup();
    let states = query(&arrays)?;
    for (job, att) in &open {
        // Events are read only from a run directory inside the runs directory.
        let dir = crate::safety::run_dir_inside(&opts.runs_dir, &job.run_dir, &job.id).ok();
        let (events, _) = dir.and_then(|d| read_events(&d.join(EVENTS_FILE), 0).ok()).unwrap_or_default();
        db.ingest(&job.id, &events).await?;
        let done = attempt_done(&events, &att.started_at);
        let task = att.backend_id.clone().unwrap_or_default();
        let state = states.get(&task);
        let active = state.is_some_and(TaskState::active);
        // A worker's own final word is final, except "interrupted": Slurm may have requeued
        // the task (it runs again and resumes), or the run was stopped from outside.
        let final_done = done.filter(|d| d.status != DoneStatus::Interrupted);
        let (class, err) = match (final_done, state) {
            (Some(d), _) => classify(Some(&d)),
            _ if active => {
                sum.running += 1;
                continue;
            }
            (None, Some(s)) => match s.state.as_str() {
                "TIMEOUT" | "DEADLINE" => (AttemptEnd::Failed(FailureKind::Timeout), Some(format!("Slurm task {task} ran out of time"))),
                "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL" => {
                    (AttemptEnd::Failed(FailureKind::Killed), Some(format!("Slurm task {task} ended {}", s.state)))
                }
                "OUT_OF_MEMORY" => {
                    (AttemptEnd::Failed(FailureKind::HostOom), Some(format!("Slurm task {task} ran out of host memory (OUT_OF_MEMORY)")))
                }
                "CANCELLED" => {
                    (AttemptEnd::Failed(FailureKind::Interrupted), Some(format!("Slurm task {task} was cancelled outside stuffed")))
                }
                other => (
                    AttemptEnd::Failed(FailureKind::Killed),
                    Some(format!("Slurm task {task} ended {other} (exit {:?}) without finishing", s.exit)),
                ),
            },
            (None, None) => (AttemptEnd::Failed(FailureKind::Killed), Some(format!("Slurm task {task} is gone without a final event"))),
        };
        let error_class = class.as_str();
        db.finish_attempt(att.id, class.as_str(), state.and_then(|s| s.exit), Some(error_class), err.as_deref()).await?;
        let tries = db.attempts(&job.id).await?.iter().filter(|a| a.backend == "slurm").count() as u32;
        if class == AttemptEnd::Completed {
            db.set_status(&job.id, JobStatus::Completed, None, None).await?;
            sum.completed += 1;
        } else if class.retryable() && tries <= opts.retries {
            db.set_status(&job.id, JobStatus::Pending, Some(error_class), err.as_deref()).await?;
            sum.resubmitted += 1;
        } else {
            db.set_status(&job.id, class.job_status(), Some(error_class), err.as_deref()).await?;
            sum.failed += 1;
        }
    }
    if !db.is_cancelled(sweep).await? {
        let pending: Vec<JobRow> = db.sweep_jobs(sweep).await?.into_iter().filter(|j| j.status == JobStatus::Pending).collect();
        let mut fresh = Vec::new();
        for j in pending {
            if db.open_attempt(&j.id).await?.is_none() {
                fresh.push(j);
            }
        }
        sum.submitted = fresh.len();
        submit(db, sweep, &fresh, opts).await?;
    }
    sum.pending = db.sweep_jobs(sweep).await?.iter().filter(|j| j.status == JobStatus::Pending).count();
    Ok(sum)
}

/// Cancels every open Slurm task of a sweep (`scancel`) and records it: Slurm keeps no record
/// of a task cancelled before it started, so this is the record.
pub async fn cancel(db: &Db, sweep: &str) -> anyhow::Result<usize> {
    let jobs = db.sweep_jobs(sweep).await?;
    let open = open_attempts(db, &jobs).await?;
    let tasks: Vec<String> = open.iter().filter_map(|(_, a)| a.backend_id.clone()).collect();
    if !tasks.is_empty() {
        run_cmd(Command::new("scancel").args(&tasks))?;
    }
    for (job, att) in &open {
        db.finish_attempt(att.id, "cancelled", None, Some("cancelled"), Some("cancelled with `stuffed sweep cancel`")).await?;
        db.set_status(&job.id, JobStatus::Cancelled, Some("cancelled"), None).await?;
    }
    Ok(tasks.len())
}

/// Submits, then (unless detached) syncs until every job of the sweep has ended.
pub async fn run(
    db: &Db,
    sweep: &str,
    opts: &SlurmOptions,
    detach: bool,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<SyncSummary> {
    let first = sync_once(db, sweep, opts).await?;
    eprintln!("sweep {sweep}: submitted {} job(s) to Slurm", first.submitted);
    if detach {
        eprintln!("detached: the jobs run on the cluster; `stuffed sweep sync {sweep}` ingests their results");
        return Ok(first);
    }
    let mut last = first;
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("stopped watching; the Slurm jobs keep running: `stuffed sweep sync {sweep}` picks them up");
            return Ok(last);
        }
        let open = open_attempts(db, &db.sweep_jobs(sweep).await?).await?.len();
        if open == 0 && last.pending == 0 {
            return Ok(last);
        }
        tokio::time::sleep(opts.poll).await;
        last = sync_once(db, sweep, opts).await?;
        if last.completed + last.failed + last.resubmitted > 0 {
            eprintln!(
                "sweep {sweep}: {} completed, {} failed, {} resubmitted, {} running, {} pending",
                last.completed, last.failed, last.resubmitted, last.running, last.pending
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_squeue_and_sacct() {
        let q = parse_squeue("12_0                          COMPLETED           0       \n12_1                          FAILED              256     \n12_2                          PENDING             0\n");
        assert_eq!(q["12_1"], TaskState { state: "FAILED".into(), exit: Some(1) });
        assert!(q["12_2"].active() && !q["12_0"].active());
        let s = parse_sacct("12_0|COMPLETED|0:0\n12_1|CANCELLED by 0|0:15\n");
        assert_eq!(s["12_1"].state, "CANCELLED");
    }

    fn options(cfg: SlurmBackend) -> SlurmOptions {
        SlurmOptions {
            cfg,
            runs_dir: "/shared".into(),
            slurm_dir: "/shared/slurm".into(),
            retries: 1,
            timeout_secs: None,
            gpus: 1,
            poll: Duration::from_secs(1),
            exe: "/opt/stuffed".into(),
        }
    }

    #[test]
    fn script_injection_through_backend_values_is_refused() {
        let bad = [
            SlurmBackend { partition: Some("gpu\necho pwned".into()), ..Default::default() },
            SlurmBackend { time: Some("1:00:00\nrm -rf ~".into()), ..Default::default() },
            SlurmBackend { account: Some("a b".into()), ..Default::default() },
            SlurmBackend { mem: Some("32G\n#SBATCH --wrap=id".into()), ..Default::default() },
            SlurmBackend { gres: "gpu:1\nid".into(), ..Default::default() },
            SlurmBackend { extra_sbatch: vec!["--constraint=a100\nid".into()], ..Default::default() },
            SlurmBackend { extra_sbatch: vec!["--wrap=id".into()], ..Default::default() },
            SlurmBackend { extra_sbatch: vec!["--output=/etc/cron.d/x".into()], ..Default::default() },
        ];
        for cfg in bad {
            let r = array_script(&options(cfg.clone()), "sw", &["/shared/a".into()], true);
            assert!(r.is_err(), "{cfg:?} gave a script: {r:?}");
        }
        assert!(array_script(&options(SlurmBackend::default()), "..", &["/shared/a".into()], true).is_err(), "a sweep name that is a path");
        assert!(array_script(&options(SlurmBackend::default()), "sw", &["/shared/a\nid".into()], true).is_err());
        let ok = SlurmBackend {
            extra_sbatch: vec!["--constraint=a100".into(), "--exclusive".into()],
            partition: Some("gpu".into()),
            ..Default::default()
        };
        let s = array_script(&options(ok), "sw", &["/shared/a".into()], true).unwrap();
        assert!(s.contains("#SBATCH --constraint=a100\n#SBATCH --exclusive\n"), "{s}");
        // Every line is a comment, `set -u`, the array or the exec: nothing else became a line.
        assert!(s.lines().all(|l| l.starts_with("#") || l == "set -u" || l.starts_with("DIRS=(") || l.starts_with("exec ")), "{s}");
    }

    #[test]
    fn script_maps_task_ids_to_run_dirs() {
        let opts = SlurmOptions {
            cfg: SlurmBackend { partition: Some("gpu".into()), max_concurrent: Some(2), ..Default::default() },
            runs_dir: "/shared".into(),
            slurm_dir: "/shared/slurm".into(),
            retries: 1,
            timeout_secs: Some(5400),
            gpus: 1,
            poll: Duration::from_secs(1),
            exe: "/opt/stuffed".into(),
        };
        let s = array_script(&opts, "sw", &["/r/a".into(), "/r/it's".into()], true).unwrap();
        assert!(s.contains("#SBATCH --array=0-1%2\n") && s.contains("#SBATCH --partition=gpu\n"));
        assert!(s.contains("#SBATCH --time=1:30:00\n") && s.contains("#SBATCH --gres=gpu:1\n"));
        assert!(s.contains("DIRS=('/r/a' '/r/it'\\''s')"));
        assert!(s.contains("'/opt/stuffed' worker --run-dir \"${DIRS[$SLURM_ARRAY_TASK_ID]}\""));
    }

    #[test]
    fn cpu_jobs_ask_for_no_gpu() {
        let mut opts = options(SlurmBackend::default());
        let gpu = serde_json::json!({"train": {"device": "auto"}});
        let cpu = serde_json::json!({"train": {"device": "cpu"}});
        assert!(uses_gpu(&opts, &gpu) && !uses_gpu(&opts, &cpu));
        opts.gpus = 0;
        assert!(!uses_gpu(&opts, &gpu), "resources.gpus: 0");
        let s = array_script(&opts, "sw", &["/r/a".into()], false).unwrap();
        assert!(!s.contains("--gres"), "{s}");
        let s = array_script(&opts, "sw", &["/r/a".into()], true).unwrap();
        assert!(s.contains("#SBATCH --gres=gpu:1\n"), "{s}");
    }
}
