//! The local backend: runs each job as a `stuffed worker` subprocess on this machine, packing
//! several jobs onto a GPU by estimated memory (refined by measured peaks) up to a per-GPU cap,
//! or on the CPU with a concurrency limit. It ingests worker events as they come, applies
//! timeouts, retries what is worth retrying (OOM alone on its GPU, killed or timed-out jobs
//! from their checkpoint) with backoff, adopts workers still alive from a previous controller,
//! and stops cleanly on Ctrl-C or `sweep cancel` (workers checkpoint, jobs are marked).
use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use stuffed_model::protocol::{AttemptEnd, Done, Envelope, Event, FailureKind, JobStatus};

use super::display::{Display, JobView};
use super::gpus::{Health, Load, Pool};
use super::{classify, PlannedJob, PROCESS_OVERHEAD_GB};
use crate::job::{EVENTS_FILE, JOB_FILE};
use crate::store::{read_events, Db, NewAttempt};

/// One GPU the scheduler may use.
#[derive(Debug, Clone)]
pub struct GpuSlot {
    pub index: usize,
    pub name: String,
    /// Memory the scheduler may fill, GB.
    pub capacity_gb: f64,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Upper bound on concurrent workers.
    pub max_parallel: usize,
    /// Jobs sharing one GPU at most.
    pub per_gpu: usize,
    /// GPUs to use; empty = CPU workers.
    pub gpus: Vec<GpuSlot>,
    /// Extra attempts for retryable failures.
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub poll: Duration,
    /// Torch threads per CPU worker.
    pub cpu_threads: usize,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub completed: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub skipped: usize,
    pub retried: usize,
    /// GPUs taken out of the sweep after repeated failed attempts (see `gpus::Pool`).
    pub gpus_retired: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StopReason {
    User,
    Cancel,
    Timeout,
}

struct Pending {
    job: usize,
    not_before: Instant,
    exclusive: bool,
    /// The GPU the job's last attempt failed on: another one is preferred.
    avoid: Option<usize>,
}

struct Running {
    job: usize,
    attempt: i64,
    child: Option<Child>,
    pid: Option<i64>,
    gpu: Option<usize>,
    mem_gb: f64,
    exclusive: bool,
    started: Instant,
    offset: u64,
    done: Option<Done>,
    term: Option<(StopReason, Instant)>,
    step: Option<i64>,
    total: Option<i64>,
    loss: Option<f64>,
    tps: Option<f64>,
    peak_gb: Option<f64>,
}

/// Whether a live worker holds the run directory's lock.
pub fn lock_held(run_dir: &Path) -> bool {
    let Ok(f) = OpenOptions::new().write(true).open(run_dir.join(stuffed_model::protocol::rundir::LOCK_FILE)) else { return false };
    // A successful probe lock is dropped with the file; any failure counts as held.
    f.try_lock().is_err()
}

/// Signals the worker of `r`: our own child directly (its pid cannot be reused before we reap
/// it), an adopted worker only when it is proven ours (`owner::signal_worker`).
fn signal(r: &Running, run_dir: &Path, sig: i32) {
    match (&r.child, r.pid.filter(|p| *p > 0)) {
        // Safety: kill(2) on the pid of a child process not reaped yet.
        (Some(c), _) => unsafe {
            libc::kill(c.id() as i32, sig);
        },
        (None, pid) => {
            super::owner::signal_worker(run_dir, pid, None, sig);
        }
    }
}

fn shape_key(j: &PlannedJob) -> String {
    format!(
        "{}|{}|{}|{:?}",
        serde_json::to_string(&j.model).unwrap_or_default(),
        j.config.train.batch(),
        j.config.train.seq_len,
        j.config.train.precision
    )
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string())
}

pub struct Controller<'a> {
    db: &'a Db,
    sweep: &'a str,
    jobs: &'a [PlannedJob],
    opts: &'a Options,
    pending: VecDeque<Pending>,
    running: Vec<Running>,
    tries: HashMap<usize, u32>,
    measured: HashMap<String, f64>,
    gpus: Pool,
    summary: Summary,
    stopping: Option<StopReason>,
    display: Display,
}

impl<'a> Controller<'a> {
    pub fn new(db: &'a Db, sweep: &'a str, jobs: &'a [PlannedJob], opts: &'a Options) -> Self {
        Controller {
            db,
            sweep,
            jobs,
            opts,
            pending: VecDeque::new(),
            running: Vec::new(),
            tries: HashMap::new(),
            measured: HashMap::new(),
            gpus: Pool::new(opts.gpus.clone(), opts.per_gpu),
            summary: Summary::default(),
            stopping: None,
            display: Display::new(jobs.len() as u64),
        }
    }

    /// Runs every job that is not completed yet; returns when all ended or after a stop.
    pub async fn run(mut self, stop: &AtomicBool) -> anyhow::Result<Summary> {
        self.recover().await?;
        let mut last_cancel_check = Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) && self.stopping.is_none() {
                self.display.event("stopping: asking running workers to checkpoint and exit (Ctrl-C again to force)");
                self.stop_all(StopReason::User);
            }
            if last_cancel_check.elapsed() > Duration::from_secs(2) {
                last_cancel_check = Instant::now();
                if self.stopping.is_none() && self.db.is_cancelled(self.sweep).await? {
                    self.display.event(&format!("sweep {} cancelled: stopping its workers", self.sweep));
                    self.stop_all(StopReason::Cancel);
                }
            }
            if self.stopping.is_none() {
                self.start_ready().await?;
            }
            self.poll().await?;
            self.redraw();
            if self.running.is_empty() && (self.pending.is_empty() || self.stopping.is_some()) {
                break;
            }
            tokio::time::sleep(self.opts.poll).await;
        }
        if self.stopping == Some(StopReason::Cancel) {
            for p in self.pending.drain(..) {
                self.db.set_status(&self.jobs[p.job].id, JobStatus::Cancelled, Some("cancelled"), None).await?;
            }
        }
        self.display.finish();
        self.summary.gpus_retired = self.gpus.retired();
        Ok(self.summary)
    }

    fn stop_all(&mut self, reason: StopReason) {
        self.stopping = Some(reason);
        for r in &mut self.running {
            if r.term.is_none() {
                signal(r, &self.jobs[r.job].run_dir, libc::SIGTERM);
                r.term = Some((reason, Instant::now()));
            }
        }
    }

    /// Decides, for every job of the plan, what to do given the database: skip completed ones,
    /// adopt live workers, settle the ones a dead controller left running, queue the rest.
    async fn recover(&mut self) -> anyhow::Result<()> {
        for (i, j) in self.jobs.iter().enumerate() {
            let row = self.db.job(&j.id).await?;
            match row.status {
                JobStatus::Completed => {
                    self.summary.skipped += 1;
                }
                JobStatus::Running if lock_held(&j.run_dir) => {
                    let att = self.db.open_attempt(&j.id).await?;
                    let gpu = att.as_ref().and_then(|a| a.gpu.as_deref()).and_then(|g| g.parse::<usize>().ok());
                    self.display.event(&format!("adopting {} ({}): its worker is still running", j.label, &j.id[..8.min(j.id.len())]));
                    self.running.push(Running {
                        job: i,
                        attempt: att.as_ref().map_or(0, |a| a.id),
                        child: None,
                        pid: att.and_then(|a| a.pid),
                        gpu,
                        mem_gb: j.est_mem_gb,
                        exclusive: false,
                        started: Instant::now(),
                        offset: 0,
                        done: None,
                        term: None,
                        step: row.step,
                        total: row.total_steps,
                        loss: row.last_loss,
                        tps: None,
                        peak_gb: None,
                    });
                }
                status => {
                    if status == JobStatus::Running {
                        // The controller died and so did its worker: settle that attempt first.
                        let (events, _) = read_events(&j.run_dir.join(EVENTS_FILE), 0).unwrap_or_default();
                        let s = self.db.ingest(&j.id, &events).await?;
                        let done = s.done.or_else(|| last_done(&events));
                        if let Some(att) = self.db.open_attempt(&j.id).await? {
                            let (class, err) = classify(done.as_ref());
                            self.db.finish_attempt(att.id, class.as_str(), None, Some(class.as_str()), err.as_deref()).await?;
                            if class == AttemptEnd::Completed {
                                self.db.set_status(&j.id, JobStatus::Completed, None, None).await?;
                                self.summary.completed += 1;
                                continue;
                            }
                        }
                    }
                    self.db.set_status(&j.id, JobStatus::Pending, None, None).await?;
                    self.pending.push_back(Pending { job: i, not_before: Instant::now(), exclusive: false, avoid: None });
                }
            }
        }
        Ok(())
    }

    fn mem_for(&self, j: &PlannedJob) -> f64 {
        match self.measured.get(&shape_key(j)) {
            Some(peak) => peak * 1.15 + PROCESS_OVERHEAD_GB,
            None => j.est_mem_gb,
        }
    }

    /// The running jobs' loads on the GPUs.
    fn loads(&self) -> Vec<Load> {
        self.running.iter().filter_map(|r| r.gpu.map(|gpu| Load { gpu, mem_gb: r.mem_gb, exclusive: r.exclusive })).collect()
    }

    async fn start_ready(&mut self) -> anyhow::Result<()> {
        let mut waiting = VecDeque::new();
        while let Some(p) = self.pending.pop_front() {
            if self.running.len() >= self.opts.max_parallel {
                waiting.push_back(p);
                continue;
            }
            if p.not_before > Instant::now() {
                waiting.push_back(p);
                continue;
            }
            let job = &self.jobs[p.job];
            let mem = self.mem_for(job);
            let gpu = if self.gpus.is_empty() {
                None
            } else {
                match self.gpus.pick(&self.loads(), mem, p.exclusive, p.avoid) {
                    Some(g) => Some(g),
                    None => {
                        if self.gpus.too_big(mem) && self.running.is_empty() {
                            // Larger than any GPU by the estimate: give it a GPU alone and let it try.
                            self.gpus.first_usable()
                        } else {
                            waiting.push_back(p);
                            continue;
                        }
                    }
                }
            };
            self.spawn(p, gpu, mem).await?;
        }
        self.pending = waiting;
        Ok(())
    }

    async fn spawn(&mut self, p: Pending, gpu: Option<usize>, mem: f64) -> anyhow::Result<()> {
        let job = &self.jobs[p.job];
        std::fs::create_dir_all(&job.run_dir).with_context(|| format!("creating {}", job.run_dir.display()))?;
        std::fs::write(job.run_dir.join(JOB_FILE), stuffed_model::yaml::to_string(&job.config)?)?;
        let log_path = job.run_dir.join(stuffed_model::protocol::rundir::WORKER_LOG);
        let seq_floor = self.db.job(&job.id).await?.last_seq;
        let log =
            OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("opening {}", log_path.display()))?;
        let exe = std::env::current_exe().context("locating the stuffed binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .arg("--run-dir")
            .arg(&job.run_dir)
            .arg("--seq-floor")
            .arg(seq_floor.max(0).to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        cmd.env("CUDA_VISIBLE_DEVICES", gpu.map_or(String::new(), visible_device));
        cmd.env("STUFFED_THREADS", self.opts.cpu_threads.to_string());
        let gpu_name = gpu.and_then(|g| self.gpus.slots().iter().find(|s| s.index == g)).map(|s| s.name.clone());
        let attempt = self
            .db
            .start_attempt(&NewAttempt {
                job_id: job.id.clone(),
                backend: "local".into(),
                host: hostname(),
                gpu: gpu.map(|g| g.to_string()),
                gpu_name,
                log_path: Some(log_path.display().to_string()),
                seed: Some(job.config.train.seed as i64),
                ..Default::default()
            })
            .await?;
        let child = cmd.spawn().context("starting a worker")?;
        let pid = child.id() as i64;
        self.db.set_attempt_pid(attempt, pid).await?;
        let device = gpu.map_or("cpu".to_string(), |g| format!("cuda:{g}"));
        self.display.event(&format!("start  {} [{}] on {device}", job.label, &job.id[..8.min(job.id.len())]));
        *self.tries.entry(p.job).or_insert(0) += 1;
        self.running.push(Running {
            job: p.job,
            attempt,
            child: Some(child),
            pid: Some(pid),
            gpu,
            mem_gb: mem,
            exclusive: p.exclusive,
            started: Instant::now(),
            offset: 0,
            done: None,
            term: None,
            step: None,
            total: None,
            loss: None,
            tps: None,
            peak_gb: None,
        });
        Ok(())
    }

    /// Ingests new events of every running job and settles the ones that ended.
    async fn poll(&mut self) -> anyhow::Result<()> {
        let mut ended = Vec::new();
        for (k, r) in self.running.iter_mut().enumerate() {
            let job = &self.jobs[r.job];
            let (events, off) = read_events(&job.run_dir.join(EVENTS_FILE), r.offset).unwrap_or((Vec::new(), r.offset));
            r.offset = off;
            if !events.is_empty() {
                for e in &events {
                    match &e.event {
                        Event::Train { step, loss, tokens_per_s, mem_gb, .. } => {
                            r.step = Some(*step);
                            r.loss = Some(*loss);
                            r.tps = Some(*tokens_per_s);
                            r.peak_gb = Some(*mem_gb);
                        }
                        Event::Start { total_steps, .. } | Event::Resume { total_steps, .. } => r.total = Some(*total_steps),
                        Event::Done(d) => r.done = Some(d.clone()),
                        Event::Val { .. }
                        | Event::Checkpoint { .. }
                        | Event::Interrupted { .. }
                        | Event::Diverged { .. }
                        | Event::Eval { .. }
                        | Event::EarlyStop { .. } => {}
                    }
                }
                self.db.ingest(&job.id, &events).await?;
            }
            let exited: Option<Option<ExitStatus>> = match r.child.as_mut() {
                Some(c) => c.try_wait()?.map(Some),
                None => (!lock_held(&job.run_dir)).then_some(None),
            };
            if let Some(status) = exited {
                ended.push((k, status));
                continue;
            }
            if let Some(t) = self.opts.timeout {
                if r.term.is_none() && r.started.elapsed() > t {
                    signal(r, &job.run_dir, libc::SIGTERM);
                    r.term = Some((StopReason::Timeout, Instant::now()));
                }
            }
            if let Some((_, at)) = r.term {
                if at.elapsed() > Duration::from_secs(60) {
                    signal(r, &job.run_dir, libc::SIGKILL);
                }
            }
        }
        for (k, status) in ended.into_iter().rev() {
            let r = self.running.swap_remove(k);
            self.settle(r, status).await?;
        }
        Ok(())
    }

    /// Records how an attempt ended and decides whether the job is retried.
    async fn settle(&mut self, mut r: Running, status: Option<ExitStatus>) -> anyhow::Result<()> {
        let job = &self.jobs[r.job];
        // Events written between the last poll and the exit.
        let (events, _) = read_events(&job.run_dir.join(EVENTS_FILE), r.offset).unwrap_or_default();
        let s = self.db.ingest(&job.id, &events).await?;
        if s.done.is_some() {
            r.done = s.done;
        }
        if let Some(peak) = r.peak_gb {
            self.measured.insert(shape_key(job), peak);
            self.db.record_peak_memory(&job.id, peak).await?;
        }
        let exit_code = status.map(|st| {
            use std::os::unix::process::ExitStatusExt;
            st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)) as i64
        });
        let (mut class, mut err) = classify(r.done.as_ref());
        if class == AttemptEnd::Completed {
            if let Some(missing) = self.db.incomplete(&job.id, job.config.evals.len()).await? {
                // The worker said done, but the database lacks its final step or evaluations
                // (events lost): never stored as completed.
                class = AttemptEnd::Failed(FailureKind::Internal);
                err = Some(format!("the worker finished but {missing}; see {}", job.run_dir.join(EVENTS_FILE).display()));
            }
        }
        match r.term.map(|t| t.0) {
            Some(StopReason::Timeout) if class != AttemptEnd::Completed => {
                class = AttemptEnd::Failed(FailureKind::Timeout);
                err = Some(format!("ran past the timeout of {:?}", self.opts.timeout.unwrap_or_default()));
            }
            Some(StopReason::User | StopReason::Cancel) if class != AttemptEnd::Completed => {
                class = AttemptEnd::Failed(FailureKind::Interrupted)
            }
            _ => {}
        }
        if class == AttemptEnd::Failed(FailureKind::Killed) {
            if let Some(code) = exit_code {
                err = Some(format!(
                    "the worker died without a final event (exit status {code}); see {}",
                    job.run_dir.join("worker.log").display()
                ));
            }
        }
        self.db.finish_attempt(r.attempt, class.as_str(), exit_code, Some(class.as_str()), err.as_deref()).await?;
        if let Some(g) = r.gpu {
            if let Health::Retired { failures } = self.gpus.record(g, class) {
                self.display.event(&format!(
                    "cuda:{g} retired: {failures} attempts in a row failed on it ({}, the last); its running jobs finish, new ones go to the other GPUs",
                    class.as_str()
                ));
            }
        }
        let tries = self.tries.get(&r.job).copied().unwrap_or(1);
        let short = &job.id[..8.min(job.id.len())];
        if class == AttemptEnd::Completed {
            self.db.set_status(&job.id, JobStatus::Completed, None, None).await?;
            self.summary.completed += 1;
            self.display.event(&format!("done   {} [{short}] loss {}", job.label, r.loss.map_or("-".into(), |l| format!("{l:.4}"))));
        } else if class.retryable() && self.stopping.is_none() && tries <= self.opts.retries {
            let backoff = Duration::from_secs((2u64 << tries.min(5)).min(60));
            self.db.set_status(&job.id, JobStatus::Pending, Some(class.as_str()), err.as_deref()).await?;
            let exclusive = class == AttemptEnd::Failed(FailureKind::Oom) || r.exclusive;
            self.pending.push_back(Pending { job: r.job, not_before: Instant::now() + backoff, exclusive, avoid: r.gpu });
            self.summary.retried += 1;
            self.display.event(&format!(
                "retry  {} [{short}] after {} ({}) in {}s",
                job.label,
                class.as_str(),
                err.unwrap_or_default(),
                backoff.as_secs()
            ));
        } else {
            let status = match (class, self.stopping) {
                (AttemptEnd::Failed(FailureKind::Interrupted), Some(StopReason::Cancel)) => JobStatus::Cancelled,
                _ => class.job_status(),
            };
            self.db.set_status(&job.id, status, Some(class.as_str()), err.as_deref()).await?;
            if matches!(status, JobStatus::Interrupted | JobStatus::Cancelled) {
                self.summary.interrupted += 1;
            } else {
                self.summary.failed += 1;
            }
            self.display.event(&format!("{status:<6} {} [{short}]: {}", job.label, err.unwrap_or_default()));
        }
        Ok(())
    }

    fn redraw(&mut self) {
        let done = (self.summary.completed + self.summary.skipped + self.summary.failed + self.summary.interrupted) as u64;
        let devices: Vec<String> = self.running.iter().map(|r| r.gpu.map_or_else(|| "cpu".to_string(), |g| format!("cuda:{g}"))).collect();
        let views: Vec<JobView> = self
            .running
            .iter()
            .zip(&devices)
            .map(|(r, device)| JobView {
                id: &self.jobs[r.job].id,
                label: &self.jobs[r.job].label,
                device,
                step: r.step,
                total: r.total,
                loss: r.loss,
                tokens_per_s: r.tps,
            })
            .collect();
        self.display.update(done, self.jobs.len() as u64, &views);
    }
}

/// The CUDA_VISIBLE_DEVICES entry for the controller's GPU `index`: the controller's own
/// CUDA_VISIBLE_DEVICES may already renumber the GPUs.
fn visible_device(index: usize) -> String {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() => {
            list.split(',').nth(index).map(|s| s.trim().to_string()).unwrap_or_else(|| index.to_string())
        }
        _ => index.to_string(),
    }
}

/// The last `done` event among `events`.
fn last_done(events: &[Envelope]) -> Option<Done> {
    events.iter().rev().find_map(|e| match &e.event {
        Event::Done(d) => Some(d.clone()),
        _ => None,
    })
}
